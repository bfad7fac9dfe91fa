// Realtime fan-out: N WebSocket subscribers (realtime-js's 2.0.0 protocol, one connection each)
// on one table with row-level security, a writer inserting at a steady rate; reports the
// changes delivered per second and the commit-to-delivery latency (p50, p99, max).
//
//   node benches/realtime/fanout.mjs BKG_BIN SUBSCRIBERS RATE SECONDS SCENARIO
//
// SCENARIO `per-user`: policy `user_id = auth.uid()`, each subscriber a different user, each row
// for one of them (every commit is checked against every subscriber's policy; one delivery).
// SCENARIO `shared`: policy `USING (true)` for authenticated: every row goes to every subscriber.
// Latency is measured on this machine's clock: the client's receive time minus the change's
// commit_timestamp (the server's wall clock at commit).

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { createHmac, randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/clients/node/package.json', import.meta.url));
const WebSocket = require('ws');
const pg = require('pg');

const [bin, nArg, rateArg, secondsArg, scenario = 'per-user'] = process.argv.slice(2);
const N = Number(nArg);
const RATE = Number(rateArg);
const SECONDS = Number(secondsArg);
if (!bin || !N || !RATE || !SECONDS || !['per-user', 'shared'].includes(scenario)) {
  console.error('usage: fanout.mjs BKG_BIN SUBSCRIBERS RATE SECONDS per-user|shared');
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const freePort = () =>
  new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

const SECRET = randomBytes(24).toString('hex');
const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
function token(sub) {
  const h = b64({ alg: 'HS256', typ: 'JWT' });
  const b = b64({ sub, role: 'authenticated', aud: 'authenticated', exp: Math.floor(Date.now() / 1000) + 3600 });
  return `${h}.${b}.${createHmac('sha256', SECRET).update(`${h}.${b}`).digest('base64url')}`;
}
const uuid = (i) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;

const dir = mkdtempSync(join(tmpdir(), 'bkg-fanout-'));
const [pgPort, httpPort, flightPort] = [await freePort(), await freePort(), await freePort()];
const server = spawn(
  bin,
  ['serve', '--data-dir', join(dir, 'data'), '--pg-listen', `127.0.0.1:${pgPort}`, '--http-listen', `127.0.0.1:${httpPort}`,
    '--flight-listen', `127.0.0.1:${flightPort}`],
  {
    env: {
      ...process.env, BKG_DB_PASSWORD: 'bench', BKG_DB_JWT_SECRET: SECRET, BKG_DB_LOG: 'warn',
      BKG_DB_REALTIME_MAX_CONNECTIONS: String(N + 100), BKG_DB_REALTIME_JOINS_PER_S: '1000',
      BKG_DB_REALTIME_QUEUE: '65536',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  },
);
const cleanup = () => { server.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); };
process.on('exit', cleanup);
for (let i = 0; i < 300; i++) {
  try { if ((await fetch(`http://127.0.0.1:${httpPort}/healthz`)).ok) break; } catch { /* not yet */ }
  await sleep(100);
}
const keys = JSON.parse(readFileSync(join(dir, 'data', 'auth', 'keys.json'), 'utf8'));

const sql = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', password: 'bench', database: 'postgres' });
await sql.connect();
await sql.query('CREATE TABLE feed (id bigint PRIMARY KEY, user_id uuid NOT NULL, body text NOT NULL)');
await sql.query(scenario === 'per-user'
  ? 'CREATE POLICY own ON feed FOR SELECT TO authenticated USING (user_id = auth.uid())'
  : 'CREATE POLICY everyone ON feed FOR SELECT TO authenticated USING (true)');
await sql.query('GRANT SELECT ON feed TO authenticated');
await sql.query('ALTER PUBLICATION supabase_realtime ADD TABLE feed');

// Subscribers, joined in waves so the join rate stays reasonable.
const latencies = [];
let received = 0;
let ready = 0;
const sockets = [];
function subscribe(i) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${httpPort}/realtime/v1/websocket?apikey=${keys.anon_key}&vsn=2.0.0`, { perMessageDeflate: false });
    sockets.push(ws);
    ws.on('error', reject);
    ws.on('open', () => {
      const config = { postgres_changes: [{ event: 'INSERT', schema: 'public', table: 'feed' }] };
      ws.send(JSON.stringify(['1', '1', 'realtime:feed', 'phx_join', { config, access_token: token(uuid(i)) }]));
    });
    ws.on('message', (data) => {
      const [, , , event, payload] = JSON.parse(data.toString());
      if (event === 'system' && payload.extension === 'postgres_changes') {
        if (payload.status !== 'ok') reject(new Error(payload.message));
        ready++;
        resolve();
      } else if (event === 'postgres_changes') {
        received++;
        latencies.push(Date.now() - Date.parse(payload.data.commit_timestamp));
      }
    });
    setInterval(() => ws.readyState === 1 && ws.send(JSON.stringify([null, 'h', 'phoenix', 'heartbeat', {}])), 25_000).unref();
  });
}
const joinStart = Date.now();
for (let i = 0; i < N; i += 200) {
  await Promise.all(Array.from({ length: Math.min(200, N - i) }, (_, k) => subscribe(i + k)));
}
const joinS = (Date.now() - joinStart) / 1000;

// The writer: one commit per row at RATE rows/s.
let id = 0;
const start = Date.now();
const interval = 1000 / RATE;
while (Date.now() - start < SECONDS * 1000) {
  const due = start + id * interval;
  const wait = due - Date.now();
  if (wait > 0) await sleep(wait);
  await sql.query('INSERT INTO feed VALUES ($1, $2, $3)', [id, uuid(id % N), `row ${id}`]);
  id++;
}
const writeS = (Date.now() - start) / 1000;
const expected = scenario === 'per-user' ? id : id * N;
const deadline = Date.now() + 60_000;
while (received < expected && Date.now() < deadline) await sleep(50);
const totalS = (Date.now() - start) / 1000;
latencies.sort((a, b) => a - b);
const q = (p) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
const dropped = Number(/bkg_realtime_events_dropped_total (\d+)/.exec(metrics)?.[1] ?? 0);
const result = {
  scenario, subscribers: N, joined: ready, join_s: joinS, commits: id, commits_per_s: id / writeS,
  expected, received, dropped, delivered_per_s: received / totalS,
  p50_ms: q(0.5), p99_ms: q(0.99), max_ms: latencies.at(-1) ?? NaN,
};
console.log(JSON.stringify(result));
for (const ws of sockets) ws.terminate();
await sql.end();
process.exit(received === expected ? 0 : 1);
