// Unit tests of the page's pure money code (no browser, no network): the strict NUT-14 secret
// reader the buyer relies on before locking sats, lock face values and amount splits. Bundles
// src/cashu.ts with esbuild and runs it in node. Prints `ok unit` on success.
import { build } from 'esbuild';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const out = await build({ entryPoints: ['src/cashu.ts'], bundle: true, format: 'esm', platform: 'node', write: false, logLevel: 'warning' });
const file = join(mkdtempSync(join(tmpdir(), 'ehash-unit-')), 'cashu.mjs');
writeFileSync(file, out.outputFiles[0].text);
const c = await import(pathToFileURL(file).href);

const H = 'ab'.repeat(32);
const secret = (body, kind = 'HTLC') => JSON.stringify([kind, body]);
const good = { nonce: 'n1', data: H, tags: [['pubkeys', '02' + 'cd'.repeat(32)], ['locktime', '100'], ['refund', '02' + 'ef'.repeat(32)]] };

// a well-formed lock parses
const p = c.parseHtlc(secret(good));
assert.equal(p.data, H);
assert.deepEqual(p.tags.get('locktime'), ['100']);

const refused = (s, field) => assert.throws(() => c.parseHtlc(s), (e) => e instanceof c.LockError && e.message.startsWith('secret:') && e.message.includes(field), s);
// a mint takes the first copy of a repeated tag: a reader must not be shown another one
refused(secret({ ...good, tags: [['locktime', '1'], ...good.tags] }), 'twice');
// a mint reads anything it cannot parse as an unlocked secret
refused(secret({ ...good, nonce: 7 }), 'nonce');
refused(JSON.stringify(['HTLC', good, 'extra']), 'HTLC');
refused(secret({ ...good, extra: 1 }), 'unknown field');
refused(secret({ ...good, tags: [['pubkeys', 5]] }), 'strings');
refused(secret(good).replace('"nonce":"n1"', '"nonce":"n1","nonce":"n2"'), 'canonical');
refused(secret(good, 'P2PK'), 'HTLC');
refused(secret({ ...good, data: 'zz' }), 'data');
refused('not json', 'JSON');

// a refund witness has an empty preimage, or 32 zero bytes for mints that want one
const sk = new Uint8Array(32).fill(7);
const lock = [{ id: '00aa', amount: 8, secret: secret(good), C: '02' + '22'.repeat(32), mint: 'http://m', unit: 'sat' }];
assert.equal(JSON.parse(c.refundWitness(lock, sk)[0].witness).preimage, '');
assert.equal(JSON.parse(c.refundWitness(lock, sk, true)[0].witness).preimage, '00'.repeat(32));
assert.equal(JSON.parse(c.refundWitness(lock, sk, true)[0].witness).signatures.length, 1);

// the lock carries the receiver's redemption fee on top of the agreed amount
const keys = Object.fromEntries([1, 2, 4, 8, 16, 32, 64, 128].map((a) => [String(a), '02' + '11'.repeat(32)]));
assert.deepEqual(c.split(13, keys), [1, 4, 8]);
assert.equal(c.lockFace(100, keys, 0), 100);
// 100 + ceil(n × 400 / 1000) where n is the number of proofs of the face value itself
const face = c.lockFace(100, keys, 400);
assert.equal(face, 100 + Math.ceil((c.split(face, keys).length * 400) / 1000));
assert.throws(() => c.split(3, { 2: 'x' }), /cannot be made/);

console.log('ok unit');
