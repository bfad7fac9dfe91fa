// Starts and stops a real bkg-db server process for the node client tests.
//
// The binary comes from BKG_DB_BIN, else $CARGO_TARGET_DIR/debug/bkg-db, else
// ~/.cache/bkg-target/debug/bkg-db. Each server gets free loopback ports and its own temporary
// data directory, removed again by stopServer().

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, openSync, closeSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, homedir } from 'node:os';
import { join } from 'node:path';

export function serverBinary() {
  if (process.env.BKG_DB_BIN) return process.env.BKG_DB_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(homedir(), '.cache', 'bkg-target');
  return join(target, 'debug', 'bkg-db');
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function healthy(httpPort) {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/healthz`, { signal: AbortSignal.timeout(1000) });
    return res.status === 200;
  } catch {
    return false;
  }
}

/**
 * Starts `bkg-db serve` and waits until /healthz answers.
 * @param {{ password: string, env?: Record<string,string>, prefix?: string }} opts
 * @returns {Promise<{ proc, dir, dataDir: string, pgPort: number, httpPort: number, exited: Promise<{code, signal}> }>}
 */
export async function startServer({ password, env = {}, prefix = 'bkg-node-' }) {
  const bin = serverBinary();
  for (let i = 0; i < 50 && !existsSync(bin); i++) await sleep(200); // a build may be replacing it
  assert.ok(existsSync(bin), `bkg-db binary not found at ${bin} (set BKG_DB_BIN)`);
  const dir = mkdtempSync(join(tmpdir(), prefix));
  let lastLog = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const [pgPort, httpPort, flightPort] = [await freePort(), await freePort(), await freePort()];
    const dataDir = join(dir, `data-${attempt}`);
    const logPath = join(dir, `server-${attempt}.log`);
    const logFd = openSync(logPath, 'a');
    const proc = spawn(
      bin,
      [
        'serve',
        '--data-dir', dataDir,
        '--pg-listen', `127.0.0.1:${pgPort}`,
        '--http-listen', `127.0.0.1:${httpPort}`,
        '--flight-listen', `127.0.0.1:${flightPort}`,
      ],
      { env: { ...process.env, BKG_DB_PASSWORD: password, BKG_DB_LOG: 'warn', ...env }, stdio: ['ignore', 'ignore', logFd] },
    );
    closeSync(logFd);
    const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
    let done = false;
    exited.then(() => { done = true; });
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && !done) {
      if (await healthy(httpPort)) return { proc, dir, dataDir, pgPort, httpPort, exited };
      await sleep(100);
    }
    if (!done) proc.kill('SIGKILL');
    await exited;
    lastLog = readFileSync(logPath, 'utf8').slice(-2000);
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`bkg-db did not become healthy:\n${lastLog}`);
}

/**
 * Sends SIGTERM (SIGKILL after 30 s), removes the data directory, and returns how the process
 * ended: { code, signal }, or 'timeout' when it had to be killed.
 */
export async function stopServer(server) {
  server.proc.kill('SIGTERM');
  let timer;
  const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), 30_000); });
  const result = await Promise.race([server.exited, timeout]);
  clearTimeout(timer);
  if (result === 'timeout') {
    server.proc.kill('SIGKILL');
    await server.exited;
  }
  rmSync(server.dir, { recursive: true, force: true });
  return result;
}
