// Unit tests of what open offers reserve in the wallet (src/reserve.ts): an ask holds its
// remaining ehash, a bid its remaining sats at its first sat mint, a trade not yet locked its
// own side; sending or offering what they hold is refused, naming the offers. Bundles the module
// with esbuild and runs it in node. Prints `ok reserve` on success.
import { build } from 'esbuild';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const out = await build({ entryPoints: ['src/reserve.ts'], bundle: true, format: 'esm', platform: 'node', write: false, logLevel: 'warning' });
const file = join(mkdtempSync(join(tmpdir(), 'ehash-reserve-')), 'reserve.mjs');
writeFileSync(file, out.outputFiles[0].text);
const r = await import(pathToFileURL(file).href);

const POOL = 'http://pool';
const SATS = 'http://sats';
const UNIT = 'hash_ab_1';
const NOW = 1000;
const offer = (o) => ({ d: 'd0', side: 'sell', status: 'pending', market: 'm', unit: UNIT, mint: POOL, pool: 'p', satMints: [SATS, 'http://other'], amount: 16, min: 8, price: 100, lot: 8, exchange: 'x', expiration: NOW + 60, index: 0, pubkey: 'k', createdAt: NOW - 10, eventId: 'e', keyset: {}, ...o });
const trade = (t) => ({ id: 't0', role: 'sell', offerD: 'd0', mint: POOL, unit: UNIT, satMint: SATS, amount: 8, sats: 100, step: 'matched', createdAt: NOW - 5, ...t });

// an ask holds what is left of it; its trade that has not locked yet holds its own amount
{
  const hs = r.holds([offer({})], [trade({})], NOW);
  assert.deepEqual(
    hs.map((x) => [x.offer, x.trade, x.mint, x.unit, x.amount]),
    [
      ['d0', undefined, POOL, UNIT, 8],
      ['d0', 't0', POOL, UNIT, 8],
    ],
  );
  // once the trade locked, its proofs are out of the balance: only the offer's rest is held
  assert.deepEqual(r.holds([offer({})], [trade({ step: 'locked', myLock: {} })], NOW).map((x) => x.amount), [8]);
  // a trade that failed before locking gives its amount back to the offer
  assert.deepEqual(r.holds([offer({})], [trade({ step: 'failed' })], NOW).map((x) => x.amount), [16]);
}

// a bid holds sats at its first sat mint, at its price per lot
{
  const hs = r.holds([offer({ side: 'buy', amount: 24, price: 7 })], [], NOW);
  assert.deepEqual(hs.map((x) => [x.mint, x.unit, x.amount]), [[SATS, 'sat', 21]]);
  const t = r.holds([offer({ side: 'buy' })], [trade({ role: 'buy', sats: 100 })], NOW).find((x) => x.trade);
  assert.deepEqual([t.mint, t.unit, t.amount], [SATS, 'sat', 100]);
}

// cancelled, expired and filled offers hold nothing; a cancelled offer's unlocked trade still does
{
  assert.deepEqual(r.holds([offer({ status: 'canceled' })], [], NOW), []);
  assert.deepEqual(r.holds([offer({ expiration: NOW })], [], NOW), []);
  assert.deepEqual(r.holds([offer({ amount: 8 })], [trade({ step: 'settled', myLock: {} })], NOW), []);
  assert.deepEqual(r.holds([offer({ status: 'canceled' })], [trade({})], NOW).map((x) => x.trade), ['t0']);
  // an edited offer's amount is its total: what its earlier versions traded still counts
  // (protocol/vectors/remaining.json)
  assert.deepEqual(r.holds([offer({ createdAt: NOW })], [trade({ step: 'settled', createdAt: NOW - 5, myLock: {} })], NOW).map((x) => x.amount), [8]);
}

// spending reserved funds is refused, naming the amount, the offers and what to do
{
  const hs = r.holds([offer({}), offer({ d: 'd1', amount: 8, createdAt: NOW - 1 })], [], NOW);
  r.checkFree(hs, POOL, UNIT, 30, 6, 'a token'); // 30 held, 24 reserved: 6 free
  assert.throws(
    () => r.checkFree(hs, POOL, UNIT, 30, 7, 'a token of 7'),
    (e) => /^a token of 7 needs 7 hash_ab_1 at http:\/\/pool, but only 6 of the 30 held there is free: 24 is reserved by your open offers \(sell 16 ehash .*; sell 8 ehash .*\)\. Cancel or shrink the offer first\.$/.test(e.message),
  );
  // other mints and units are not held
  r.checkFree(hs, POOL, 'sat', 5, 5, 'x');
  r.checkFree(hs, SATS, UNIT, 5, 5, 'x');
  // an offer being edited does not hold against itself, its trades not yet locked still do
  const withTrade = r.holds([offer({})], [trade({})], NOW);
  r.checkFree(withTrade, POOL, UNIT, 24, 16, 'edit', 'd0');
  assert.throws(() => r.checkFree(withTrade, POOL, UNIT, 24, 17, 'edit', 'd0'), /only 16 of the 24/);
  // nothing reserved: the wallet's own "not enough" error speaks instead
  r.checkFree([], POOL, UNIT, 1, 5, 'x');
}

// what is left of an offer
assert.equal(r.remainingOf(offer({}), [trade({}), trade({ id: 't1', step: 'failed' }), trade({ id: 't2', offerD: 'other' })]), 8);
assert.equal(r.isOpen(offer({ amount: 8 }), [trade({})], NOW), false);

console.log('ok reserve');
