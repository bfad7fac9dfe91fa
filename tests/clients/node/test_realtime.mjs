// Realtime with the real @supabase/supabase-js (realtime-js inside it) against a bkg-db server:
// postgres_changes under row-level security (two users, anon, the service role; INSERT, UPDATE
// including one that moves a row to another user, DELETE; filters), broadcast with self and ack,
// broadcast over REST, presence, token refresh and expiry, and the raw protocol's refusals.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, createHmac } from 'node:crypto';
import pg from 'pg';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { startServer, stopServer, sleep } from './server.mjs';

const PASSWORD = 'pw-' + randomBytes(8).toString('hex');
const SECRET = randomBytes(24).toString('hex');

let server;
let keys;
let sql;
const clients = [];

const url = () => `http://127.0.0.1:${server.httpPort}`;
const newClient = (key = keys.anon_key) => {
  const c = createClient(url(), key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: WebSocket },
  });
  clients.push(c);
  return c;
};

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
/** An HS256 token signed with the server's secret. */
function sign(claims) {
  const head = b64url({ alg: 'HS256', typ: 'JWT' });
  const body = b64url(claims);
  const sig = createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}
const now = () => Math.floor(Date.now() / 1000);
const userToken = (sub, ttl = 3600) => sign({ sub, role: 'authenticated', aud: 'authenticated', exp: now() + ttl });

async function waitFor(what, check, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return;
    await sleep(25);
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** Subscribes a channel and resolves once SUBSCRIBED (rejects on an error status). */
function subscribed(channel) {
  return new Promise((resolve, reject) => {
    channel.subscribe((status, err) => {
      if (status === 'SUBSCRIBED') resolve(channel);
      else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') reject(new Error(`${status}: ${err?.message}`));
    });
  });
}

/** A channel on `table` collecting every change it receives. */
async function watch(client, name, opts = {}) {
  const events = [];
  const system = [];
  const ch = client
    .channel(name)
    .on('postgres_changes', { event: '*', schema: 'public', table: 'messages', ...opts }, (p) => events.push(p))
    .on('system', {}, (p) => system.push(p));
  await subscribed(ch);
  await waitFor(`${name} subscribed to PostgreSQL`, () => system.some((s) => s.extension === 'postgres_changes'));
  assert.equal(system[0].status, 'ok', JSON.stringify(system));
  return { ch, events, system };
}

before(async () => {
  server = await startServer({
    password: PASSWORD,
    prefix: 'bkg-node-realtime-',
    env: { BKG_DB_JWT_SECRET: SECRET, BKG_DB_REST_RATE_PER_S: '0', BKG_DB_AUTH_RATE_PER_MIN: '0' },
  });
  keys = JSON.parse(readFileSync(join(server.dataDir, 'auth', 'keys.json'), 'utf8'));
  sql = new pg.Client({ host: '127.0.0.1', port: server.pgPort, user: 'postgres', password: PASSWORD, database: 'postgres' });
  await sql.connect();
  await sql.query(`CREATE TABLE messages (id int PRIMARY KEY, user_id uuid NOT NULL, room int NOT NULL, body text)`);
  await sql.query(`CREATE POLICY own ON messages FOR SELECT TO authenticated USING (user_id = auth.uid())`);
  await sql.query('GRANT SELECT ON messages TO anon, authenticated');
  await sql.query('CREATE TABLE unpublished (id int PRIMARY KEY)');
  await sql.query('GRANT SELECT ON unpublished TO anon, authenticated');
  await sql.query('ALTER PUBLICATION supabase_realtime ADD TABLE messages');
});

after(async () => {
  for (const c of clients) await c.removeAllChannels();
  await sql?.end();
  if (server) await stopServer(server);
});

const A = '00000000-0000-4000-8000-00000000000a';
const B = '00000000-0000-4000-8000-00000000000b';

test('postgres_changes: each user receives exactly the rows its policy lets it select', async () => {
  const alice = newClient();
  alice.realtime.setAuth(userToken(A));
  const bob = newClient();
  bob.realtime.setAuth(userToken(B));
  const anon = newClient();
  const service = newClient(keys.service_key);
  const [a, b, n, s] = [await watch(alice, 'a-all'), await watch(bob, 'b-all'), await watch(anon, 'anon-all'), await watch(service, 's-all')];
  const room2 = await watch(alice, 'a-room2', { filter: 'room=eq.2' });
  const inserts = await watch(bob, 'b-inserts', { event: 'INSERT' });

  await sql.query(`INSERT INTO messages VALUES (1, '${A}', 1, 'a1'), (2, '${B}', 1, 'b1'), (3, '${A}', 2, 'a2')`);
  await sql.query(`INSERT INTO unpublished VALUES (1)`);
  await sql.query(`UPDATE messages SET body = 'a1!' WHERE id = 1`);
  // Moves a row from alice to bob: alice must not see it go, bob must not see what it was.
  await sql.query(`UPDATE messages SET user_id = '${B}', body = 'moved' WHERE id = 3`);
  await sql.query(`DELETE FROM messages WHERE id = 2`);
  await sql.query(`DELETE FROM messages WHERE id = 1`);

  await waitFor('the service role to see all 7 changes', () => s.events.length === 7);
  await waitFor('alice to see her 4 changes', () => a.events.length === 4);
  await waitFor('bob to see his 3 changes', () => b.events.length === 3);
  await sleep(300); // nothing more arrives
  const summary = (evs) => evs.map((e) => `${e.eventType} ${e.new?.id ?? e.old?.id}`);
  assert.deepEqual(summary(a.events), ['INSERT 1', 'INSERT 3', 'UPDATE 1', 'DELETE 1']);
  assert.deepEqual(summary(b.events), ['INSERT 2', 'UPDATE 3', 'DELETE 2']);
  assert.equal(n.events.length, 0, 'anon has no policy: nothing');
  assert.equal(s.events.length, 7);
  assert.deepEqual(summary(room2.events), ['INSERT 3']);
  assert.deepEqual(summary(inserts.events), ['INSERT 2']);

  const [ins] = a.events;
  assert.equal(ins.schema, 'public');
  assert.equal(ins.table, 'messages');
  assert.deepEqual(ins.new, { id: 1, user_id: A, room: 1, body: 'a1' });
  assert.ok(!Number.isNaN(Date.parse(ins.commit_timestamp)));
  const upd = a.events[2];
  assert.deepEqual(upd.old, { id: 1, user_id: A, room: 1, body: 'a1' }, 'the whole old row');
  assert.equal(upd.new.body, 'a1!');
  const moved = b.events[1];
  assert.equal(moved.new.body, 'moved');
  assert.deepEqual(moved.old, {}, 'bob could not see the row before the update');
  assert.deepEqual(a.events[3].old, { id: 1, user_id: A, room: 1, body: 'a1!' });
  // Every event anyone received belongs to them.
  for (const e of a.events) assert.equal((e.new.user_id ?? e.old.user_id), A);
  for (const e of b.events) assert.equal((e.new.user_id ?? e.old.user_id), B);
});

test('a subscription to a table one may not read is reported, and sends nothing', async () => {
  await sql.query('CREATE TABLE hidden (id int PRIMARY KEY)');
  await sql.query('ALTER PUBLICATION supabase_realtime ADD TABLE hidden');
  const alice = newClient();
  alice.realtime.setAuth(userToken(A));
  const events = [];
  const system = [];
  const ch = alice
    .channel('hidden')
    .on('postgres_changes', { event: '*', schema: 'public', table: 'hidden' }, (p) => events.push(p))
    .on('system', {}, (p) => system.push(p));
  await subscribed(ch);
  await waitFor('a system message', () => system.length > 0);
  assert.equal(system[0].status, 'error');
  assert.match(system[0].message, /permission denied/);
  await sql.query('INSERT INTO hidden VALUES (1)');
  await sleep(300);
  assert.equal(events.length, 0);
});

test('broadcast: self and ack, and over REST', async () => {
  const one = newClient();
  const two = newClient();
  const gotOne = [];
  const gotTwo = [];
  const c1 = one.channel('room-b', { config: { broadcast: { self: true, ack: true } } }).on('broadcast', { event: 'msg' }, (p) => gotOne.push(p));
  const c2 = two.channel('room-b').on('broadcast', { event: 'msg' }, (p) => gotTwo.push(p));
  await subscribed(c1);
  await subscribed(c2);
  assert.equal(await c1.send({ type: 'broadcast', event: 'msg', payload: { text: 'hello' } }), 'ok', 'acknowledged');
  await waitFor('both to receive it', () => gotOne.length === 1 && gotTwo.length === 1);
  assert.deepEqual(gotTwo[0].payload, { text: 'hello' });
  assert.equal(await c2.send({ type: 'broadcast', event: 'msg', payload: { text: 'no self' } }), 'ok');
  await waitFor('one to receive two', () => gotOne.length === 2);
  await sleep(200);
  assert.equal(gotTwo.length, 1, 'two does not receive its own message');

  const res = await fetch(`${url()}/realtime/v1/api/broadcast`, {
    method: 'POST',
    headers: { apikey: keys.anon_key, 'Content-Type': 'application/json' },
    body: JSON.stringify({ messages: [{ topic: 'room-b', event: 'msg', payload: { text: 'rest' } }] }),
  });
  assert.equal(res.status, 202);
  await waitFor('the REST broadcast', () => gotOne.length === 3 && gotTwo.length === 2);
  assert.deepEqual(gotTwo[1].payload, { text: 'rest' });
  const bad = await fetch(`${url()}/realtime/v1/api/broadcast`, {
    method: 'POST',
    headers: { apikey: keys.anon_key, 'Content-Type': 'application/json' },
    body: '{"messages": 3}',
  });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).code, 'PGRST102');
  const noKey = await fetch(`${url()}/realtime/v1/api/broadcast`, { method: 'POST', body: '{}' });
  assert.equal(noKey.status, 401);
});

test('presence: members see each other join and leave', async () => {
  const one = newClient();
  const two = newClient();
  const c1 = one.channel('room-p', { config: { presence: { key: 'one' } } }).on('presence', { event: 'sync' }, () => {});
  const c2 = two.channel('room-p', { config: { presence: { key: 'two' } } }).on('presence', { event: 'sync' }, () => {});
  await subscribed(c1);
  await subscribed(c2);
  assert.equal(await c1.track({ name: 'One' }), 'ok');
  assert.equal(await c2.track({ name: 'Two' }), 'ok');
  await waitFor('both present for both', () => Object.keys(c1.presenceState()).length === 2 && Object.keys(c2.presenceState()).length === 2);
  assert.equal(c2.presenceState().one[0].name, 'One');
  await c1.untrack();
  await waitFor('one gone for two', () => !('one' in c2.presenceState()));
  await two.removeChannel(c2);
  await waitFor('two gone for one', () => Object.keys(c1.presenceState()).length === 0);
});

test('tokens: refresh keeps the channel, expiry ends it with a message', async () => {
  const client = newClient();
  client.realtime.setAuth(userToken(A, 3));
  const w = await watch(client, 'expiring');
  // A refreshed token (another user's, to see the switch).
  await client.realtime.setAuth(userToken(B));
  await sleep(200);
  await sql.query(`INSERT INTO messages VALUES (10, '${A}', 1, 'for a'), (11, '${B}', 1, 'for b')`);
  await waitFor('the change for b', () => w.events.length === 1);
  assert.equal(w.events[0].new.id, 11);

  const short = newClient();
  short.realtime.setAuth(userToken(A, 2));
  const s = await watch(short, 'short');
  await waitFor('the expiry message', () => s.system.some((m) => m.status === 'error'), 6000);
  assert.match(s.system.find((m) => m.status === 'error').message, /expired/);
  await sql.query(`INSERT INTO messages VALUES (12, '${A}', 1, 'late')`);
  await sleep(300);
  assert.equal(s.events.length, 0, 'nothing after expiry');
});

/** Joins and expects a refusal; the channel is removed so the client does not retry. */
async function refused(client, channel) {
  const err = await subscribed(channel).then(() => null, (e) => e);
  await client.removeChannel(channel);
  assert.ok(err, 'the join is refused');
  return err.message;
}

test('private channels: policies on realtime.messages decide who joins, hears and sends', async () => {
  // Each user owns the private channel private-<uid> (broadcast only); everyone signed in may
  // read (not write) the lobby.
  await sql.query(`CREATE POLICY own_room_read ON realtime.messages FOR SELECT TO authenticated
    USING (realtime.topic() = 'private-' || auth.uid()::text)`);
  await sql.query(`CREATE POLICY own_room_send ON realtime.messages FOR INSERT TO authenticated
    WITH CHECK (realtime.topic() = 'private-' || auth.uid()::text AND extension = 'broadcast')`);
  await sql.query(`CREATE POLICY lobby_read ON realtime.messages FOR SELECT TO authenticated
    USING ((SELECT realtime.topic()) = 'lobby')`);
  const mine = `private-${A}`;
  const as = (sub) => { const c = newClient(); c.realtime.setAuth(userToken(sub)); return c; };
  const collect = (client, name, opts = {}) => {
    const got = [];
    const system = [];
    const ch = client.channel(name, { config: { broadcast: { ack: true }, ...opts } })
      .on('broadcast', { event: 'msg' }, (p) => got.push(p.payload))
      .on('system', {}, (p) => system.push(p));
    return { ch, got, system };
  };

  const a1 = collect(as(A), mine, { private: true });
  const a2 = collect(as(A), mine, { private: true });
  await subscribed(a1.ch);
  await subscribed(a2.ch);
  // Bob and anon may not join alice's private channel; bob's public channel of the same name
  // is another channel.
  const bob = as(B);
  assert.match(await refused(bob, bob.channel(mine, { config: { private: true } })), /Unauthorized: You do not have permissions to read from this Channel topic/);
  const anon = newClient();
  assert.match(await refused(anon, anon.channel(mine, { config: { private: true } })), /Unauthorized/);
  const bobPublic = collect(bob, mine);
  await subscribed(bobPublic.ch);

  assert.equal(await a1.ch.send({ type: 'broadcast', event: 'msg', payload: { n: 1 } }), 'ok');
  await waitFor('alice\'s other client to hear it', () => a2.got.length === 1);
  assert.deepEqual(a2.got[0], { n: 1 });
  // Presence is not allowed by the send policy (broadcast only).
  assert.equal(await a1.ch.track({ here: true }), 'error');

  // Read-only: the lobby hears but may not send.
  const lobby = collect(as(A), 'lobby', { private: true });
  await subscribed(lobby.ch);
  assert.equal(await lobby.ch.send({ type: 'broadcast', event: 'msg', payload: { n: 2 } }), 'error');

  // Over REST: the service role passes; anon and bob are refused for alice's channel.
  const rest = (key, topic) => fetch(`${url()}/realtime/v1/api/broadcast`, {
    method: 'POST',
    headers: { apikey: key, Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ messages: [{ topic, event: 'msg', payload: { n: 3 }, private: true }] }),
  });
  assert.equal((await rest(keys.service_key, mine)).status, 202);
  await waitFor('the private REST broadcast', () => a1.got.length === 1 && a2.got.length === 2);
  const denied = await rest(keys.anon_key, mine);
  assert.equal(denied.status, 403);
  assert.match((await denied.json()).message, /Unauthorized/);
  assert.equal((await rest(userToken(B), mine)).status, 403);
  assert.equal((await rest(userToken(A), mine)).status, 202);
  await waitFor('alice\'s own REST broadcast', () => a2.got.length === 3);
  await sleep(300);
  assert.equal(bobPublic.got.length, 0, 'the public channel of that name hears nothing private');

  // A refreshed token is authorised again: bob's token ends alice's private channel.
  a1.ch.socket.setAuth(userToken(B));
  await waitFor('the refusal', () => a1.system.some((m) => m.status === 'error'));
  assert.match(a1.system.find((m) => m.status === 'error').message, /Unauthorized/);
});

/** A raw WebSocket speaking the protocol by hand. */
function raw(query) {
  const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}/realtime/v1/websocket?${query}`);
  const frames = [];
  let closed = null;
  ws.on('message', (m) => frames.push(JSON.parse(m.toString())));
  ws.on('close', (code, reason) => { closed = { code, reason: reason.toString() }; });
  const opened = new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); ws.on('unexpected-response', (_, res) => reject(new Error(`HTTP ${res.statusCode}`))); });
  return { ws, frames, opened, closed: () => closed };
}

test('the raw protocol: 1.0.0 frames, heartbeats, refusals with reasons, limits', async () => {
  await assert.rejects(raw('vsn=1.0.0').opened, /HTTP 401/, 'no key');
  await assert.rejects(raw(`apikey=nope&vsn=1.0.0`).opened, /HTTP 401/, 'bad key');
  await assert.rejects(raw(`apikey=${keys.anon_key}&vsn=9`).opened, /HTTP 400/);

  const c = raw(`apikey=${keys.anon_key}&vsn=1.0.0`);
  await c.opened;
  c.ws.send(JSON.stringify({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: '1' }));
  c.ws.send('not json');
  c.ws.send(JSON.stringify({ topic: 'realtime:x', event: 'phx_join', payload: { config: { postgres_changes: [{ event: 'TRUNCATE', schema: 'public' }] } }, ref: '2', join_ref: '2' }));
  c.ws.send(JSON.stringify({ topic: 'realtime:x', event: 'phx_join', payload: { config: { private: true } }, ref: '3', join_ref: '3' }));
  c.ws.send(JSON.stringify({ topic: 'realtime:y', event: 'phx_join', payload: { config: { postgres_changes: [{ event: '*', schema: 'public', table: 'messages', filter: 'room=like.1' }] } }, ref: '4', join_ref: '4' }));
  await waitFor('four replies and an error', () => c.frames.length >= 5);
  const byRef = (r) => c.frames.find((f) => f.ref === r);
  assert.deepEqual(byRef('1').payload, { status: 'ok', response: {} });
  assert.ok(c.frames.some((f) => f.topic === 'phoenix' && f.payload?.status === 'error' && /not JSON/.test(f.payload.response.reason)));
  assert.match(byRef('2').payload.response.reason, /TRUNCATE/);
  assert.match(byRef('3').payload.response.reason, /^Unauthorized: You do not have permissions to read from this Channel topic: x$/);
  assert.match(byRef('4').payload.response.reason, /unknown operator/);
  // One frame over the limit ends the connection.
  c.ws.send('x'.repeat(2 * 1024 * 1024));
  await waitFor('the close', () => c.closed() !== null);
  assert.equal(c.closed().code, 1009);
});

test('limits: connections, channels, message rate, slow readers; metrics count them', async () => {
  const small = await startServer({
    password: PASSWORD,
    prefix: 'bkg-node-realtime-limits-',
    env: {
      BKG_DB_JWT_SECRET: SECRET,
      BKG_DB_REALTIME_MAX_CONNECTIONS: '2',
      BKG_DB_REALTIME_MAX_CHANNELS: '1',
      BKG_DB_REALTIME_EVENTS_PER_S: '5',
      BKG_DB_REALTIME_QUEUE: '16',
    },
  });
  const smallKeys = JSON.parse(readFileSync(join(small.dataDir, 'auth', 'keys.json'), 'utf8'));
  const db = new pg.Client({ host: '127.0.0.1', port: small.pgPort, user: 'postgres', password: PASSWORD, database: 'postgres' });
  await db.connect();
  const open = (q) => {
    const ws = new WebSocket(`ws://127.0.0.1:${small.httpPort}/realtime/v1/websocket?apikey=${smallKeys.service_key}&vsn=2.0.0&${q ?? ''}`);
    const frames = [];
    let closed = null;
    ws.on('message', (m) => frames.push(JSON.parse(m.toString())));
    ws.on('close', (code, reason) => { closed = { code, reason: reason.toString() }; });
    const opened = new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('unexpected-response', (_, res) => reject(new Error(`HTTP ${res.statusCode}`))); });
    return { ws, frames, opened, closed: () => closed };
  };
  try {
    await db.query('CREATE TABLE bulk (id int PRIMARY KEY, pad text)');
    await db.query('ALTER PUBLICATION supabase_realtime ADD TABLE bulk');
    const a = open();
    const b = open();
    await a.opened;
    await b.opened;
    await assert.rejects(open().opened, /HTTP 503/, 'a third connection is over the limit');

    const join = (c, topic, ref, config = {}) => c.ws.send(JSON.stringify([ref, ref, topic, 'phx_join', { config }]));
    join(a, 'realtime:one', '1', { broadcast: { ack: true } });
    join(a, 'realtime:two', '2');
    await waitFor('two join replies', () => a.frames.filter((f) => f[3] === 'phx_reply').length === 2);
    const reply = (c, ref) => c.frames.find((f) => f[3] === 'phx_reply' && f[1] === ref)[4];
    assert.equal(reply(a, '1').status, 'ok');
    assert.match(reply(a, '2').response.reason, /more than 1 channels/);

    for (let i = 0; i < 10; i++) {
      a.ws.send(JSON.stringify(['1', `b${i}`, 'realtime:one', 'broadcast', { type: 'broadcast', event: 'x', payload: {} }]));
    }
    await waitFor('ten broadcast replies', () => a.frames.filter((f) => f[3] === 'phx_reply' && String(f[1]).startsWith('b')).length === 10);
    const refused = a.frames.filter((f) => f[3] === 'phx_reply' && String(f[1]).startsWith('b') && f[4].status === 'error');
    assert.ok(refused.length >= 5, `at most 5 a second pass: ${refused.length} refused`);
    assert.match(refused[0][4].response.reason, /more than 5 messages per second/);

    // A reader that stops reading is disconnected once its queue (16) is full.
    join(b, 'realtime:bulk', '1', { postgres_changes: [{ event: '*', schema: 'public', table: 'bulk' }] });
    await waitFor('the bulk join', () => b.frames.some((f) => f[3] === 'system'));
    b.ws.pause();
    const rows = Array.from({ length: 20000 }, (_, i) => `(${i}, '${'x'.repeat(100)}')`).join(',');
    await db.query(`INSERT INTO bulk VALUES ${rows}`);
    b.ws.resume();
    await waitFor('the slow reader to be closed', () => b.closed() !== null, 20_000);
    assert.equal(b.closed().code, 1013);
    assert.match(b.closed().reason, /slow consumer/);

    const metrics = await (await fetch(`http://127.0.0.1:${small.httpPort}/metrics`)).text();
    const metric = (name) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(metrics)?.[1]);
    assert.equal(metric('bkg_realtime_slow_disconnects_total'), 1);
    assert.ok(metric('bkg_realtime_events_delivered_total') > 0);
    assert.ok(metric('bkg_realtime_events_dropped_total') > 0);
    assert.equal(metric('bkg_realtime_connections_refused_total'), 1);
    a.ws.close();
  } finally {
    await db.end();
    await stopServer(small);
  }
});
