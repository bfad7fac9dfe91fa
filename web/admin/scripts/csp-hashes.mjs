#!/usr/bin/env node
// Computes the CSP script hashes the static export needs and writes them to out/csp.json.
//
// Next's static export inlines the React Server Components payload as
// <script>self.__next_f.push(...)</script> chunks in every HTML file. Under
// `script-src 'self'` the browser refuses them, so the server must allow each one by hash:
//   script-src 'self' 'sha256-…' 'sha256-…' …
// out/csp.json holds, per HTML file, its hashes, the union of all of them, and the complete
// CSP header the server can send for every /admin/ response.
import { createHash } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const OUT = fileURLToPath(new URL("../out/", import.meta.url));

export const BASE_CSP = {
  "default-src": ["'self'"],
  "script-src": ["'self'"],
  "style-src": ["'self'", "'unsafe-inline'"],
  "img-src": ["'self'", "data:"],
  "connect-src": ["'self'"],
  "frame-ancestors": ["'none'"],
};

/** The bodies of the inline <script> elements (those without src) of an HTML document. */
export function inlineScripts(html) {
  const out = [];
  const re = /<script\b([^>]*)>([\s\S]*?)<\/script>/gi;
  let m;
  while ((m = re.exec(html))) {
    const attrs = m[1] ?? "";
    if (/\bsrc\s*=/.test(attrs)) continue;
    const type = /\btype\s*=\s*["']?([^"'\s>]+)/i.exec(attrs)?.[1]?.toLowerCase();
    // Data blocks (JSON etc.) are not executed, so CSP does not apply to them.
    if (type && !["text/javascript", "module", "application/javascript"].includes(type)) continue;
    out.push(m[2] ?? "");
  }
  return out;
}

export function sha256(text) {
  return `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;
}

export function cspHeader(hashes) {
  const d = { ...BASE_CSP, "script-src": [...BASE_CSP["script-src"], ...hashes] };
  return Object.entries(d)
    .map(([k, v]) => `${k} ${v.join(" ")}`)
    .join("; ");
}

async function* htmlFiles(dir) {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* htmlFiles(p);
    else if (e.name.endsWith(".html")) yield p;
  }
}

async function main() {
  const pages = {};
  const all = new Set();
  for await (const file of htmlFiles(OUT)) {
    const html = await readFile(file, "utf8");
    const hashes = [...new Set(inlineScripts(html).map(sha256))];
    const url = "/admin/" + relative(OUT, file).split(sep).join("/");
    pages[url] = hashes;
    hashes.forEach((h) => all.add(h));
  }
  const union = [...all].sort();
  const doc = {
    note: "Inline scripts of Next's static export (RSC payload). Send `header` as the Content-Security-Policy of /admin/ responses, or per file the base policy plus pages[path].",
    base: cspHeader([]),
    script_src_hashes: union,
    header: cspHeader(union),
    pages,
  };
  await writeFile(join(OUT, "csp.json"), JSON.stringify(doc, null, 2) + "\n");
  console.log(`csp-hashes: ${Object.keys(pages).length} HTML files, ${union.length} distinct inline script hashes -> out/csp.json`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
}
