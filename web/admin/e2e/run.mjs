#!/usr/bin/env node
// End-to-end test of the admin UI in real Chromium against a real bkg-db.
//
// Env: BKG_BIN (default ~/.cache/bkg-target/debug/bkg-db), CHROMIUM (default /usr/bin/chromium),
//      E2E_HEADFUL=1 to watch, E2E_KEEP=1 to keep the temp dir.
// Needs `npm run build` first (out/). Exits non-zero on any failure.
import { spawn } from "node:child_process";
import { copyFile, chmod, mkdir, mkdtemp, readFile, rm, access } from "node:fs/promises";
import { createRequire } from "node:module";
import net from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { OUT_DIR, STRICT_CSP, cspFor, startStaticServer } from "./serve.mjs";

const require = createRequire(import.meta.url);
const HERE = fileURLToPath(new URL(".", import.meta.url));
const ARTIFACTS = join(HERE, "artifacts");
const BIN = process.env.BKG_BIN || join(homedir(), ".cache/bkg-target/debug/bkg-db");
const CHROME = process.env.CHROMIUM || "/usr/bin/chromium";
const TIMEOUT = 20_000;

const results = [];
const skipped = [];
const t0 = Date.now();
function log(...a) {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
}
function pass(name) {
  results.push({ name, ok: true });
  log(`PASS ${name}`);
}
function fail(name, err) {
  results.push({ name, ok: false, err: String(err?.stack ?? err) });
  log(`FAIL ${name}: ${err?.message ?? err}`);
}
function skip(what) {
  skipped.push(what);
  log(`SKIPPED (endpoint missing): ${what}`);
}
async function step(name, fn) {
  try {
    await fn();
    pass(name);
    return true;
  } catch (e) {
    fail(name, e);
    return false;
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function freePort() {
  return new Promise((ok, ko) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
    s.on("error", ko);
  });
}

async function waitFor(fn, what, ms = 30_000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

// ---------------------------------------------------------------- server

async function startBkg(tmp) {
  const bin = join(tmp, "bkg-db");
  await copyFile(BIN, bin); // the original may be rebuilt under us
  await chmod(bin, 0o755);
  const data = join(tmp, "data");
  await mkdir(data);
  const [http, pg, flight] = [await freePort(), await freePort(), await freePort()];
  const args = ["serve", "--data-dir", data, "--http-listen", `127.0.0.1:${http}`, "--pg-listen", `127.0.0.1:${pg}`, "--flight-listen", `127.0.0.1:${flight}`];
  const logs = [];
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" } });
  child.stdout.on("data", (d) => logs.push(String(d)));
  child.stderr.on("data", (d) => logs.push(String(d)));
  let exited = null;
  child.on("exit", (code, sig) => (exited = { code, sig }));
  const url = `http://127.0.0.1:${http}`;
  await waitFor(async () => {
    if (exited) throw new Error(`bkg-db exited (${JSON.stringify(exited)}): ${logs.join("").slice(-2000)}`);
    const r = await fetch(`${url}/healthz`);
    return r.ok;
  }, "GET /healthz");
  const keys = JSON.parse(await readFile(join(data, "auth", "keys.json"), "utf8"));
  return { child, url, keys, logs, data };
}

function adminHeaders(key) {
  return { apikey: key, authorization: `Bearer ${key}`, "content-type": "application/json" };
}

async function sql(bkg, query) {
  const r = await fetch(`${bkg.url}/query`, { method: "POST", headers: adminHeaders(bkg.keys.service_key), body: JSON.stringify({ query }) });
  const body = await r.json();
  if (!r.ok) throw new Error(`${query}: ${r.status} ${JSON.stringify(body)}`);
  return body;
}

// ---------------------------------------------------------------- browser helpers

function watch(page, sink) {
  page.on("console", (m) => {
    const t = m.text();
    if (/Content Security Policy|Refused to (execute|load|apply|connect)/i.test(t)) sink.csp.push(t);
    else if (m.type() === "error") sink.console.push(t);
  });
  page.on("pageerror", (e) => sink.pageErrors.push(String(e?.message ?? e)));
}

async function closeDialogs(page) {
  for (let i = 0; i < 3 && (await page.getByRole("dialog").count()) > 0; i++) {
    await page.keyboard.press("Escape");
    await page.waitForTimeout(200);
  }
}

async function gotoTab(page, base, label) {
  await closeDialogs(page);
  const nav = page.locator('nav[aria-label="Main"]:visible');
  if ((await nav.count()) === 0) {
    await page.getByTestId("nav-toggle").click();
  }
  await page.locator('nav[aria-label="Main"]:visible').getByRole("link", { name: label, exact: true }).click();
  await page.getByRole("heading", { level: 1, name: label }).waitFor({ timeout: TIMEOUT });
  await page.waitForLoadState("networkidle").catch(() => {});
}

/** API errors on screen: a missing endpoint is reported as SKIPPED, anything else is returned. */
async function apiErrors(page, where) {
  const alerts = await page.locator('[data-testid="api-error"]').all();
  const other = [];
  for (const a of alerts) {
    const code = await a.getAttribute("data-code");
    const text = (await a.innerText()).replace(/\s+/g, " ").trim();
    if (code === "PGRST125" || code === "HTTP_404") {
      const m = /(GET|POST|PUT|PATCH|DELETE) (\/\S+)/.exec(text);
      const what = `${where}: ${m ? `${m[1]} ${m[2]}` : text}`;
      if (!skipped.includes(what)) skip(what);
    } else other.push(`${code}: ${text}`);
  }
  return other;
}

let axeSource = null;
async function axeCheck(page, label) {
  axeSource ??= await readFile(require.resolve("axe-core/axe.min.js"), "utf8");
  // page.evaluate runs through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate(axeSource);
  const res = await page.evaluate(async () => {
    const r = await axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
  });
  const bad = res.filter((v) => v.impact === "serious" || v.impact === "critical");
  const minor = res.filter((v) => !(v.impact === "serious" || v.impact === "critical"));
  if (minor.length) log(`axe ${label}: minor: ${minor.map((v) => `${v.id}(${v.impact})`).join(", ")}`);
  assert(bad.length === 0, `axe ${label}: ${bad.map((v) => `${v.id} [${v.impact}] ${v.help} at ${v.nodes.join(" | ")}`).join("; ")}`);
}

async function setTheme(page, theme) {
  await page.evaluate((t) => localStorage.setItem("bkg-admin-theme", t), theme);
  await page.reload();
  await page.waitForLoadState("networkidle").catch(() => {});
  const isDark = await page.evaluate(() => document.documentElement.classList.contains("dark"));
  assert(isDark === (theme === "dark"), `theme ${theme} not applied (html.dark=${isDark})`);
}

const TABS = ["Overview", "Policies", "Users", "Telemetry", "Audit"];

async function shootAll(page, base, who, { axe }) {
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: width === 390 ? 844 : 900 });
    for (const theme of ["light", "dark"]) {
      await setTheme(page, theme);
      for (const tab of TABS) {
        await gotoTab(page, base, tab);
        await page.waitForTimeout(300);
        await page.screenshot({ path: join(ARTIFACTS, `${who}-${tab.toLowerCase()}-${width}-${theme}.png`), fullPage: true });
        if (axe) await axeCheck(page, `${who} ${tab} ${width}px ${theme}`);
      }
    }
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  await setTheme(page, "system");
}

async function signInService(page, base, key) {
  await page.goto(`${base}/admin/sign-in/`);
  await page.getByRole("tab", { name: /service key/i }).click();
  await page.getByRole("textbox", { name: "Service key" }).fill(key);
  await page.getByRole("button", { name: /sign in with the service key/i }).click();
  await page.waitForURL(/\/admin\/dashboard\/$/, { timeout: TIMEOUT });
  await page.getByRole("heading", { level: 1, name: "Overview" }).waitFor({ timeout: TIMEOUT });
}

async function signOut(page) {
  await page.getByTestId("sign-out").click();
  await page.waitForURL(/\/admin\/sign-in\/$/, { timeout: TIMEOUT });
  const stored = await page.evaluate(() => sessionStorage.getItem("bkg-admin-session"));
  assert(stored === null, "sign-out left the session in sessionStorage");
}

/** Signs in with e-mail and password in a fresh context: `{ ok }`, or the error shown (`code`, `text`). */
async function trySignIn(browser, base, email, password, shot) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const p = await ctx.newPage();
  p.setDefaultTimeout(TIMEOUT);
  try {
    await p.goto(`${base}/admin/sign-in/`);
    await p.getByRole("tab", { name: /e-mail/i }).click();
    await p.getByRole("textbox", { name: "E-mail" }).fill(email);
    await p.getByLabel("Password", { exact: true }).fill(password);
    await p.getByRole("button", { name: /^sign in$/i }).click();
    const alert = p.locator('[data-testid="api-error"]');
    const res = await Promise.race([
      p.waitForURL(/\/admin\/dashboard\/$/).then(() => "ok"),
      alert.first().waitFor().then(() => "error"),
    ]);
    if (shot) await p.screenshot({ path: join(ARTIFACTS, shot) });
    if (res === "ok") return { ok: true };
    return { ok: false, code: await alert.first().getAttribute("data-code"), text: (await alert.first().innerText()).replace(/\s+/g, " ").trim() };
  } finally {
    await ctx.close();
  }
}

/** Opens the created user's dialog on the Users tab (its sessions loaded). */
async function openUser(page, base, email) {
  await gotoTab(page, base, "Users");
  await page.locator(`[data-user="${email}"]`).getByRole("button").click();
  const dialog = page.getByRole("dialog");
  await dialog.getByText("Sessions", { exact: true }).waitFor();
  return dialog;
}

// ---------------------------------------------------------------- main

async function main() {
  await access(join(OUT_DIR, "index.html")).catch(() => {
    throw new Error("out/ is missing: run `npm run build` first");
  });
  await access(CHROME).catch(() => {
    throw new Error(`no Chromium at ${CHROME} (apt-get install -y chromium, or set CHROMIUM)`);
  });
  await access(BIN).catch(() => {
    throw new Error(`no bkg-db binary at ${BIN} (set BKG_BIN)`);
  });
  await mkdir(ARTIFACTS, { recursive: true });
  const tmp = await mkdtemp(join(tmpdir(), "bkg-admin-e2e-"));
  let bkg;
  let stat;
  let browser;
  // Interrupted: stop what we started and leave no temp dir behind.
  for (const sig of ["SIGINT", "SIGTERM"]) {
    process.once(sig, async () => {
      log(`${sig}: stopping`);
      bkg?.child.kill("SIGKILL");
      await browser?.close().catch(() => {});
      await stat?.close().catch(() => {});
      await rm(tmp, { recursive: true, force: true });
      process.exit(130);
    });
  }
  try {
    bkg = await startBkg(tmp);
    log(`bkg-db up at ${bkg.url} (data ${bkg.data})`);
    const SK = bkg.keys.service_key;

    // The UI is served either by the binary itself (its embedded copy of out/) or, until the binary
    // serves /admin/, by a static server that applies the CSP and proxies the API to the binary.
    stat = await startStaticServer({ upstream: bkg.url, csp: STRICT_CSP });
    const proxyBase = `http://127.0.0.1:${stat.port}`;
    let base = proxyBase;
    const own = await fetch(`${bkg.url}/admin/`)
      .then(async (r) => ({ ok: r.ok, type: r.headers.get("content-type") ?? "", csp: r.headers.get("content-security-policy"), body: await r.text() }))
      .catch(() => null);
    const servesApp = !!own?.ok && own.type.includes("html") && own.body.includes("bkg-db admin");
    const sameBuild = servesApp && own.body === (await readFile(join(OUT_DIR, "index.html"), "utf8"));
    const target = process.env.E2E_TARGET ?? "auto";
    if (target === "binary" || (target === "auto" && servesApp && sameBuild)) {
      base = bkg.url;
      log(`testing the binary's own /admin/ (CSP: ${own?.csp ?? "none"})`);
    } else {
      if (servesApp && !sameBuild) log("the binary serves /admin/, but from an older build than out/: testing out/ through the proxy");
      log(`testing out/ served at ${proxyBase}/admin/ with the CSP, the API proxied to the bkg-db`);
    }

    browser = await chromium.launch({
      executablePath: CHROME,
      headless: !process.env.E2E_HEADFUL,
      args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    });

    // 1. The CSP finding: does the export work under the issue's strict CSP (no hashes)?
    let cspFinding = "";
    {
      const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const page = await ctx.newPage();
      const sink = { csp: [], console: [], pageErrors: [] };
      watch(page, sink);
      await page.goto(`${base}/admin/sign-in/`);
      await page.waitForLoadState("networkidle").catch(() => {});
      await page.waitForTimeout(500);
      let hydrated = false;
      try {
        await page.getByRole("textbox", { name: "Service key" }).fill("x.y.z", { timeout: 3000 });
        hydrated = await page.getByRole("button", { name: /sign in with the service key/i }).isEnabled({ timeout: 1000 });
      } catch {
        hydrated = false;
      }
      cspFinding = `strict CSP without hashes: ${sink.csp.length} CSP violations, app ${hydrated ? "hydrated" : "did NOT hydrate (inputs dead)"}`;
      log(cspFinding);
      if (sink.csp[0]) log(`  first violation: ${sink.csp[0].slice(0, 300)}`);
      await ctx.close();
      stat.state.csp = await cspFor("hashes");
      const ctx2 = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const page2 = await ctx2.newPage();
      const sink2 = { csp: [], console: [], pageErrors: [] };
      watch(page2, sink2);
      await page2.goto(`${proxyBase}/admin/sign-in/`);
      await page2.waitForLoadState("networkidle").catch(() => {});
      let hydrated2 = false;
      try {
        await page2.getByRole("textbox", { name: "Service key" }).fill("x.y.z", { timeout: 5000 });
        hydrated2 = await page2.getByRole("button", { name: /sign in with the service key/i }).isEnabled({ timeout: 1000 });
      } catch {
        hydrated2 = false;
      }
      cspFinding += `; with the script hashes of out/csp.json: ${sink2.csp.length} violations, app ${hydrated2 ? "hydrated" : "did NOT hydrate"}`;
      log(cspFinding);
      await ctx2.close();
      await step("the export works under the CSP with the hashes of out/csp.json", async () => {
        assert(hydrated2 && sink2.csp.length === 0, cspFinding);
      });
    }

    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    page.setDefaultTimeout(TIMEOUT);
    const sink = { csp: [], console: [], pageErrors: [] };
    watch(page, sink);

    const email = `e2e-${Date.now()}@example.com`;
    const password = "correct horse 42";
    const password2 = "battery staple 43";
    let userId = null;

    await step("sign-in page redirects and renders", async () => {
      await page.goto(`${base}/admin/`);
      await page.waitForURL(/\/admin\/sign-in\/$/);
      await page.getByRole("heading", { name: /sign in to bkg-db/i }).waitFor();
    });

    await step("a wrong service key shows the API error code", async () => {
      await page.getByRole("textbox", { name: "Service key" }).fill(SK.slice(0, -4) + "AAAA");
      await page.getByRole("button", { name: /sign in with the service key/i }).click();
      const alert = page.locator('[data-testid="api-error"]');
      await alert.waitFor();
      const code = await alert.getAttribute("data-code");
      assert(code && code !== "CLIENT", `expected a server error code, got ${code}`);
      log(`  refused with ${code}: ${(await alert.innerText()).replace(/\s+/g, " ").slice(0, 160)}`);
    });

    await step("sign in with the service key; Overview renders", async () => {
      await signInService(page, base, SK);
      await page.getByTestId("tables-table").waitFor();
      const stored = await page.evaluate(() => ({ s: sessionStorage.getItem("bkg-admin-session"), l: JSON.stringify(localStorage) }));
      assert(stored.s && stored.s.includes("service"), "no session in sessionStorage");
      assert(!stored.l.includes(SK), "the key leaked into localStorage");
      const errs = await apiErrors(page, "Overview");
      assert(errs.length === 0, `errors on Overview: ${errs.join(" | ")}`);
    });

    await step("Overview: connections per front door, commits/s and queries/s charts", async () => {
      const conn = page.getByTestId("connections");
      await conn.waitFor();
      for (const door of ["pgwire", "http", "flight", "realtime"]) {
        const v = (await conn.locator(`[data-door="${door}"] dd`).innerText()).trim();
        assert(/^\d[\d,.\s]*$/.test(v), `connections ${door}: "${v}"`);
      }
      for (const id of ["chart-commits", "chart-queries"]) {
        await page.getByTestId(id).locator("svg.recharts-surface").first().waitFor();
      }
    });

    await step("create the notes table through /query", async () => {
      await sql(bkg, "CREATE TABLE notes(id int primary key, owner uuid, body text); ALTER TABLE notes ENABLE ROW LEVEL SECURITY");
      await sql(bkg, "GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO authenticated");
      await page.reload();
      await page.locator('[data-table="public.notes"]').waitFor();
    });

    await step("Policies: create an owner-only policy from the template", async () => {
      await gotoTab(page, base, "Policies");
      await page.getByTestId("new-policy").click();
      const dialog = page.getByRole("dialog");
      await dialog.getByLabel("Template").selectOption("owner");
      await dialog.getByLabel("Table").selectOption("public.notes");
      await waitFor(async () => (await dialog.getByLabel("Owner column").inputValue()) === "owner", "owner column chosen");
      const sqlText = await dialog.getByTestId("policy-sql").innerText();
      assert(sqlText.includes("USING (owner = auth.uid())"), `SQL preview: ${sqlText}`);
      await dialog.getByTestId("create-policy-submit").click();
      await dialog.waitFor({ state: "detached" });
      await page.locator('[data-policy="notes_owner_all"]').waitFor();
    });

    await step("Policies: a duplicate is refused inline with its code (42710)", async () => {
      await page.getByTestId("new-policy").click();
      const dialog = page.getByRole("dialog");
      await dialog.getByLabel("Table").selectOption("public.notes");
      await waitFor(async () => (await dialog.getByLabel("Owner column").inputValue()) === "owner", "owner column chosen");
      await dialog.getByTestId("create-policy-submit").click();
      const alert = dialog.locator('[data-testid="api-error"]');
      await alert.waitFor();
      assert((await alert.getAttribute("data-code")) === "42710", `code ${await alert.getAttribute("data-code")}`);
      await page.keyboard.press("Escape");
      await dialog.waitFor({ state: "detached" });
    });

    await step("Policies: a custom policy on an unknown column is refused inline (42703)", async () => {
      await page.getByTestId("new-policy").click();
      const dialog = page.getByRole("dialog");
      await dialog.getByLabel("Template").selectOption("custom");
      await dialog.getByLabel("Table").selectOption("public.notes");
      await dialog.getByLabel("Name").fill("bad_column");
      await dialog.getByLabel("USING").fill("nope = auth.uid()");
      await dialog.getByTestId("create-policy-submit").click();
      const alert = dialog.locator('[data-testid="api-error"]');
      await alert.waitFor();
      assert((await alert.getAttribute("data-code")) === "42703", `code ${await alert.getAttribute("data-code")}`);
      await page.keyboard.press("Escape");
      await dialog.waitFor({ state: "detached" });
    });

    await step("Policies: explain an UPDATE by the owner (allowed) and by someone else (denied)", async () => {
      const owner = "11111111-2222-4333-8444-555555555555";
      await page.getByLabel("Table", { exact: true }).last().selectOption("public.notes");
      await page.getByLabel("Operation").selectOption("update");
      await page.getByLabel("As").selectOption({ label: "another user id…" });
      await page.getByLabel("User id (sub claim)").fill(owner);
      await waitFor(async () => (await page.getByLabel("Row (JSON, optional)").inputValue()).includes(owner), "row prefilled with the owner");
      await page.getByTestId("explain-submit").click();
      const res = page.getByTestId("explain-result");
      await res.waitFor();
      assert((await res.getAttribute("data-allowed")) === "true", `owner: ${await res.innerText()}`);
      assert((await res.innerText()).includes("notes_owner_all"), "the deciding policy is not shown");
      const row = JSON.parse(await page.getByLabel("Row (JSON, optional)").inputValue());
      row.owner = "99999999-2222-4333-8444-555555555555";
      await page.getByLabel("Row (JSON, optional)").fill(JSON.stringify(row));
      await page.getByTestId("explain-submit").click();
      await waitFor(async () => (await res.getAttribute("data-allowed")) === "false", "explain denied for another owner");
    });

    await step("Users: create a user with e-mail and password", async () => {
      await gotoTab(page, base, "Users");
      await page.getByTestId("new-user").click();
      const dialog = page.getByRole("dialog");
      await dialog.getByLabel("E-mail", { exact: true }).fill(email);
      await dialog.getByLabel("Password").fill(password);
      await dialog.getByTestId("create-user-submit").click();
      await dialog.waitFor({ state: "detached" });
      await page.locator(`[data-user="${email}"]`).waitFor();
      const r = await fetch(`${bkg.url}/auth/v1/admin/users?page=1&per_page=100`, { headers: adminHeaders(SK) });
      userId = (await r.json()).users.find((u) => u.email === email)?.id;
      assert(userId, "the user is not in the admin API");
    });

    await step("Users: the filter pages server-side", async () => {
      await page.getByLabel("Filter by e-mail").fill("e2e-");
      await page.waitForTimeout(600);
      await page.locator(`[data-user="${email}"]`).waitFor();
      await page.getByLabel("Filter by e-mail").fill("");
    });

    await step("Users: the user dialog shows sessions (or the missing endpoint)", async () => {
      await page.locator(`[data-user="${email}"]`).getByRole("button").click();
      const dialog = page.getByRole("dialog");
      try {
        await dialog.getByText("Sessions", { exact: true }).waitFor();
        await page.waitForTimeout(500);
        const errs = await apiErrors(page, "Users dialog");
        assert(errs.length === 0, errs.join(" | "));
      } finally {
        await closeDialogs(page);
      }
    });

    await step("seed notes: 2 rows for the user, 1 for someone else", async () => {
      await sql(
        bkg,
        `INSERT INTO notes VALUES (1, '${userId}', 'mine 1'), (2, '${userId}', 'mine 2'), (3, '99999999-2222-4333-8444-555555555555', 'not mine')`,
      );
    });

    // Screenshots and axe as the service role, every tab, 1280/390, light/dark.
    await step("service role: screenshots and axe on every tab (1280/390 × light/dark)", async () => {
      await gotoTab(page, base, "Overview");
      await shootAll(page, base, "service", { axe: true });
    });

    await step("mobile: the nav collapses into a menu at 390 px", async () => {
      await page.setViewportSize({ width: 390, height: 844 });
      assert(!(await page.locator('header nav[aria-label="Main"]').first().isVisible()), "desktop nav visible at 390px");
      await page.getByTestId("nav-toggle").click();
      await page.locator("#mobile-nav").waitFor();
      await page.screenshot({ path: join(ARTIFACTS, "service-nav-open-390.png") });
      await page.getByTestId("nav-toggle").click();
      await page.setViewportSize({ width: 1280, height: 900 });
    });

    await step("sign out clears the session", async () => {
      await signOut(page);
    });

    await step("sign in as the user with e-mail and password", async () => {
      await page.getByRole("tab", { name: /e-mail/i }).click();
      await page.getByRole("textbox", { name: "E-mail" }).fill(email);
      await page.getByLabel("Password", { exact: true }).fill(password);
      const anon = page.getByLabel("Anon key");
      if (await anon.isVisible().catch(() => false)) {
        skip("sign-in: GET /admin/bootstrap (the anon key was typed in)");
        await anon.fill(bkg.keys.anon_key);
      }
      await page.getByRole("button", { name: /^sign in$/i }).click();
      await page.waitForURL(/\/admin\/dashboard\/$/);
      await page.getByRole("heading", { level: 1, name: "Overview" }).waitFor();
    });

    await step("user: Overview counts only the user's own notes (2 of 3)", async () => {
      const cell = page.locator('[data-table="public.notes"] [data-testid="row-count"]');
      await waitFor(async () => (await cell.innerText()).trim() === "2", "row count 2", 15_000).catch(async (e) => {
        throw new Error(`${e.message}; shows "${await cell.innerText()}"`);
      });
      assert(await page.getByTestId("not-allowed").first().isVisible(), "server statistics should be hidden for a user");
    });

    await step("user: Overview lists only readable tables; the commits/s and queries/s charts are hidden with the reason", async () => {
      await page.getByText("Commits/s and queries/s are hidden").waitFor();
      assert((await page.getByTestId("activity").count()) === 0, "activity charts shown to a user");
      const table = page.getByTestId("tables-table");
      await table.waitFor();
      const text = await table.innerText();
      assert(!text.includes("42501"), `a 42501 row is listed: ${text.replace(/\s+/g, " ").slice(0, 300)}`);
      assert((await page.locator('[data-table="auth.users"]').count()) === 0, "auth.users listed for a user");
      await page.locator('[data-table="public.notes"]').waitFor();
    });

    await step("user: admin controls hidden or disabled with the reason", async () => {
      await gotoTab(page, base, "Policies");
      assert(await page.getByTestId("new-policy").isDisabled(), "New policy enabled for a user");
      await page.getByText("needs the service role or the admin scope").first().waitFor();
      await gotoTab(page, base, "Users");
      assert(await page.getByTestId("new-user").isDisabled(), "New user enabled for a user");
      await page.getByText("needs the service role").first().waitFor();
      await page.getByTestId("me-card").getByText(email).waitFor();
      await gotoTab(page, base, "Telemetry");
      await page.getByText("Telemetry is hidden").waitFor();
      await gotoTab(page, base, "Audit");
      await page.getByText("The audit log is hidden").waitFor();
    });

    await step("user: screenshots and axe on every tab", async () => {
      await shootAll(page, base, "user", { axe: true });
    });

    await step("sign out, sign back in with the service key", async () => {
      await signOut(page);
      await page.setViewportSize({ width: 1280, height: 900 });
      await page.screenshot({ path: join(ARTIFACTS, "signin-1280-light.png") });
      await axeCheck(page, "sign-in 1280 light");
      await page.setViewportSize({ width: 390, height: 844 });
      await page.screenshot({ path: join(ARTIFACTS, "signin-390-light.png") });
      await page.evaluate(() => localStorage.setItem("bkg-admin-theme", "dark"));
      await page.reload();
      await page.screenshot({ path: join(ARTIFACTS, "signin-390-dark.png") });
      await axeCheck(page, "sign-in 390 dark");
      await page.setViewportSize({ width: 1280, height: 900 });
      await page.screenshot({ path: join(ARTIFACTS, "signin-1280-dark.png") });
      await page.evaluate(() => localStorage.setItem("bkg-admin-theme", "system"));
      await signInService(page, base, SK);
    });

    await step("Users: ban the user; signing in as them shows user_banned with its code", async () => {
      const dialog = await openUser(page, base, email);
      await dialog.getByLabel("Ban", { exact: true }).selectOption("24h");
      await dialog.getByRole("button", { name: "Apply" }).click();
      await dialog.getByText("User banned.").waitFor();
      await dialog.getByText(/^until /).waitFor();
      await page.screenshot({ path: join(ARTIFACTS, "service-user-banned-1280.png") });
      const r = await trySignIn(browser, base, email, password, "user-banned-signin-1280.png");
      assert(!r.ok, "a banned user signed in");
      assert(r.code === "user_banned" && r.text.includes("user_banned"), `sign-in refused with ${r.code}: ${r.text}`);
      log(`  refused with ${r.code}: ${r.text.slice(0, 160)}`);
    });

    await step("Users: unban; the user signs in again", async () => {
      const dialog = page.getByRole("dialog");
      await dialog.getByLabel("Ban", { exact: true }).selectOption("none");
      await dialog.getByRole("button", { name: "Apply" }).click();
      await dialog.getByText("Ban lifted.").waitFor();
      const r = await trySignIn(browser, base, email, password);
      assert(r.ok, `sign-in after unban: ${r.code}: ${r.text}`);
    });

    await step("Users: reset the password; the new one signs in, the old one no longer", async () => {
      const dialog = page.getByRole("dialog");
      await dialog.getByLabel("New password").fill(password2);
      await dialog.getByRole("button", { name: "Reset" }).click();
      await dialog.getByText("Password reset.").waitFor();
      const r = await trySignIn(browser, base, email, password2);
      assert(r.ok, `sign-in with the new password: ${r.code}: ${r.text}`);
      const old = await trySignIn(browser, base, email, password);
      assert(!old.ok, "the old password still signs in");
      log(`  old password refused with ${old.code}`);
    });

    await step("Users: sign out everywhere empties the sessions list", async () => {
      await closeDialogs(page);
      const dialog = await openUser(page, base, email);
      const list = dialog.getByTestId("user-sessions");
      await waitFor(async () => (await list.locator("li.font-mono").count()) > 0, "the user's sessions listed");
      const n = await list.locator("li.font-mono").count();
      await dialog.getByRole("button", { name: "Sign out everywhere" }).click();
      await dialog.getByText("Signed out everywhere.").waitFor();
      await list.getByText("No sessions.").waitFor();
      assert((await list.locator("li.font-mono").count()) === 0, "sessions still listed");
      const r = await fetch(`${bkg.url}/auth/v1/admin/users/${userId}/sessions`, { headers: adminHeaders(SK) });
      const body = await r.json();
      assert(Array.isArray(body.sessions) && body.sessions.length === 0, `server still has sessions: ${JSON.stringify(body)}`);
      log(`  ${n} session(s) ended`);
      await page.screenshot({ path: join(ARTIFACTS, "service-user-signed-out-everywhere-1280.png") });
      await closeDialogs(page);
    });

    await step("Telemetry: charts for throughput, latency, connections and realtime clients, storage traffic", async () => {
      await gotoTab(page, base, "Telemetry");
      for (const id of ["chart-throughput", "chart-latency", "chart-connections", "chart-storage"]) {
        await page.getByTestId(id).locator("svg.recharts-surface").first().waitFor();
      }
      await page.getByTestId("chart-storage").getByText(/B\/s/).first().waitFor();
    });

    await step("Telemetry: change the sampling rate to 0.25", async () => {
      await gotoTab(page, base, "Telemetry");
      await page.getByTestId("sampling-input").fill("0.25");
      await page.getByTestId("sampling-save").click();
      await page.getByTestId("sampling-saved").waitFor();
      await waitFor(async () => (await page.getByTestId("sampling-rate").innerText()).trim() === "0.25", "rate shown as 0.25");
      const r = await fetch(`${bkg.url}/admin/telemetry`, { headers: adminHeaders(SK) });
      const t = await r.json();
      assert(t.sampling_rate === 0.25, `server says ${t.sampling_rate}`);
      await apiErrors(page, "Telemetry");
    });

    await step("Audit: settings.sampling_rate, policy.create and user.create are listed", async () => {
      await gotoTab(page, base, "Audit");
      for (const action of ["settings.sampling_rate", "policy.create", "user.create"]) {
        await page.getByLabel("Action").fill(action);
        await page.getByTestId("audit-filter").click();
        await page.locator(`[data-testid="audit-table"] [data-action="${action}"]`).first().waitFor();
      }
      await page.getByLabel("Action").fill("");
      await page.getByTestId("audit-filter").click();
    });

    await step("Audit: verification passes", async () => {
      await page.getByTestId("verify-audit").click();
      const ok = page.getByTestId("verify-result");
      const err = page.locator('[data-testid="api-error"]');
      await Promise.race([ok.waitFor(), err.first().waitFor()]);
      if (await ok.isVisible()) {
        assert((await ok.getAttribute("data-ok")) === "true", `verification: ${await ok.innerText()}`);
      } else {
        const other = await apiErrors(page, "Audit verify");
        assert(other.length === 0, other.join(" | "));
      }
      await page.screenshot({ path: join(ARTIFACTS, "service-audit-verified-1280.png"), fullPage: true });
    });

    await step("Keys: Rotate signing key on the HS256 server shows the server's 400 with its code", async () => {
      await gotoTab(page, base, "Overview");
      const card = page.getByTestId("keys-card");
      await card.getByTestId("rotate-signing-key").click();
      const alert = card.locator('[data-testid="api-error"]');
      await alert.waitFor();
      const code = await alert.getAttribute("data-code");
      const text = (await alert.innerText()).replace(/\s+/g, " ").trim();
      assert(code && /^[0-9A-Z]{5}$/.test(code) && text.includes(code), `code ${code}: ${text}`);
      assert(text.includes("HS256") && text.includes("HTTP 400"), text);
      log(`  refused with ${code}: ${text.slice(0, 200)}`);
      await card.screenshot({ path: join(ARTIFACTS, "service-keys-hs256-1280.png") });
    });

    await step("Keys: Rotate API keys shows the new anon and service keys once", async () => {
      const card = page.getByTestId("keys-card");
      await card.getByTestId("rotate-api-keys").click();
      const dialog = page.getByRole("dialog");
      await dialog.getByTestId("rotate-api-keys-confirm").click();
      const anonEl = dialog.getByTestId("new-anon_key-value");
      await anonEl.waitFor();
      const anon = (await anonEl.innerText()).trim();
      const service = (await dialog.getByTestId("new-service_key-value").innerText()).trim();
      assert(anon.split(".").length === 3 && service.split(".").length === 3, "the new keys are not JWTs");
      assert(anon !== bkg.keys.anon_key && service !== SK, "the keys did not change");
      await page.screenshot({ path: join(ARTIFACTS, "service-keys-rotated-1280.png") });
      const fresh = await fetch(`${bkg.url}/admin/whoami`, { headers: adminHeaders(service) });
      assert(fresh.ok, `the new service key: HTTP ${fresh.status}`);
      const stale = await fetch(`${bkg.url}/admin/whoami`, { headers: adminHeaders(SK) });
      // Reported, not asserted: whether the old key stops working is the server's business (the UI only shows the new ones).
      log(`  the old service key now answers HTTP ${stale.status} on /admin/whoami`);
      await dialog.getByRole("button", { name: "Done" }).click();
      await dialog.waitFor({ state: "detached" });
      assert(!(await page.content()).includes(service), "the new service key is still on the page");
      await card.getByTestId("rotate-api-keys").click();
      const again = page.getByRole("dialog");
      await again.getByText("Rotate the API keys?").waitFor();
      assert((await again.getByTestId("new-anon_key-value").count()) === 0, "the new keys are shown again");
      assert(!(await page.content()).includes(anon), "the new anon key is shown again");
      await again.getByRole("button", { name: "Cancel" }).click();
      await again.waitFor({ state: "detached" });
      // The tab switched to the new service key: it stays signed in.
      await page.reload();
      await page.getByRole("heading", { level: 1, name: "Overview" }).waitFor();
      await page.getByTestId("server-stats").waitFor();
      assert(/\/admin\/dashboard\/$/.test(page.url()), `left the dashboard: ${page.url()}`);
    });

    await step("no CSP violations and no uncaught page errors during the scenario", async () => {
      assert(sink.csp.length === 0, `CSP: ${sink.csp.slice(0, 5).join(" | ")}`);
      assert(sink.pageErrors.length === 0, `page errors: ${sink.pageErrors.slice(0, 5).join(" | ")}`);
    });

    log(`CSP finding: ${cspFinding}`);
    if (sink.console.length) log(`console errors (HTTP errors the UI showed, for reference): ${sink.console.length}`);
    await ctx.close();
  } catch (e) {
    fail("harness", e);
    if (bkg) log(`bkg-db log tail:\n${bkg.logs.join("").slice(-3000)}`);
  } finally {
    await browser?.close().catch(() => {});
    await stat?.close().catch(() => {});
    if (bkg) {
      bkg.child.kill("SIGTERM");
      await new Promise((r) => {
        const t = setTimeout(() => {
          bkg.child.kill("SIGKILL");
          r();
        }, 5000);
        bkg.child.on("exit", () => {
          clearTimeout(t);
          r();
        });
        if (bkg.child.exitCode !== null) r();
      });
    }
    if (!process.env.E2E_KEEP) await rm(tmp, { recursive: true, force: true });
    else log(`kept ${tmp}`);
  }

  const failed = results.filter((r) => !r.ok);
  console.log("\n==== e2e summary ====");
  for (const r of results) console.log(`${r.ok ? "ok  " : "FAIL"} ${r.name}${r.ok ? "" : `\n     ${r.err.split("\n").slice(0, 3).join("\n     ")}`}`);
  for (const s of skipped) console.log(`SKIPPED (endpoint missing): ${s}`);
  console.log(`screenshots in ${ARTIFACTS}`);
  console.log(`e2e: ${results.length - failed.length} passed, ${failed.length} failed, ${skipped.length} skipped`);
  process.exit(failed.length ? 1 : 0);
}

await main();
