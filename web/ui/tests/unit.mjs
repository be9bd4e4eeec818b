// Unit tests of the page's pure money code (no browser, no network): every case of the shared
// vectors in ../../protocol/vectors (signed events, lock keys, lock secrets, fees, splits, lock
// face values, remaining amounts, settlement times; the Rust suite runs the same files) against
// src/nostr.ts, src/cashu.ts and src/rules.ts, bundled with esbuild and run in node; the audit
// vectors against an implementation of protocol §12 written here from the spec alone; and the
// refund witness. Prints `ok unit`.
import { build } from 'esbuild';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const out = await build({
  stdin: { contents: "export * as cashu from './src/cashu.ts'; export * as rules from './src/rules.ts'; export * as nostr from './src/nostr.ts'; export * as value from './src/value.ts';", resolveDir: process.cwd(), loader: 'ts' },
  bundle: true,
  format: 'esm',
  platform: 'node',
  write: false,
  logLevel: 'warning',
});
const file = join(mkdtempSync(join(tmpdir(), 'ehash-unit-')), 'unit.mjs');
writeFileSync(file, out.outputFiles[0].text);
const { cashu: c, rules, nostr, value } = await import(pathToFileURL(file).href);
const { finalizeEvent, verifyEvent } = await import('nostr-tools/pure');
const { hexToBytes, bytesToHex, concatBytes, utf8ToBytes } = await import('@noble/hashes/utils.js');
const { sha256 } = await import('@noble/hashes/sha2.js');

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

// signed events: what the page reads (38180, 38191, 4190) and builds (38190)
const events = vectors('events');
const read = {
  38180: (ev, r) => {
    const e = nostr.checkEpoch(ev, events.keys.pool.pubkey);
    if (!e.ok) throw new Error(e.checks.filter((x) => !x.ok).map((x) => `${x.name}: ${x.detail}`).join('; '));
    if (r === undefined) return;
    const k = r.keyset;
    const want = { keysetId: k.id, unit: k.unit, epoch: r.epoch, state: r.state, start: r.start, end: r.end ?? undefined, issued: r.issued ?? undefined, shares: r.shares ?? undefined, reason: r.reason ?? undefined, block: r.block_hash ?? undefined, logRoot: r.log_root ?? undefined, mint: r.mint_url, keys: k.keys, fee: k.input_fee_ppk };
    const got = Object.fromEntries(Object.keys(want).map((f) => [f, e[f]]));
    assert.deepEqual(got, want);
  },
  38191: (ev, r) => {
    if (!verifyEvent(ev)) throw new Error('the id or signature does not verify');
    const t = nostr.parseTrade(ev);
    if (r === undefined) return;
    const [seller, buyer] = r.maker_side === 'sell' ? [r.maker, r.taker] : [r.taker, r.maker];
    const want = { id: r.id, market: r.market, unit: r.unit, mint: r.mint_url, satMint: r.sat_mint, amount: r.amount, sats: r.sats, price: r.price.sats_per_lot, lot: r.price.lot, state: r.state, seller: seller.pubkey, buyer: buyer.pubkey, makerAddress: `38190:${r.maker.pubkey}:${r.maker.d}`, takerAddress: `38190:${r.taker.pubkey}:${r.taker.d}`, sellerLockBy: r.times.seller_lock_by, buyerLockBy: r.times.buyer_lock_by, ehashLocktime: r.times.ehash_locktime, satsLocktime: r.times.sats_locktime, hash: r.hash ?? undefined, preimage: r.preimage ?? undefined, reason: r.reason ?? undefined, blame: r.blame ?? undefined };
    const got = Object.fromEntries(Object.keys(want).map((f) => [f, t[f]]));
    assert.deepEqual(got, want);
  },
  4190: (ev, r, v) => {
    const me = nostr.offerKey(hexToBytes(events.keys[v.recipient].secret));
    const m = nostr.readMessage(ev, me);
    if (r !== undefined) assert.deepEqual(m, r);
  },
  38190: (ev, r, v) => {
    // built from the same terms with the same key and date, the page's offer is the same event
    const key = Object.values(events.keys).find((k) => k.pubkey === ev.pubkey);
    const terms = { d: r.id, side: r.side, status: r.status, market: r.market, unit: r.unit, mint: r.mint_url, pool: r.pool, satMints: r.sat_mints, amount: r.amount, min: r.min, price: r.price.sats_per_lot, lot: r.price.lot, exchange: r.exchange, expiration: r.expiration };
    const built = finalizeEvent({ ...nostr.offerTemplate(terms, ev.created_at), content: r.note }, hexToBytes(key.secret));
    assert.equal(built.id, ev.id, `${v.name}: built ${JSON.stringify(built.tags)}`);
    assert.equal(`38190:${built.pubkey}:${terms.d}`, r.address);
  },
};
let eventCases = 0;
for (const v of events.cases) {
  const f = read[v.event.kind];
  if (!f || (v.event.kind === 38190 && !v.valid)) continue; // the page reads no offers, nor mint announcements
  eventCases++;
  const r = attempt(() => f(structuredClone(v.event), v.valid ? v.reads_as : undefined, v));
  if (v.valid && r.err) wrong.push(`events ${v.name}: ${r.err.message}`);
  if (!v.valid && !r.err) wrong.push(`events ${v.name}: accepted, the vector says refused for ${v.refused_for}`);
}
assert.ok(eventCases >= 20, `${eventCases} event vectors run`);
for (const v of vectors('identifiers').lock_keys) if (nostr.lockKey(v.nostr_pubkey) !== v.lock_key) wrong.push(`identifiers.lock_keys ${v.nostr_pubkey}`);

// redemptions (the cases a JavaScript number holds exactly)
for (const v of vectors('work').redemptions) {
  if (![v.amount, v.payout, v.issued, v.sats].every(Number.isSafeInteger)) continue;
  if (value.redeemSats(v.amount, v.payout, v.issued) !== v.sats) wrong.push(`work.redemptions ${JSON.stringify(v)}`);
}

// the audit commitment (protocol §12), implemented here from the spec's words
{
  const a = vectors('audit');
  const be = (n, bytes) => {
    const out = new Uint8Array(bytes);
    let x = BigInt.asUintN(bytes * 8, BigInt(n));
    for (let i = bytes - 1; i >= 0; i--, x >>= 8n) out[i] = Number(x & 0xffn);
    return out;
  };
  const leaf = (s) => ({ hash: bytesToHex(sha256(concatBytes(utf8ToBytes('ehash/log/leaf'), hexToBytes(s.header), be(s.difficulty_exp, 4), be(s.amount, 8)))), sum: s.amount });
  const node = (l, r) => ({ hash: bytesToHex(sha256(concatBytes(utf8ToBytes('ehash/log/node'), hexToBytes(l.hash), be(l.sum, 8), hexToBytes(r.hash), be(r.sum, 8)))), sum: l.sum + r.sum });
  const root = (shares) => {
    if (shares.length === 0) return { hash: bytesToHex(sha256(utf8ToBytes('ehash/log/empty'))), sum: 0 };
    let level = shares.map(leaf);
    while (level.length > 1) level = Array.from({ length: Math.ceil(level.length / 2) }, (_, i) => (level[2 * i + 1] ? node(level[2 * i], level[2 * i + 1]) : level[2 * i]));
    return level[0];
  };
  const shareId = (s) => bytesToHex(sha256(sha256(hexToBytes(s.header))).reverse());
  const diff1 = 0xffffn << 208n;
  const check = (shares) => {
    let last = '';
    for (const [i, s] of shares.entries()) {
      const id = shareId(s);
      const target = s.difficulty_exp >= 0 ? diff1 >> BigInt(s.difficulty_exp) : diff1 << BigInt(-s.difficulty_exp);
      if (BigInt(`0x${id}`) > target) return ['not_work', i];
      const e = 32 + s.difficulty_exp - a.unit_size;
      if (e < 0 || s.amount !== 2 ** e) return ['amount', i];
      if (id <= last) return ['order', i];
      last = id;
    }
    return null;
  };
  const proofRoot = (p) => {
    let n = leaf(p.share);
    let [i, width, k] = [p.index, p.count, 0];
    while (width > 1) {
      if ((i ^ 1) < width) n = i % 2 === 0 ? node(n, p.siblings[k++]) : node(p.siblings[k++], n);
      i = Math.floor(i / 2);
      width = Math.ceil(width / 2);
    }
    return k === p.siblings.length ? n : null;
  };
  if (check(a.log) !== null) wrong.push(`audit: the log does not check: ${check(a.log)}`);
  a.log.forEach((s, i) => {
    if (shareId(s) !== a.leaves[i].id || JSON.stringify(leaf(s)) !== JSON.stringify(a.leaves[i].leaf)) wrong.push(`audit: share ${i}`);
  });
  if (JSON.stringify(root(a.log)) !== JSON.stringify(a.root)) wrong.push(`audit: root ${JSON.stringify(root(a.log))}`);
  if (JSON.stringify(root([])) !== JSON.stringify(a.empty_root)) wrong.push('audit: empty root');
  for (const p of a.proofs) if (JSON.stringify(proofRoot(p)) !== JSON.stringify(a.root)) wrong.push(`audit: the proof of share ${p.index}`);
  for (const b of a.bad_logs) if (JSON.stringify(check(b.shares)) !== JSON.stringify([b.error, b.index])) wrong.push(`audit ${b.name}: ${check(b.shares)}`);
}

assert.deepEqual(wrong, [], `${wrong.length} vectors disagree:\n${wrong.join('\n')}`);

// what a lot is worth, and the warnings before a far-off order or a close expiry
{
  const est = { value: 300, value_basis: 'estimate', lot: 64 };
  const paid = { value: 1000, value_basis: 'redeemable', lot: 64 };
  assert.equal(value.worth(128, paid), 2000);
  assert.equal(value.worth(100, est), 468, 'floored');
  assert.equal(value.worth(64, { value: null, value_basis: null, lot: 64 }), null);
  assert.match(value.lotValue(est).text, /≈ 300 sat per lot, estimated from the pool's hashprice/);
  assert.match(value.priceWarning('sell', 850, paid), /15 % below its value/);
  assert.equal(value.priceWarning('sell', 950, paid), null, 'within 10 % of a known value');
  assert.equal(value.priceWarning('sell', 5000, paid), null, 'selling high is the seller’s business');
  assert.match(value.priceWarning('buy', 1200, paid), /20 % above its value/);
  assert.equal(value.priceWarning('buy', 400, est), null, 'an estimate is loose: 33 % above is not warned');
  assert.match(value.priceWarning('sell', 100, est), /66 % below/);
  assert.equal(value.priceWarning('sell', 1, { value: null, value_basis: null, lot: 64 }), null, 'nothing known, nothing warned');
  const at = 1_800_000_000;
  assert.match(value.expiryWarning({ state: 'redeemable', expires: at + 3600, epoch: 6 }, at), /Epoch 6 stops redeeming in 60 min/);
  assert.equal(value.expiryWarning({ state: 'redeemable', expires: at + 30 * 86_400, epoch: 6 }, at), null);
  assert.equal(value.expiryWarning({ state: 'closed', expires: null, epoch: 6 }, at), null);
}

// a refund witness has an empty preimage, or 32 zero bytes for mints that want one
const sk = new Uint8Array(32).fill(7);
const lock = [{ id: '00aa', amount: 8, secret: locks.cases[0].secret, C: '02' + '22'.repeat(32), mint: 'http://m', unit: 'sat' }];
assert.equal(JSON.parse(c.refundWitness(lock, sk)[0].witness).preimage, '');
assert.equal(JSON.parse(c.refundWitness(lock, sk, true)[0].witness).preimage, '00'.repeat(32));
assert.equal(JSON.parse(c.refundWitness(lock, sk, true)[0].witness).signatures.length, 1);

// a mint that accepts the connection and never answers: the page's call ends after
// MINT_TIMEOUT_MS as "cannot be reached" (asked again later), never hanging the page
{
  const { createServer } = await import('node:net');
  const held = [];
  const tarpit = createServer((s) => held.push(s));
  await new Promise((r) => tarpit.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${tarpit.address().port}`;
  const t0 = Date.now();
  await assert.rejects(c.keysets(url), (e) => e instanceof c.Unreachable && /cannot be reached/.test(e.message));
  const took = Date.now() - t0;
  assert.ok(took >= c.MINT_TIMEOUT_MS - 1000 && took < c.MINT_TIMEOUT_MS + 10_000, `a silent mint was given up after ${took} ms, not ${c.MINT_TIMEOUT_MS}`);
  for (const s of held) s.destroy();
  tarpit.close();
}

console.log('ok unit');
