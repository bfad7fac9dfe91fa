// The OpenAPI document: what the server serves at /openapi.json is what `bkg-db openapi` prints
// and what docs/api.md holds, and it passes `redocly lint` (@redocly/cli from npm).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { serverBinary, startServer, stopServer } from './server.mjs';

const here = dirname(fileURLToPath(import.meta.url));
let server;

before(async () => {
  server = await startServer({ password: 'openapi-pass', prefix: 'bkg-openapi-' });
});

after(async () => {
  if (server) await stopServer(server);
});

test('the served document equals `bkg-db openapi` and docs/api.md', async () => {
  const res = await fetch(`http://127.0.0.1:${server.httpPort}/openapi.json`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /application\/json/);
  const served = await res.json();
  const printed = JSON.parse(execFileSync(serverBinary(), ['openapi'], { encoding: 'utf8' }));
  assert.deepEqual(served, printed);
  const md = readFileSync(join(here, '../../../docs/api.md'), 'utf8');
  const block = md.split('```json\n')[1]?.split('\n```')[0];
  assert.ok(block, 'docs/api.md holds the document in a json block');
  assert.deepEqual(JSON.parse(block), served);
  assert.equal(served.openapi, '3.1.0');
  for (const path of ['/rest/v1/{table}', '/query', '/migrate/apply', '/healthz']) {
    assert.ok(served.paths[path], `${path} is described`);
  }
});

test('redocly lint accepts the document', async () => {
  const res = await fetch(`http://127.0.0.1:${server.httpPort}/openapi.json`);
  const dir = mkdtempSync(join(tmpdir(), 'bkg-openapi-doc-'));
  try {
    const file = join(dir, 'openapi.json');
    writeFileSync(file, await res.text());
    const require = createRequire(import.meta.url);
    const cli = join(dirname(require.resolve('@redocly/cli/package.json')), 'bin', 'cli.js');
    const r = spawnSync(process.execPath, [cli, 'lint', file], { encoding: 'utf8' });
    assert.equal(r.status, 0, `redocly lint failed:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout + r.stderr, /valid/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
