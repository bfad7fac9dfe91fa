// @supabase/supabase-js against a real bkg-db server: users sign up and sign in at /auth/v1,
// then read and write their todos through /rest/v1 under `user_id = auth.uid()` policies.
// Neither user sees the other's rows, anon sees none, refresh rotates, sign-out ends the session.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createClient } from '@supabase/supabase-js';
import ws from 'ws';
import { startServer, stopServer } from './server.mjs';

const PASSWORD = 'pw-' + randomBytes(8).toString('hex');

let server;
let keys;
let sql;

const url = () => `http://127.0.0.1:${server.httpPort}`;
// A client per user, as in a browser: its own session store, no shared state. (Node 20 has no
// WebSocket of its own: supabase-js's realtime client is handed `ws`, as its docs say.)
const newClient = (key = keys.anon_key) =>
  createClient(url(), key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: ws },
  });

before(async () => {
  server = await startServer({
    password: PASSWORD,
    prefix: 'bkg-node-supabase-',
    env: { BKG_DB_REST_RATE_PER_S: '0', BKG_DB_AUTH_RATE_PER_MIN: '0' },
  });
  keys = JSON.parse(readFileSync(join(server.dataDir, 'auth', 'keys.json'), 'utf8'));
  sql = new pg.Client({
    host: '127.0.0.1',
    port: server.pgPort,
    user: 'postgres',
    password: PASSWORD,
    database: 'postgres',
  });
  await sql.connect();
  await sql.query(`CREATE TABLE todos (
    id serial PRIMARY KEY,
    user_id uuid NOT NULL,
    task text NOT NULL,
    done boolean NOT NULL DEFAULT false
  )`);
  // Row-level security is on for new tables in public; the policies say who sees what.
  await sql.query(`CREATE POLICY todos_select ON todos FOR SELECT TO authenticated USING (user_id = auth.uid())`);
  await sql.query(`CREATE POLICY todos_insert ON todos FOR INSERT TO authenticated WITH CHECK (user_id = auth.uid())`);
  await sql.query(`CREATE POLICY todos_update ON todos FOR UPDATE TO authenticated
    USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()))`);
  await sql.query(`CREATE POLICY todos_delete ON todos FOR DELETE TO authenticated USING (user_id = auth.uid())`);
  await sql.query('GRANT SELECT, INSERT, UPDATE, DELETE ON todos TO anon, authenticated');
});

after(async () => {
  await sql?.end();
  if (server) await stopServer(server);
});

const email = (who) => `${who}-${randomBytes(4).toString('hex')}@example.com`;

function ok({ data, error }) {
  assert.equal(error, null, `unexpected error: ${JSON.stringify(error)}`);
  return data;
}

test('two users sign up, keep to their own todos; anon sees none; refresh and sign-out work', async () => {
  const alice = newClient();
  const bob = newClient();
  const aliceEmail = email('alice');

  const up = ok(await alice.auth.signUp({ email: aliceEmail, password: 'alice-secret', options: { data: { name: 'Alice' } } }));
  assert.ok(up.session?.access_token, 'signup with autoconfirm gives a session');
  assert.equal(up.user.email, aliceEmail);
  assert.equal(up.user.user_metadata.name, 'Alice');
  assert.equal(up.user.role, 'authenticated');
  ok(await bob.auth.signUp({ email: email('bob'), password: 'bob-secret' }));

  // Sign in again with the password (a second session for alice).
  const signedIn = ok(await alice.auth.signInWithPassword({ email: aliceEmail, password: 'alice-secret' }));
  const aliceId = signedIn.user.id;
  const bobId = (await bob.auth.getUser()).data.user.id;
  assert.notEqual(aliceId, bobId);

  ok(await alice.from('todos').insert([{ user_id: aliceId, task: 'alice 1' }, { user_id: aliceId, task: 'alice 2' }]));
  ok(await bob.from('todos').insert({ user_id: bobId, task: 'bob 1' }));
  // Writing a row for someone else is refused by the policy's WITH CHECK.
  const forged = await bob.from('todos').insert({ user_id: aliceId, task: 'forged' });
  assert.equal(forged.error?.code, '42501', JSON.stringify(forged));

  const aliceRows = ok(await alice.from('todos').select('task,user_id').order('task'));
  assert.deepEqual(aliceRows.map((r) => r.task), ['alice 1', 'alice 2']);
  assert.ok(aliceRows.every((r) => r.user_id === aliceId));
  assert.deepEqual(ok(await bob.from('todos').select('task')).map((r) => r.task), ['bob 1']);
  // Filters cannot reach around the policy.
  assert.deepEqual(ok(await bob.from('todos').select('task').eq('user_id', aliceId)), []);
  assert.deepEqual(ok(await newClient().from('todos').select('*')), [], 'anon sees no rows');

  // Updates and deletes touch only one's own rows.
  const upd = ok(await bob.from('todos').update({ done: true }).eq('task', 'alice 1').select());
  assert.deepEqual(upd, []);
  const mine = ok(await alice.from('todos').update({ done: true }).eq('task', 'alice 1').select('task,done'));
  assert.deepEqual(mine, [{ task: 'alice 1', done: true }]);
  const moved = await alice.from('todos').update({ user_id: bobId }).eq('task', 'alice 2');
  assert.equal(moved.error?.code, '42501', 'a row cannot be handed to another user');
  assert.deepEqual(ok(await bob.from('todos').delete().eq('task', 'alice 2').select()), []);

  // The service role sees everything.
  const all = ok(await newClient(keys.service_key).from('todos').select('task').order('task'));
  assert.deepEqual(all.map((r) => r.task), ['alice 1', 'alice 2', 'bob 1']);

  // Refresh rotates the refresh token; the old one is then dead.
  const before = (await alice.auth.getSession()).data.session;
  const refreshed = ok(await alice.auth.refreshSession());
  assert.notEqual(refreshed.session.refresh_token, before.refresh_token);
  assert.equal(refreshed.user.id, aliceId);
  assert.equal(ok(await alice.from('todos').select('id')).length, 2, 'the new access token works');
  const replay = newClient();
  const reused = await replay.auth.refreshSession({ refresh_token: before.refresh_token });
  assert.ok(reused.error, 'a used refresh token is refused');
  assert.match(reused.error.message, /Already Used/);

  // updateUser changes metadata.
  const updated = ok(await bob.auth.updateUser({ data: { plan: 'pro' } }));
  assert.equal(updated.user.user_metadata.plan, 'pro');

  // Sign out: the session is gone server-side.
  const token = (await bob.auth.getSession()).data.session.access_token;
  ok(await bob.auth.signOut());
  const res = await fetch(`${url()}/auth/v1/user`, { headers: { apikey: keys.anon_key, Authorization: `Bearer ${token}` } });
  assert.equal(res.status, 403);
  assert.equal((await bob.auth.getSession()).data.session, null);
});

test('wrong password and unknown email give the same answer; bad input is a 4xx', async () => {
  const c = newClient();
  const known = email('known');
  ok(await c.auth.signUp({ email: known, password: 'known-secret' }));
  const wrong = await newClient().auth.signInWithPassword({ email: known, password: 'not-it' });
  const unknown = await newClient().auth.signInWithPassword({ email: email('nobody'), password: 'not-it' });
  assert.equal(wrong.error?.status, 400);
  assert.equal(wrong.error.code, 'invalid_credentials');
  assert.deepEqual(
    [unknown.error?.status, unknown.error?.code, unknown.error?.message],
    [wrong.error.status, wrong.error.code, wrong.error.message],
  );
  const weak = await newClient().auth.signUp({ email: email('weak'), password: '123' });
  assert.equal(weak.error?.status, 422);
  assert.equal(weak.error.code, 'weak_password');
  const again = await newClient().auth.signUp({ email: known, password: 'known-secret' });
  assert.equal(again.error?.code, 'user_already_exists');
  const badEmail = await newClient().auth.signUp({ email: 'not-an-email', password: 'long-enough' });
  assert.equal(badEmail.error?.status, 400);
  const rec = await newClient().auth.resetPasswordForEmail(email('whoever'));
  assert.equal(rec.error, null);
});

test('admin API: the service role lists, creates, updates and deletes users; others may not', async () => {
  const admin = newClient(keys.service_key).auth.admin;
  const e = email('made');
  const made = ok(await admin.createUser({ email: e, password: 'made-secret', email_confirm: true, user_metadata: { by: 'admin' } }));
  assert.equal(made.user.email, e);
  const got = ok(await admin.getUserById(made.user.id));
  assert.equal(got.user.user_metadata.by, 'admin');
  const listed = ok(await admin.listUsers({ page: 1, perPage: 1000 }));
  assert.ok(listed.users.some((u) => u.id === made.user.id));
  const changed = ok(await admin.updateUserById(made.user.id, { app_metadata: { tier: 'gold' } }));
  assert.equal(changed.user.app_metadata.tier, 'gold');
  // The new user can sign in, and its token carries the app metadata.
  const u = newClient();
  const s = ok(await u.auth.signInWithPassword({ email: e, password: 'made-secret' }));
  const claims = JSON.parse(Buffer.from(s.session.access_token.split('.')[1], 'base64url').toString());
  assert.equal(claims.app_metadata.tier, 'gold');
  assert.equal(claims.sub, made.user.id);
  assert.equal(claims.role, 'authenticated');
  assert.equal(claims.session_id.length, 36);
  ok(await admin.deleteUser(made.user.id));
  const gone = await admin.getUserById(made.user.id);
  assert.equal(gone.error?.status, 404);
  // A user's token (or the anon key) is not an admin key.
  const userAdmin = createClient(url(), keys.anon_key, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: ws },
    global: { headers: { Authorization: `Bearer ${keys.anon_key}` } },
  }).auth.admin;
  const denied = await userAdmin.listUsers();
  assert.equal(denied.error?.status, 403);
});
