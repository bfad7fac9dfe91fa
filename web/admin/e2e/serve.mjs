// A tiny server that serves web/admin/out at /admin/ exactly as the bkg-db binary will
// (same origin, strict CSP) and proxies every other path to a running bkg-db.
//
// Standalone: node e2e/serve.mjs --port 3001 --upstream http://127.0.0.1:8080 [--csp strict|hashes]
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import http from "node:http";
import { extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const OUT_DIR = fileURLToPath(new URL("../out/", import.meta.url));
export const STRICT_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".map": "application/json",
};

/** The CSP the server sends: the strict one, or that plus the export's inline-script hashes. */
export async function cspFor(mode) {
  if (mode === "strict") return STRICT_CSP;
  const doc = JSON.parse(await readFile(join(OUT_DIR, "csp.json"), "utf8"));
  return doc.header;
}

async function resolveFile(urlPath) {
  // /admin/x/ -> out/x/index.html ; /admin/_next/... -> out/_next/...
  let rel = decodeURIComponent(urlPath.slice("/admin".length)) || "/";
  if (rel.endsWith("/")) rel += "index.html";
  const full = resolve(OUT_DIR, "." + normalize(rel));
  if (!full.startsWith(resolve(OUT_DIR))) return null;
  try {
    const s = await stat(full);
    // Directories are served only as /path/ (index.html above): /admin/overview without the slash
    // is an API endpoint of the binary, not the page.
    if (s.isFile()) return full;
  } catch {
    // fall through
  }
  return null;
}

/**
 * Starts the server. `state.csp` is the header value in force (can be changed while running).
 * Resolves to { server, port, state, close }.
 */
export async function startStaticServer({ port = 0, upstream, csp }) {
  const up = new URL(upstream);
  const state = { csp };
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === "/admin") {
      res.writeHead(308, { location: "/admin/" });
      res.end();
      return;
    }
    if (url.pathname.startsWith("/admin/")) {
      const file = await resolveFile(url.pathname);
      if (file) {
        const headers = {
          "content-type": TYPES[extname(file)] ?? "application/octet-stream",
          "content-security-policy": state.csp,
          "x-content-type-options": "nosniff",
          "referrer-policy": "no-referrer",
          "cache-control": url.pathname.includes("/_next/static/") ? "public, max-age=31536000, immutable" : "no-cache",
        };
        res.writeHead(200, headers);
        if (req.method === "HEAD") res.end();
        else createReadStream(file).pipe(res);
        return;
      }
      // Not a file of the export: the bkg-db's own /admin/<api> endpoints.
    }
    const preq = http.request(
      {
        hostname: up.hostname,
        port: up.port,
        path: req.url,
        method: req.method,
        headers: { ...req.headers, host: up.host },
      },
      (pres) => {
        res.writeHead(pres.statusCode ?? 502, pres.headers);
        pres.pipe(res);
      },
    );
    preq.on("error", (e) => {
      res.writeHead(502, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: "PROXY", message: `upstream unreachable: ${e.message}` }));
    });
    req.pipe(preq);
  });
  await new Promise((ok) => server.listen(port, "127.0.0.1", ok));
  const addr = server.address();
  return {
    server,
    port: typeof addr === "object" && addr ? addr.port : port,
    state,
    close: () => new Promise((ok) => server.close(() => ok())),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const arg = (name, dflt) => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? process.argv[i + 1] : dflt;
  };
  const mode = arg("csp", "hashes");
  const s = await startStaticServer({
    port: Number(arg("port", "3001")),
    upstream: arg("upstream", process.env.BKG_DB_URL ?? "http://127.0.0.1:8080"),
    csp: await cspFor(mode),
  });
  console.log(`serving out/ at http://127.0.0.1:${s.port}/admin/ (CSP ${mode}), proxying the rest`);
}
