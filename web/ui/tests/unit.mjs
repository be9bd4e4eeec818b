// Unit tests of the page's pure money code (no browser, no network): every case of the shared
// vectors in ../../protocol/vectors (lock secrets, fees, splits, lock face values, remaining
// amounts, settlement times; the Rust suite runs the same files) against src/cashu.ts and
// src/rules.ts, bundled with esbuild and run in node; and the refund witness. Prints `ok unit`.
import { build } from 'esbuild';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const out = await build({
  stdin: { contents: "export * as cashu from './src/cashu.ts'; export * as rules from './src/rules.ts';", resolveDir: process.cwd(), loader: 'ts' },
  bundle: true,
  format: 'esm',
  platform: 'node',
  write: false,
  logLevel: 'warning',
});
const file = join(mkdtempSync(join(tmpdir(), 'ehash-unit-')), 'unit.mjs');
writeFileSync(file, out.outputFiles[0].text);
const { cashu: c, rules } = await import(pathToFileURL(file).href);

const vectors = (name) => JSON.parse(readFileSync(new URL(`../../../protocol/vectors/${name}.json`, import.meta.url), 'utf8'));
const wrong = [];
const attempt = (f) => {
  try {
    return { ok: f() };
  } catch (e) {
    return { err: e };
  }
};

// lock secrets: the strict reader, then the check against the trade's terms
const locks = vectors('lock_secrets');
assert.ok(locks.cases.length > 50);
for (const v of locks.cases) {
  const r = attempt(() => c.parseHtlc(v.secret));
  if (v.valid) {
    if (r.err) {
      wrong.push(`lock_secrets ${v.name}: refused (${r.err.message})`);
      continue;
    }
    const want = { data: v.read.data, locktime: v.read.locktime, pubkeys: v.read.pubkeys, refund: v.read.refund, nSigs: v.read.n_sigs, nSigsRefund: v.read.n_sigs_refund, sigflag: v.read.sigflag };
    if (JSON.stringify(r.ok) !== JSON.stringify(want)) wrong.push(`lock_secrets ${v.name}: read ${JSON.stringify(r.ok)}`);
    const t = attempt(() => c.checkConditions(r.ok, locks.terms));
    const field = t.err ? t.err.message.split(':')[0] : undefined;
    if (field !== v.terms_error) wrong.push(`lock_secrets ${v.name}: against the terms ${t.err?.message ?? 'ok'}, the vector says ${v.terms_error}`);
  } else if (!r.err) wrong.push(`lock_secrets ${v.name}: accepted, the vector says invalid`);
  else if (!(r.err instanceof c.LockError) || !r.err.message.startsWith('secret: ') || !r.err.message.includes(v.error_contains)) wrong.push(`lock_secrets ${v.name}: ${r.err.message} does not say ${JSON.stringify(v.error_contains)}`);
}

// fees, splits and lock face values
const fees = vectors('fees');
const keysOf = (amounts) => Object.fromEntries(amounts.map((a) => [String(a), '02' + '11'.repeat(32)]));
for (const v of fees.input_fee) if (c.feeForPpk(v.ppks.reduce((s, p) => s + p, 0)) !== v.fee) wrong.push(`fees.input_fee ${v.name}`);
for (const v of fees.split) {
  const r = attempt(() => c.split(v.amount, keysOf(v.keyset_amounts)));
  if (v.error ? !(r.err instanceof c.Refused) : JSON.stringify(r.ok) !== JSON.stringify(v.parts)) wrong.push(`fees.split ${v.name}: ${r.err?.message ?? JSON.stringify(r.ok)}`);
}
for (const v of fees.lock_face) {
  const r = attempt(() => c.lockFace(v.net, keysOf(v.keyset_amounts), v.ppk));
  if (v.error ? !(r.err instanceof c.Refused) : r.ok !== v.face) wrong.push(`fees.lock_face ${v.name}: ${r.err?.message ?? r.ok}`);
}

// what is left of an offer
for (const v of vectors('remaining').cases) {
  const got = rules.remaining(v.amount, v.trades.map((t) => ({ amount: t.amount, step: t.step, locked: t.locked })));
  if (got !== v.remaining) wrong.push(`remaining ${v.name}: ${got}, the vector says ${v.remaining}`);
}

// settlement times an agent accepts
for (const v of vectors('deadlines').acceptance) {
  const t = { sellerLockBy: v.times.seller_lock_by, buyerLockBy: v.times.buyer_lock_by, satsLocktime: v.times.sats_locktime, ehashLocktime: v.times.ehash_locktime };
  const why = rules.timesRefusal(t, v.role, v.now, v.min_margin_secs, v.max_lock_secs);
  if (v.accept ? why !== null : !why?.includes(v.error_contains)) wrong.push(`deadlines ${v.name}: ${why}`);
}

assert.deepEqual(wrong, [], `${wrong.length} vectors disagree:\n${wrong.join('\n')}`);

// a refund witness has an empty preimage, or 32 zero bytes for mints that want one
const sk = new Uint8Array(32).fill(7);
const lock = [{ id: '00aa', amount: 8, secret: locks.cases[0].secret, C: '02' + '22'.repeat(32), mint: 'http://m', unit: 'sat' }];
assert.equal(JSON.parse(c.refundWitness(lock, sk)[0].witness).preimage, '');
assert.equal(JSON.parse(c.refundWitness(lock, sk, true)[0].witness).preimage, '00'.repeat(32));
assert.equal(JSON.parse(c.refundWitness(lock, sk, true)[0].witness).signatures.length, 1);

console.log('ok unit');
