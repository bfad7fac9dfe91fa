// Object storage with the real @supabase/supabase-js (storage-js inside it) against a bkg-db
// server, once with the local file-system backend and once with the S3 backend on a real
// S3-compatible server (moto): bucket lifecycle, text and binary uploads byte for byte, upsert,
// list/search, move/copy/remove, public URLs, signed download and upload URLs and their expiry
// and tampering, ranges and conditional requests, limits and MIME types, and row-level security
// per user (a folder per user: (storage.foldername(name))[1] = auth.uid()::text).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { homedir } from 'node:os';
import { spawn } from 'node:child_process';
import { randomBytes, createHmac, createHash } from 'node:crypto';
import pg from 'pg';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { startServer, stopServer, freePort, sleep } from './server.mjs';

const A = '00000000-0000-4000-8000-0000000000a1';
const B = '00000000-0000-4000-8000-0000000000b2';

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
function signer(secret) {
  return (claims) => {
    const head = b64url({ alg: 'HS256', typ: 'JWT' });
    const body = b64url(claims);
    const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
    return `${head}.${body}.${sig}`;
  };
}

/** moto's S3 server on a free port, with an empty bucket. */
async function startMoto() {
  const bin = process.env.BKG_MOTO_SERVER || join(homedir(), '.cache', 'bkg-venv', 'bin', 'moto_server');
  assert.ok(existsSync(bin), `moto_server not found at ${bin} (scripts/test-clients.sh installs it)`);
  const port = await freePort();
  const proc = spawn(bin, ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const r = await fetch(`${endpoint}/bkg-objects`, { method: 'PUT' });
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) { proc.kill(); throw new Error('moto did not start'); }
    await sleep(100);
  }
  return { proc, endpoint };
}

const POLICIES = [
  // docs: private, a folder per user.
  `CREATE POLICY docs_read ON storage.objects FOR SELECT TO authenticated
     USING (bucket_id = 'docs' AND (storage.foldername(name))[1] = auth.uid()::text)`,
  `CREATE POLICY docs_insert ON storage.objects FOR INSERT TO authenticated
     WITH CHECK (bucket_id = 'docs' AND (storage.foldername(name))[1] = auth.uid()::text)`,
  `CREATE POLICY docs_update ON storage.objects FOR UPDATE TO authenticated
     USING (bucket_id = 'docs' AND (storage.foldername(name))[1] = auth.uid()::text)`,
  `CREATE POLICY docs_delete ON storage.objects FOR DELETE TO authenticated
     USING (bucket_id = 'docs' AND (storage.foldername(name))[1] = auth.uid()::text)`,
  // avatars: public reads, users write (and replace) their own.
  `CREATE POLICY avatars_insert ON storage.objects FOR INSERT TO authenticated
     WITH CHECK (bucket_id = 'avatars' AND owner_id = auth.uid()::text)`,
  `CREATE POLICY buckets_read ON storage.buckets FOR SELECT TO authenticated USING (true)`,
];

function storageSuite(label, backend) {
  describe(`storage (${label})`, () => {
    let server;
    let moto;
    let keys;
    let sql;
    let sign;
    const url = () => `http://127.0.0.1:${server.httpPort}`;
    const client = (token) => createClient(url(), keys.anon_key, {
      auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
      global: token ? { headers: { Authorization: `Bearer ${token}` } } : {},
      realtime: { transport: WebSocket },
    });
    const user = (sub, ttl = 3600) => client(sign({ sub, role: 'authenticated', aud: 'authenticated', exp: Math.floor(Date.now() / 1000) + ttl }));
    let service;
    let alice;
    let bob;
    let anon;

    before(async () => {
      const secret = randomBytes(24).toString('hex');
      sign = signer(secret);
      const env = { BKG_DB_JWT_SECRET: secret, BKG_DB_REST_RATE_PER_S: '0', BKG_DB_AUTH_RATE_PER_MIN: '0', BKG_DB_STORAGE_FILE_SIZE_MAX_MB: '8' };
      if (backend === 's3') {
        moto = await startMoto();
        Object.assign(env, {
          BKG_DB_STORAGE_BACKEND: 's3', BKG_DB_STORAGE_S3_BUCKET: 'bkg-objects', BKG_DB_STORAGE_S3_ENDPOINT: moto.endpoint,
          BKG_DB_STORAGE_S3_PREFIX: 'tenant-1', AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_REGION: 'us-east-1',
        });
      }
      const password = 'pw-' + randomBytes(8).toString('hex');
      server = await startServer({ password, prefix: `bkg-node-storage-${label}-`, env });
      keys = JSON.parse(readFileSync(join(server.dataDir, 'auth', 'keys.json'), 'utf8'));
      sql = new pg.Client({ host: '127.0.0.1', port: server.pgPort, user: 'postgres', password, database: 'postgres' });
      await sql.connect();
      for (const p of POLICIES) await sql.query(p);
      service = client(keys.service_key);
      alice = user(A);
      bob = user(B);
      anon = client();
    });

    after(async () => {
      await sql?.end();
      if (server) await stopServer(server);
      moto?.proc.kill();
    });

    test('buckets: create, list, get, update, refuse, empty, delete', async () => {
      let r = await service.storage.createBucket('docs', { public: false });
      assert.equal(r.error, null, r.error?.message);
      assert.deepEqual(r.data, { name: 'docs' });
      r = await service.storage.createBucket('avatars', { public: true, fileSizeLimit: '1MB', allowedMimeTypes: ['image/*'] });
      assert.equal(r.error, null, r.error?.message);
      r = await service.storage.createBucket('docs');
      assert.equal(r.error.status, 409);
      // Creating a bucket is an INSERT on storage.buckets: no policy allows it for anon.
      r = await anon.storage.createBucket('mine');
      assert.equal(r.error.status, 403);
      assert.match(r.error.message, /no policy allows INSERT on storage\.buckets/);
      r = await service.storage.createBucket('../x');
      assert.equal(r.error.status, 400);

      const listed = await alice.storage.listBuckets();
      assert.deepEqual(listed.data.map((b) => b.id).sort(), ['avatars', 'docs']);
      const avatars = (await alice.storage.getBucket('avatars')).data;
      assert.equal(avatars.public, true);
      assert.equal(avatars.file_size_limit, 1 << 20);
      assert.deepEqual(avatars.allowed_mime_types, ['image/*']);
      assert.equal((await anon.storage.listBuckets()).data.length, 0, 'anon sees no bucket (no policy)');
      assert.equal((await anon.storage.getBucket('docs')).error.status, 404);

      assert.equal((await service.storage.createBucket('scratch')).error, null);
      assert.equal((await service.storage.updateBucket('scratch', { public: true, fileSizeLimit: 10 })).error, null);
      assert.equal((await service.storage.getBucket('scratch')).data.file_size_limit, 10);
      assert.equal((await service.storage.from('scratch').upload('f.txt', 'tiny')).error, null);
      const big = await service.storage.from('scratch').upload('g.txt', 'more than ten bytes');
      assert.equal(big.error.status, 413);
      r = await service.storage.deleteBucket('scratch');
      assert.equal(r.error.status, 409, 'a bucket with objects is not deleted');
      assert.equal((await service.storage.emptyBucket('scratch')).error, null);
      assert.equal((await service.storage.deleteBucket('scratch')).error, null);
      assert.equal((await service.storage.getBucket('scratch')).error.status, 404);
    });

    test('objects: text and binary byte for byte, upsert, update, info, exists, ranges, ETags', async () => {
      const docs = alice.storage.from('docs');
      let r = await docs.upload(`${A}/hello.txt`, 'hello world', { contentType: 'text/plain' });
      assert.equal(r.error, null, r.error?.message);
      assert.equal(r.data.path, `${A}/hello.txt`);
      assert.equal(r.data.fullPath, `docs/${A}/hello.txt`);
      assert.match(r.data.id, /^[0-9a-f-]{36}$/);
      assert.equal(await (await docs.download(`${A}/hello.txt`)).data.text(), 'hello world');

      const bin = randomBytes(3 * 1024 * 1024 + 17);
      r = await docs.upload(`${A}/blob.bin`, bin, { contentType: 'application/octet-stream' });
      assert.equal(r.error, null, r.error?.message);
      const got = Buffer.from(await (await docs.download(`${A}/blob.bin`)).data.arrayBuffer());
      assert.equal(Buffer.compare(got, bin), 0, 'binary round trip');
      // A Blob goes as multipart/form-data, with user metadata.
      const blob = new Blob([bin.subarray(0, 1000)], { type: 'application/x-test' });
      r = await docs.upload(`${A}/form.bin`, blob, { metadata: { note: 'hi' }, cacheControl: '60' });
      assert.equal(r.error, null, r.error?.message);
      const info = (await docs.info(`${A}/form.bin`)).data;
      assert.equal(info.size, 1000);
      assert.equal(info.contentType, 'application/x-test');
      assert.deepEqual(info.metadata, { note: 'hi' });
      assert.equal(info.etag, `"${createHash('md5').update(bin.subarray(0, 1000)).digest('hex')}"`);
      assert.equal(info.cacheControl, 'max-age=60');

      r = await docs.upload(`${A}/hello.txt`, 'again');
      assert.equal(r.error.status, 409, 'no upsert: the object exists');
      r = await docs.upload(`${A}/hello.txt`, 'replaced', { upsert: true });
      assert.equal(r.error, null, r.error?.message);
      assert.equal(await (await docs.download(`${A}/hello.txt`)).data.text(), 'replaced');
      r = await docs.update(`${A}/hello.txt`, 'updated');
      assert.equal(r.error, null, r.error?.message);
      assert.equal(await (await docs.download(`${A}/hello.txt`)).data.text(), 'updated');
      assert.equal((await docs.update(`${A}/nothing.txt`, 'x')).error.status, 404);
      assert.equal((await docs.exists(`${A}/hello.txt`)).data, true);
      assert.equal((await docs.exists(`${A}/nothing.txt`)).data, false);

      const headers = { Authorization: `Bearer ${sign({ sub: A, role: 'authenticated', exp: Math.floor(Date.now() / 1000) + 60 })}`, apikey: keys.anon_key };
      const objectUrl = `${url()}/storage/v1/object/docs/${A}/hello.txt`;
      let res = await fetch(objectUrl, { headers: { ...headers, Range: 'bytes=1-3' } });
      assert.equal(res.status, 206);
      assert.equal(await res.text(), 'pda');
      assert.equal(res.headers.get('content-range'), 'bytes 1-3/7');
      res = await fetch(objectUrl, { headers: { ...headers, Range: 'bytes=50-' } });
      assert.equal(res.status, 416);
      res = await fetch(objectUrl, { headers });
      const etag = res.headers.get('etag');
      assert.match(etag, /^"[0-9a-f]{32}"$/);
      res = await fetch(objectUrl, { headers: { ...headers, 'If-None-Match': etag } });
      assert.equal(res.status, 304);
      res = await fetch(`${objectUrl}?download=report.txt`, { headers });
      assert.match(res.headers.get('content-disposition'), /attachment; filename="report.txt"/);
      // Names that could escape or confuse are refused.
      // (fetch itself resolves a literal or %2E%2E segment; encoded separators reach the server.)
      for (const bad of [`${A}%2F..%2F..%2Fx.txt`, `${A}/a%00b.txt`, `${A}%2F%2Fx.txt`]) {
        res = await fetch(`${url()}/storage/v1/object/docs/${bad}`, { method: 'POST', headers, body: 'x' });
        assert.equal(res.status, 400, bad);
        assert.equal((await res.json()).error, 'InvalidKey');
      }
    });

    test('list, search, move, copy, remove', async () => {
      const docs = alice.storage.from('docs');
      for (const n of ['docs/a.txt', 'docs/b.txt', 'img/c.txt']) {
        assert.equal((await docs.upload(`${A}/tree/${n}`, n)).error, null);
      }
      let l = (await docs.list(`${A}/tree`)).data;
      assert.deepEqual(l.map((e) => [e.name, e.id === null]), [['docs', true], ['img', true]]);
      l = (await docs.list(`${A}/tree/docs`, { sortBy: { column: 'name', order: 'desc' } })).data;
      assert.deepEqual(l.map((e) => e.name), ['b.txt', 'a.txt']);
      assert.equal(l[0].metadata.size, 'docs/b.txt'.length);
      l = (await docs.list(`${A}/tree/docs`, { search: 'B' })).data;
      assert.deepEqual(l.map((e) => e.name), ['b.txt']);
      l = (await docs.list(`${A}/tree/docs`, { limit: 1, offset: 1 })).data;
      assert.deepEqual(l.map((e) => e.name), ['b.txt']);

      assert.equal((await docs.move(`${A}/tree/docs/a.txt`, `${A}/tree/docs/a2.txt`)).error, null);
      assert.equal((await docs.download(`${A}/tree/docs/a.txt`)).error.status, 404);
      assert.equal(await (await docs.download(`${A}/tree/docs/a2.txt`)).data.text(), 'docs/a.txt');
      assert.equal((await docs.move(`${A}/tree/docs/b.txt`, `${A}/tree/docs/a2.txt`)).error.status, 409);
      const c = await docs.copy(`${A}/tree/docs/a2.txt`, `${A}/tree/copy.txt`);
      assert.equal(c.error, null, c.error?.message);
      assert.equal(c.data.path, `docs/${A}/tree/copy.txt`);
      assert.equal(await (await docs.download(`${A}/tree/copy.txt`)).data.text(), 'docs/a.txt');
      const gone = await docs.remove([`${A}/tree/copy.txt`, `${A}/tree/img/c.txt`, `${A}/tree/none.txt`]);
      assert.deepEqual(gone.data.map((o) => o.name).sort(), [`${A}/tree/copy.txt`, `${A}/tree/img/c.txt`]);
      assert.equal((await docs.exists(`${A}/tree/copy.txt`)).data, false);
      assert.equal(await (await docs.download(`${A}/tree/docs/a2.txt`)).data.text(), 'docs/a.txt', 'the copy\'s source stays');
    });

    test('public bucket, limits and MIME types', async () => {
      const avatars = alice.storage.from('avatars');
      const png = randomBytes(2048);
      let r = await avatars.upload(`${A}/me.png`, png, { contentType: 'image/png' });
      assert.equal(r.error, null, r.error?.message);
      const { publicUrl } = avatars.getPublicUrl(`${A}/me.png`).data;
      let res = await fetch(publicUrl);
      assert.equal(res.status, 200);
      assert.equal(Buffer.compare(Buffer.from(await res.arrayBuffer()), png), 0);
      assert.equal(res.headers.get('content-type'), 'image/png');
      // A private bucket has no public URL.
      res = await fetch(alice.storage.from('docs').getPublicUrl(`${A}/hello.txt`).data.publicUrl);
      assert.equal(res.status, 404);
      r = await avatars.upload(`${A}/notes.txt`, 'text', { contentType: 'text/plain' });
      assert.equal(r.error.status, 415);
      r = await avatars.upload(`${A}/big.png`, randomBytes((1 << 20) + 1), { contentType: 'image/png' });
      assert.equal(r.error.status, 413);
      r = await service.storage.from('docs').upload('over-server-limit.bin', randomBytes((8 << 20) + 1));
      assert.equal(r.error.status, 413, 'the server-wide limit');
      // Public reads need no policy, writes do: anon may not upload.
      r = await anon.storage.from('avatars').upload('anon.png', png, { contentType: 'image/png' });
      assert.equal(r.error.status, 403);
    });

    test('signed URLs: download, many, expiry, tampering, moved object, signed upload', async () => {
      const docs = alice.storage.from('docs');
      assert.equal((await docs.upload(`${A}/signed.txt`, 'for your eyes')).error, null);
      let s = await docs.createSignedUrl(`${A}/signed.txt`, 60);
      assert.equal(s.error, null, s.error?.message);
      let res = await fetch(s.data.signedUrl);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'for your eyes');
      s = await docs.createSignedUrl(`${A}/signed.txt`, 60, { download: 'x.txt' });
      res = await fetch(s.data.signedUrl);
      assert.match(res.headers.get('content-disposition'), /filename="x.txt"/);
      const many = await docs.createSignedUrls([`${A}/signed.txt`, `${B}/nope.txt`], 60);
      assert.equal(many.data.length, 2);
      assert.ok(many.data[0].signedUrl && many.data[1].error && !many.data[1].signedUrl);
      // Tampered: another path under the same token, or a changed token.
      const good = (await docs.createSignedUrl(`${A}/signed.txt`, 60)).data.signedUrl;
      res = await fetch(good.replace('signed.txt', 'hello.txt'));
      assert.equal(res.status, 400);
      res = await fetch(good.slice(0, -3) + (good.endsWith('AAA') ? 'BBB' : 'AAA'));
      assert.equal(res.status, 400);
      // Bob may not sign what he cannot read; a too long expiry is refused.
      assert.equal((await bob.storage.from('docs').createSignedUrl(`${A}/signed.txt`, 60)).error.status, 404);
      assert.equal((await docs.createSignedUrl(`${A}/signed.txt`, 10 ** 9)).error.status, 400);
      const short = (await docs.createSignedUrl(`${A}/signed.txt`, 1)).data.signedUrl;
      await sleep(2100);
      res = await fetch(short);
      assert.equal(res.status, 400);
      assert.match((await res.json()).message, /expired/);
      // Moved: the URL no longer finds it.
      assert.equal((await docs.move(`${A}/signed.txt`, `${A}/moved.txt`)).error, null);
      res = await fetch(good);
      assert.equal(res.status, 404);

      const up = await docs.createSignedUploadUrl(`${A}/via-url.txt`);
      assert.equal(up.error, null, up.error?.message);
      const done = await anon.storage.from('docs').uploadToSignedUrl(`${A}/via-url.txt`, up.data.token, 'signed upload');
      assert.equal(done.error, null, done.error?.message);
      assert.equal(await (await docs.download(`${A}/via-url.txt`)).data.text(), 'signed upload');
      const row = await sql.query(`SELECT owner_id FROM storage.objects WHERE name = $1`, [`${A}/via-url.txt`]);
      assert.equal(row.rows[0].owner_id, A, 'the signer owns it');
      // Not for another path; not when the policies would refuse it.
      const other = await anon.storage.from('docs').uploadToSignedUrl(`${A}/other.txt`, up.data.token, 'x');
      assert.equal(other.error.status, 400);
      assert.equal((await bob.storage.from('docs').createSignedUploadUrl(`${A}/x.txt`)).error.status, 403);
    });

    test('row-level security: each user reaches only their own folder', async () => {
      const docsA = alice.storage.from('docs');
      const docsB = bob.storage.from('docs');
      assert.equal((await docsA.upload(`${A}/secret.txt`, 'alice only')).error, null);
      assert.equal((await docsB.upload(`${B}/secret.txt`, 'bob only')).error, null);
      assert.equal((await docsB.download(`${A}/secret.txt`)).error.status, 404);
      assert.deepEqual((await docsB.list(A)).data, []);
      const refused = await docsB.upload(`${A}/planted.txt`, 'x');
      assert.equal(refused.error.status, 403);
      assert.match(refused.error.message, /upload on docs \(.*planted\.txt, role authenticated\): no policy allows INSERT on storage\.objects/);
      assert.deepEqual((await docsB.remove([`${A}/secret.txt`])).data, []);
      assert.equal((await docsB.move(`${A}/secret.txt`, `${B}/stolen.txt`)).error.status, 404);
      assert.equal((await docsB.copy(`${A}/secret.txt`, `${B}/stolen.txt`)).error.status, 404);
      assert.equal(await (await docsA.download(`${A}/secret.txt`)).data.text(), 'alice only');
      assert.equal((await anon.storage.from('docs').download(`${A}/secret.txt`)).error.status, 404);
      // The service role bypasses policies, as for tables; the rows are plain SQL.
      assert.equal(await (await service.storage.from('docs').download(`${B}/secret.txt`)).data.text(), 'bob only');
      const owners = await sql.query(`SELECT owner_id, count(*)::int AS n FROM storage.objects WHERE bucket_id = 'docs' AND name LIKE '%/secret.txt' GROUP BY owner_id ORDER BY owner_id`);
      assert.deepEqual(owners.rows, [{ owner_id: A, n: 1 }, { owner_id: B, n: 1 }]);
    });
  });
}

storageSuite('local', 'local');
storageSuite('s3', 's3');
