// The browser wallet: balances per mint and unit, sats in by Lightning (a mint quote) or by
// pasting a token, tokens out, every operation durable (see cashu.ts), the wallet seed that
// derives offer keys, and the NIP-60 backup of the proofs to the relays.
import { HDKey } from '@scure/bip32';
import { generateMnemonic, mnemonicToSeedSync, validateMnemonic } from '@scure/bip39';
import { privateKeyFromSeedWords } from 'nostr-tools/nip06';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import { hasValidDleq } from '@cashu/cashu-ts';
import * as cashu from './cashu';
import * as store from './db';
import * as nostr from './nostr';
import * as reserve from './reserve';
import * as trust from './trust';
import * as value from './value';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { bytesToHex, now, randomId, sha256Hex, sleep } from './util';

/** What changed, for the views to redraw. */
const listeners = new Set<() => void>();
export function onChange(f: () => void): () => void {
  listeners.add(f);
  return () => listeners.delete(f);
}
export function changed(): void {
  for (const f of listeners) f();
  scheduleBackup();
}

// ---------------------------------------------------------------- seed and offer keys

/** The wallet's recovery words (made on first use). */
export async function words(): Promise<string> {
  let w = await store.kvGet<string>('seed_words');
  if (!w) {
    w = generateMnemonic(wordlist, 128);
    await store.kvSet('seed_words', w);
  }
  return w;
}

/**
 * A browser without an identity gets the one its recovery words make (NIP-06, `m/44'/1237'/0'/0/0`),
 * so the words alone restore everything: the balance (the NIP-60 backup is that key's) and the
 * offers and trades (their keys come from the same seed).
 */
export async function ensureIdentity(): Promise<void> {
  if ((await store.kvGet<string>('identity_sk')) || (await store.kvGet<string>('identity_mode'))) return;
  const sk = bytesToHex(privateKeyFromSeedWords(await words()));
  await store.write((b) => {
    b.put('kv', { k: 'identity_sk', v: sk });
    b.put('kv', { k: 'identity_from_words', v: true });
  });
}

/** Whether the identity in use is the one the recovery words make (then the words are the whole backup). */
export async function identityFromWords(): Promise<boolean> {
  return (await store.kvGet<boolean>('identity_from_words')) === true;
}

/**
 * Make this browser the wallet of `phrase` (and `nsec`, when its identity is not the words' own):
 * refused if this browser holds anything. The page reloads next and, with the identity in place,
 * restores the balance from the relays (see `restorePending`).
 */
export async function restoreWallet(phrase: string, nsec?: string): Promise<void> {
  const w = phrase.trim().toLowerCase().split(/\s+/).join(' ');
  if (!validateMnemonic(w, wordlist)) throw new Error('recovery words: these are not 12 or 24 words of the BIP-39 English list, or one is mistyped');
  const [proofs, offers, trades] = await Promise.all([store.all('proofs'), store.all('offers'), store.all('trades')]);
  if (proofs.length || offers.length || trades.length) throw new Error('this browser holds a wallet already, which restoring would replace: restore in a fresh browser profile or a private window');
  const sk = nsec?.trim() ? nostr.parseNsec(nsec) : privateKeyFromSeedWords(w);
  await store.write((b) => {
    b.put('kv', { k: 'seed_words', v: w });
    b.put('kv', { k: 'identity_sk', v: bytesToHex(sk) });
    b.put('kv', { k: 'identity_mode', v: 'local' });
    b.put('kv', { k: 'identity_from_words', v: !nsec?.trim() });
    b.put('kv', { k: 'offer_index', v: 0 });
    b.put('kv', { k: 'nip60', v: {} });
    b.put('kv', { k: 'restore_pending', v: true });
  });
  seedCache = null;
}

/** After `restoreWallet` and the reload: fetch the balance from the relays once. Returns what came back, or null when nothing was pending. */
export async function restorePending(): Promise<number | null> {
  if (!(await store.kvGet<boolean>('restore_pending'))) return null;
  const n = await restoreFromRelays();
  await store.kvSet('offer_index', await offerKeysUsed(backupRelays));
  await store.kvSet('restore_pending', false);
  return n;
}

/** Offer keys looked at past the last one used before a restore finds none. */
const OFFER_KEY_GAP = 20;

/**
 * How many offer keys the restored wallet used: the number after the last key with an event on
 * the relays (an offer, a settlement message or a deletion) (scanned in runs of `OFFER_KEY_GAP`; a run without any ends it). A restored wallet's
 * next offer takes the key after it, never one an earlier offer used.
 */
export async function offerKeysUsed(relays: string[]): Promise<number> {
  let used = 0;
  for (let from = 0; from < 10_000; from += OFFER_KEY_GAP) {
    const keys = await Promise.all(Array.from({ length: OFFER_KEY_GAP }, (_, i) => offerKeyAt(from + i)));
    const index = new Map(keys.map((k, i) => [k.pubkey, from + i]));
    const events = await nostr.pool.querySync(relays, { kinds: [nostr.KIND_OFFER, nostr.KIND_SETTLEMENT, 5], authors: [...index.keys()] }, { maxWait: 8000 });
    const found = events.map((e) => index.get(e.pubkey) ?? -1).filter((i) => i >= 0);
    if (!found.length) break;
    used = Math.max(used, ...found.map((i) => i + 1));
  }
  return used;
}

let seedCache: Uint8Array | null = null;
async function seed(): Promise<Uint8Array> {
  if (!seedCache) seedCache = mnemonicToSeedSync(await words());
  return seedCache;
}

/** Offer key number `i`: BIP-32 `m/129373'/11'/i'` of the wallet seed (as the Rust agent). */
export async function offerKeyAt(i: number): Promise<nostr.OfferKey> {
  const k = HDKey.fromMasterSeed(await seed()).derive(`m/129373'/11'/${i}'`);
  if (!k.privateKey) throw new Error('offer key derivation failed');
  return nostr.offerKey(k.privateKey);
}

// ---------------------------------------------------------------- balances

/** What the wallet holds of one unit at one mint. */
export interface Balance {
  mint: string;
  unit: string;
  /** Held and spendable: `free` plus what open offers reserve. */
  amount: number;
  /** Of `amount`, what open offers and their trades not yet locked hold back. */
  offers: number;
  /** Of `amount`, what nothing holds back: what a token can be sent from. */
  free: number;
  /** In operations under way (a lock, a send) and not in `amount`. */
  reserved: number;
}

export async function balances(): Promise<Balance[]> {
  const all = await store.all<cashu.StoredProof>('proofs');
  const holds = await reserve.current();
  const m = new Map<string, Balance>();
  for (const p of all) {
    if (cashu.isHtlc(p.secret)) continue;
    const k = `${p.mint} ${p.unit}`;
    const b = m.get(k) ?? { mint: p.mint, unit: p.unit, amount: 0, offers: 0, free: 0, reserved: 0 };
    if (p.state === 'unspent') b.amount += p.amount;
    else b.reserved += p.amount;
    m.set(k, b);
  }
  for (const b of m.values()) {
    b.offers = Math.min(b.amount, reserve.holdsAt(holds, b.mint, b.unit).reduce((s, x) => s + x.amount, 0));
    b.free = b.amount - b.offers;
  }
  return [...m.values()].sort((a, b) => (a.unit === 'sat' ? -1 : b.unit === 'sat' ? 1 : a.unit.localeCompare(b.unit)));
}

export async function balance(mint: string, unit: string): Promise<number> {
  return (await cashu.unspent(mint, unit)).reduce((s, p) => s + p.amount, 0);
}

// ---------------------------------------------------------------- history

export interface HistoryItem {
  id: string;
  at: number;
  kind: 'deposit' | 'receive' | 'send' | 'trade' | 'redeem' | 'withdraw';
  mint: string;
  unit: string;
  amount: number;
  state: string;
  quote?: string;
  request?: string;
  token?: string;
  op?: string;
  note?: string;
  /** A redemption: the sats its ehash pays, and the secret key (hex) its sat quote is locked to (NUT-20). */
  sats?: number;
  quoteKey?: string;
}

export async function history(): Promise<HistoryItem[]> {
  return (await store.all<HistoryItem>('history')).sort((a, b) => b.at - a.at);
}

// ---------------------------------------------------------------- operations owned by the wallet

/** The wallet's operations running in this page, by op id. */
const running = new Map<string, Promise<cashu.StoredProof[]>>();

/**
 * Run a wallet-owned operation to its end; the history item `hid` follows it (`done` after it, or
 * `melted` after a redemption's melt, whose sats are minted next). An operation already running
 * (the user's own call, and the periodic retry finding it in the store) is joined, never sent
 * twice at once.
 */
function runOp(op: cashu.Op, hid: string): Promise<cashu.StoredProof[]> {
  const already = running.get(op.id);
  if (already) return already;
  const run = runOpOnce(op, hid).finally(() => running.delete(op.id));
  running.set(op.id, run);
  return run;
}

async function runOpOnce(op: cashu.Op, hid: string): Promise<cashu.StoredProof[]> {
  try {
    const proofs = await cashu.execute(op);
    let given: cashu.StoredProof[] = [];
    const h = await store.get<HistoryItem>('history', hid);
    await store.write((b) => {
      given = cashu.finishOp(b, op, proofs);
      const state = h?.kind === 'redeem' && op.kind === 'melt' ? 'melted' : 'done';
      const paid = h?.kind === 'withdraw' && op.kind === 'melt' ? op.inputs.reduce((s, p) => s + p.amount, 0) - proofs.reduce((s, p) => s + p.amount, 0) : undefined;
      if (h) b.put('history', { ...h, state, op: undefined, token: h.kind === 'send' ? cashu.encodeToken(op.mint, op.unit, given) : h.token, ...(paid !== undefined ? { amount: paid } : {}) });
    });
    changed();
    return given;
  } catch (e) {
    if (e instanceof cashu.Refused) {
      const h = await store.get<HistoryItem>('history', hid);
      // the sats of a paid redemption stay owed: a refused mint of them is tried again later
      const owed = h?.kind === 'redeem' && op.kind === 'mint';
      await store.write((b) => {
        cashu.releaseOp(b, op, e.spent);
        if (h) b.put('history', { ...h, state: owed ? 'melted' : 'failed', note: owed ? `minting the sats: ${e.message}; tried again while this page is open, and on the next visit` : e.message, op: undefined });
      });
      changed();
    }
    throw e;
  }
}

let resuming: Promise<void> | null = null;

/** Finish what a reload interrupted, or a mint that could not be reached left unresolved (a second call while one runs joins it); deposits younger than `depositAge` seconds are watched again. */
export function resume(depositAge = 7 * 86_400): Promise<void> {
  resuming ??= resumeOnce(depositAge).finally(() => (resuming = null));
  return resuming;
}

/** Every `ms`, try again what is unresolved ({@link resume}): a payment, redemption or deposit whose mint did not answer finishes once it does, without a reload. */
export function retryEvery(ms: number): void {
  // an invoice nobody paid within the hour is looked at again on the next visit only
  setInterval(() => void resume(3600), ms);
}

async function resumeOnce(depositAge: number): Promise<void> {
  const ops = (await store.all<cashu.Op>('ops')).filter((o) => o.owner.startsWith('wallet:'));
  for (const op of ops) {
    try {
      await runOp(op, op.owner.slice('wallet:'.length));
    } catch (e) {
      console.warn('resuming a wallet operation', e);
    }
  }
  // every deposit not yet minted: the quote's state at the mint says what to do
  for (const h of await history()) {
    if (h.kind === 'deposit' && (h.state === 'unpaid' || h.state === 'minting') && !h.op && h.quote && now() - h.at < depositAge) void waitDeposit(h);
    // a redemption melted but whose sats were not minted yet
    if (h.kind === 'redeem' && h.state === 'melted' && !h.op) void mintRedeemed(h).catch((e) => console.warn('redemption', e));
  }
}

// ---------------------------------------------------------------- sats in by Lightning

/** Ask the sat mint for an invoice of `amount` sats. */
export async function deposit(mint: string, amount: number): Promise<HistoryItem> {
  if (!Number.isSafeInteger(amount) || amount <= 0) throw new Error('the amount must be a whole number of sats above 0');
  await trust.need(mint, 'where the deposit would be');
  let q;
  try {
    q = await cashu.mintOf(mint).createMintQuoteBolt11({ amount, unit: 'sat' } as never);
  } catch (e) {
    throw new Error(`the sat mint ${mint} refused the invoice: ${(e as Error).message}`);
  }
  const h: HistoryItem = { id: randomId(), at: now(), kind: 'deposit', mint: cashu.normalizeUrl(mint), unit: 'sat', amount, state: 'unpaid', quote: q.quote, request: q.request };
  await store.write((b) => b.put('history', h));
  changed();
  void waitDeposit(h);
  return h;
}

const waiting = new Set<string>();
/** Poll the quote until paid, then mint (durably). */
async function waitDeposit(h: HistoryItem): Promise<void> {
  if (waiting.has(h.id)) return;
  waiting.add(h.id);
  try {
    let paid = false;
    for (let i = 0; i < 1800 && !paid; i++) {
      let q;
      try {
        q = await cashu.mintOf(h.mint).checkMintQuoteBolt11(h.quote!);
      } catch {
        await sleep(2000);
        continue;
      }
      if (q.state === 'ISSUED') {
        // issued without an operation of ours: not ours to mint again
        await store.write((b) => b.put('history', { ...h, state: 'failed', note: 'the mint says this invoice was already minted' }));
        return;
      }
      paid = q.state === 'PAID';
      if (!paid) await sleep(1000);
    }
    // still unpaid: it stays `unpaid` and is looked at again by the next retry round or visit
    if (!paid) return;
    const ks = await cashu.activeKeyset(h.mint, 'sat');
    const op = cashu.newOp({ kind: 'mint', mint: h.mint, unit: 'sat', keysetId: ks.id, inputs: [], quote: h.quote, outputs: cashu.randomOutputs(h.amount, ks), give: 0, purpose: 'deposit', owner: `wallet:${h.id}` });
    await cashu.saveOp(op, (b) => b.put('history', { ...h, state: 'minting', op: op.id }));
    await runOp(op, h.id);
  } catch (e) {
    console.warn('deposit', e);
  } finally {
    waiting.delete(h.id);
  }
}

// ---------------------------------------------------------------- ehash out: redeem (NUT-05 `ehash-redeem`)

/** What a redemption needs to know of its epoch (from the exchange's market summary). */
export interface Redeemable {
  mint_url: string;
  unit: string;
  epoch: number;
  payout?: number | null;
  issued?: number | null;
}

/** A redemption as the pool's mint quoted it, before the user agrees (nothing is spent yet). */
export interface RedeemTerms {
  mint: string;
  unit: string;
  epoch: number;
  /** The ehash melted. */
  amount: number;
  /** The sats it pays, by the epoch's payout (`value.redeemSats`). */
  sats: number;
  /** The sat quote (NUT-04 `ehash-redeem`) the melt pays, and the key that locks it (NUT-20). */
  quote: string;
  quoteKey: string;
  /** The melt quote (NUT-05 `ehash-redeem`). */
  meltQuote: string;
}

/**
 * Ask the pool's mint to redeem `amount` ehash of a redeemable epoch, as `ehash wallet redeem`
 * does: a sat quote (NUT-04 `ehash-redeem`, locked to a fresh key, NUT-20) and a melt quote of
 * the ehash paying it (NUT-05 `ehash-redeem`), checked to be for exactly this amount, no fee.
 */
export async function redeemTerms(e: Redeemable, amount: number): Promise<RedeemTerms> {
  if (!Number.isSafeInteger(amount) || amount <= 0) throw new Error('the amount must be a whole number of ehash above 0');
  if (!e.payout || !e.issued) throw new Error(`epoch ${e.epoch} pays nothing yet: only redeemable epochs redeem`);
  const sats = value.redeemSats(amount, e.payout, e.issued);
  if (sats === 0) throw new Error(`${amount} ehash of epoch ${e.epoch} is dust (it redeems for 0 sats); redeem at least ${Math.ceil(e.issued / e.payout)}`);
  const mint = cashu.normalizeUrl(e.mint_url);
  const pool = cashu.mintOf(mint);
  const sk = secp256k1.utils.randomSecretKey();
  let q, mq;
  try {
    q = await pool.createMintQuote('ehash-redeem', { unit: 'sat', amount: sats, pubkey: bytesToHex(secp256k1.getPublicKey(sk, true)) });
    mq = await pool.createMeltQuote('ehash-redeem', { method: 'ehash-redeem', unit: e.unit, request: q.request, ehash_amount: amount });
  } catch (err) {
    throw new Error(`the pool's mint refused the redemption: ${(err as Error).message}`);
  }
  const fee = Number((mq as { fee_reserve?: number }).fee_reserve ?? 0);
  if (Number(mq.amount) !== amount || fee !== 0) throw new Error(`the pool's mint quoted ${mq.amount} ${e.unit} and a fee of ${fee} for redeeming ${amount}, not what was asked; nothing was redeemed`);
  return { mint, unit: e.unit, epoch: e.epoch, amount, sats, quote: q.quote, quoteKey: bytesToHex(sk), meltQuote: mq.quote };
}

/**
 * Redeem on quoted terms: the ehash melted (paying the sat quote), then the sats minted. Each
 * step is written before it is sent; a reload finishes it. Returns the sats.
 */
export async function redeem(t: RedeemTerms): Promise<number> {
  const { mint, unit, amount } = t;
  const { op, h } = await cashu.exclusive(async () => {
    if ((await history()).some((x) => x.kind === 'redeem' && x.quote === t.quote)) throw new Error('this redemption is under way or done already (see the history)');
    const { inputs, fee, total } = await cashu.select(mint, unit, amount);
    reserve.checkFree(await reserve.current(), mint, unit, await balance(mint, unit), amount + fee, `a redemption of ${amount} ${unit}`);
    const ks = await cashu.activeKeyset(mint, unit);
    const change = cashu.blankOutputs(total - fee - amount, ks);
    const h: HistoryItem = { id: randomId(), at: now(), kind: 'redeem', mint, unit, amount, state: 'redeeming', quote: t.quote, quoteKey: t.quoteKey, sats: t.sats, note: `for ${t.sats} sats` };
    const op = cashu.newOp({ kind: 'melt', method: 'ehash-redeem', mint, unit, keysetId: ks.id, inputs, quote: t.meltQuote, outputs: change, give: 0, purpose: 'redeem', owner: `wallet:${h.id}` });
    h.op = op.id;
    await cashu.saveOp(op, (b) => b.put('history', h));
    return { op, h };
  });
  try {
    await runOp(op, h.id);
  } catch (err) {
    if (err instanceof cashu.Refused) throw new Error(`the pool's mint refused the redemption: ${err.message}`);
    throw new Error(`${(err as Error).message}; the wallet will finish the redemption`);
  }
  return mintRedeemed({ ...h, state: 'melted', op: undefined });
}

const mintingRedeemed = new Set<string>();
/**
 * Mint the sats of a melted redemption: what its sat quote says is paid and not issued yet (the
 * pool's mint decides the amount, not this page). Returns the sats minted.
 */
async function mintRedeemed(h: HistoryItem): Promise<number> {
  if (mintingRedeemed.has(h.id)) throw new Error('the redemption\'s sats are being minted already');
  mintingRedeemed.add(h.id);
  try {
    let q;
    try {
      q = (await cashu.mintOf(h.mint).checkMintQuote('ehash-redeem', h.quote ?? '')) as { amount_paid?: number; amount_issued?: number };
    } catch (e) {
      throw new Error(`the pool's mint could not be asked about the redemption's sats (${(e as Error).message}); the wallet will ask again`);
    }
    const due = Number(q.amount_paid ?? 0) - Number(q.amount_issued ?? 0);
    if (due <= 0) {
      if (Number(q.amount_paid ?? 0) === 0) throw new Error('the pool\'s mint has not credited the redemption\'s sats yet; the wallet will ask again');
      await store.write((b) => b.put('history', { ...h, state: 'done', note: `${h.note ?? ''}; the mint says its sats were minted already` }));
      changed();
      return 0;
    }
    const ks = await cashu.activeKeyset(h.mint, 'sat');
    const op = cashu.newOp({ kind: 'mint', method: 'ehash-redeem', quoteKey: h.quoteKey, mint: h.mint, unit: 'sat', keysetId: ks.id, inputs: [], quote: h.quote, outputs: cashu.randomOutputs(due, ks), give: 0, purpose: 'redeemed', owner: `wallet:${h.id}` });
    await cashu.saveOp(op, (b) => b.put('history', { ...h, state: 'minting', sats: due, op: op.id }));
    await runOp(op, h.id);
    return due;
  } finally {
    mintingRedeemed.delete(h.id);
  }
}

// ---------------------------------------------------------------- sats out by Lightning (NUT-05 bolt11)

/** A withdrawal's terms, before the user agrees: the invoice's amount and the mint's fee reserve. */
export interface WithdrawQuote {
  mint: string;
  quote: string;
  amount: number;
  feeReserve: number;
}

/** Ask the sat mint what paying `invoice` costs (nothing is paid). */
export async function withdrawQuote(mint: string, invoice: string): Promise<WithdrawQuote> {
  const request = invoice.trim().replace(/^lightning:/i, '');
  if (!/^ln(bc|tb|tbs|bcrt|sb)[0-9a-z]+$/i.test(request)) throw new Error('that is not a Lightning invoice (it starts with lnbc…, lntb… or lnbcrt…)');
  await trust.need(mint, 'which would pay the invoice');
  let q;
  try {
    q = await cashu.mintOf(mint).createMeltQuoteBolt11({ request, unit: 'sat' } as never);
  } catch (e) {
    throw new Error(`the mint ${mint} will not pay this invoice: ${(e as Error).message}`);
  }
  return { mint: cashu.normalizeUrl(mint), quote: q.quote, amount: Number(q.amount), feeReserve: Number(q.fee_reserve) };
}

/** Pay a quoted invoice from the sat balance; what the fee reserve leaves comes back (NUT-08). Returns the sats spent. */
export async function withdraw(w: WithdrawQuote): Promise<number> {
  const need = w.amount + w.feeReserve;
  const { op, h } = await cashu.exclusive(async () => {
    // one payment per quote: a second one could only lose its inputs' fees, or worse
    if ((await history()).some((x) => x.kind === 'withdraw' && x.quote === w.quote)) throw new Error('this invoice is being paid or was paid already (see the history); ask for the fee again to pay another');
    const { inputs, fee, total } = await cashu.select(w.mint, 'sat', need);
    reserve.checkFree(await reserve.current(), w.mint, 'sat', await balance(w.mint, 'sat'), need + fee, `paying an invoice of ${w.amount} sats`);
    const ks = await cashu.activeKeyset(w.mint, 'sat');
    const change = cashu.blankOutputs(total - fee - w.amount, ks);
    const h: HistoryItem = { id: randomId(), at: now(), kind: 'withdraw', mint: w.mint, unit: 'sat', amount: need + fee, state: 'paying', quote: w.quote };
    const op = cashu.newOp({ kind: 'melt', method: 'bolt11', mint: w.mint, unit: 'sat', keysetId: ks.id, inputs, quote: w.quote, outputs: change, give: 0, purpose: 'withdraw', owner: `wallet:${h.id}` });
    h.op = op.id;
    await cashu.saveOp(op, (b) => b.put('history', h));
    return { op, h };
  });
  try {
    await runOp(op, h.id);
  } catch (err) {
    if (err instanceof cashu.Refused) throw new Error(`the mint did not pay the invoice: ${err.message}`);
    throw new Error(`${(err as Error).message}; the wallet will ask the mint again`);
  }
  return (await store.get<HistoryItem>('history', h.id))?.amount ?? need;
}

// ---------------------------------------------------------------- tokens

/** Receive a pasted token: every proof's DLEQ (when present) checked, swapped into new proofs. */
export async function receive(token: string): Promise<{ mint: string; unit: string; amount: number }> {
  // the mint a token names is asked nothing before the user trusts it
  await trust.need(cashu.tokenMint(token).mint, 'which issued the token you pasted');
  const t = await cashu.decodeToken(token);
  if (t.proofs.length === 0) throw new Error('the token holds no proofs');
  const ks = await cashu.activeKeyset(t.mint, t.unit).catch(async () => {
    // an epoch's keyset may be inactive (the epoch closed): receive into the proofs' own keyset
    const id = t.proofs[0].id;
    return { id, unit: t.unit, active: false, fee: 0, keys: await cashu.keysOf(t.mint, id) };
  });
  for (const p of t.proofs) {
    if (!p.dleq) continue;
    const keys = await cashu.keysOf(t.mint, p.id);
    if (!hasValidDleq(cashu.toCashu(p), { id: p.id, keys: keys as never })) throw new Error(`the token's proof of ${p.amount} has an invalid DLEQ proof: it was not signed by ${t.mint}`);
  }
  const known = new Set((await store.all<cashu.StoredProof>('proofs')).map((p) => p.secret));
  if (t.proofs.some((p) => known.has(p.secret))) throw new Error('this token is already in the wallet');
  const total = t.proofs.reduce((s, p) => s + p.amount, 0);
  const fee = await cashu.inputFee(t.mint, t.proofs);
  if (total <= fee) throw new Error(`the token (${total} ${t.unit}) does not cover the mint's fee of ${fee}`);
  const inputs = t.proofs.map((p) => ({ ...p, state: undefined as never }));
  const h: HistoryItem = { id: randomId(), at: now(), kind: 'receive', mint: t.mint, unit: t.unit, amount: total - fee, state: 'receiving' };
  const op = cashu.newOp({ kind: 'swap', mint: t.mint, unit: t.unit, keysetId: ks.id, inputs, outputs: cashu.randomOutputs(total - fee, ks), give: 0, purpose: 'receive', owner: `wallet:${h.id}` });
  h.op = op.id;
  await cashu.saveOp(op, (b) => b.put('history', h));
  try {
    await runOp(op, h.id);
  } catch (e) {
    if (e instanceof cashu.Refused) throw new Error(`the mint refused the token: ${e.message}${e.conflict ? ' (it was already spent)' : ''}`);
    throw new Error(`${(e as Error).message}; the wallet will try again`);
  }
  return { mint: t.mint, unit: t.unit, amount: total - fee };
}

/** Make a token of exactly `amount` (the receiver pays its own redemption fee). */
export async function send(mint: string, unit: string, amount: number): Promise<string> {
  if (!Number.isSafeInteger(amount) || amount <= 0) throw new Error('the amount must be a whole number above 0');
  const { op, h } = await cashu.exclusive(async () => {
    const { inputs, fee, total } = await cashu.select(mint, unit, amount);
    reserve.checkFree(await reserve.current(), cashu.normalizeUrl(mint), unit, await balance(mint, unit), amount + fee, `a token of ${amount} ${unit}`);
    const ks = await cashu.activeKeyset(mint, unit);
    const out = cashu.randomOutputs(amount, ks);
    const change = cashu.randomOutputs(total - fee - amount, ks);
    const h: HistoryItem = { id: randomId(), at: now(), kind: 'send', mint: cashu.normalizeUrl(mint), unit, amount, state: 'sending' };
    const op = cashu.newOp({ kind: 'swap', mint: cashu.normalizeUrl(mint), unit, keysetId: ks.id, inputs, outputs: [...out, ...change], give: out.length, purpose: 'send', owner: `wallet:${h.id}` });
    h.op = op.id;
    await cashu.saveOp(op, (b) => b.put('history', h));
    return { op, h };
  });
  const given = await runOp(op, h.id);
  return cashu.encodeToken(mint, unit, given);
}

// ---------------------------------------------------------------- NIP-60 backup

let identity: nostr.Identity | null = null;
let backupRelays: string[] = [];
let backupTimer: ReturnType<typeof setTimeout> | null = null;
let backupStatus = 'not backed up yet';
const statusListeners = new Set<(s: string) => void>();

export function backupState(): string {
  return backupStatus;
}
export function onBackupStatus(f: (s: string) => void): void {
  statusListeners.add(f);
}
function setStatus(s: string) {
  backupStatus = s;
  for (const f of statusListeners) f(s);
}

/** Back up to these relays as this identity from now on. */
export function configureBackup(id: nostr.Identity, relays: string[]): void {
  identity = id;
  backupRelays = relays;
  scheduleBackup();
}

function scheduleBackup() {
  if (!identity || backupRelays.length === 0) return;
  if (backupTimer) clearTimeout(backupTimer);
  backupTimer = setTimeout(() => {
    backupTimer = null;
    backup().catch((e) => {
      setStatus(`backup failed: ${(e as Error).message}; retrying`);
      setTimeout(scheduleBackup, 10_000);
    });
  }, 1500);
}

interface BackupEntry {
  digest: string;
  eventId: string;
}

/** Publish the wallet (17375) and one token event (7375) per mint and unit whose proofs changed. */
export async function backup(): Promise<void> {
  const id = identity;
  if (!id) return;
  const state = (await store.kvGet<Record<string, BackupEntry>>('nip60')) ?? {};
  const all = (await store.all<cashu.StoredProof>('proofs')).filter((p) => !cashu.isHtlc(p.secret));
  const groups = new Map<string, cashu.StoredProof[]>();
  for (const p of all) groups.set(`${p.mint} ${p.unit}`, [...(groups.get(`${p.mint} ${p.unit}`) ?? []), p]);
  for (const k of Object.keys(state)) if (k !== 'wallet' && !groups.has(k)) groups.set(k, []);
  if (all.length === 0 && Object.keys(state).length === 0) {
    setStatus('nothing to back up yet: the wallet is empty');
    return;
  }
  const mints = [...new Set(all.map((p) => p.mint))];
  const walletContent = JSON.stringify([['privkey', sha256Hex(`${await words()} ehash/nip60/p2pk`)], ...mints.map((m) => ['mint', m])]);
  const wd = sha256Hex(walletContent);
  if (state.wallet?.digest !== wd) {
    const ev = await id.sign({ kind: nostr.KIND_NIP60_WALLET, created_at: now(), tags: [], content: await id.encryptToSelf(walletContent) });
    await nostr.publish(backupRelays, ev, id.sign);
    state.wallet = { digest: wd, eventId: ev.id };
  }
  let n = 0;
  for (const [k, proofs] of groups) {
    const d = sha256Hex(proofs.map((p) => p.secret).sort().join(','));
    if (state[k]?.digest === d) continue;
    const [mint, unit] = k.split(' ');
    const old = state[k]?.eventId;
    const content = JSON.stringify({ mint, unit, proofs: proofs.map((p) => ({ id: p.id, amount: p.amount, secret: p.secret, C: p.C, ...(p.dleq ? { dleq: p.dleq } : {}) })), del: old ? [old] : [] });
    const ev = await id.sign({ kind: nostr.KIND_NIP60_TOKEN, created_at: now(), tags: [], content: await id.encryptToSelf(content) });
    await nostr.publish(backupRelays, ev, id.sign);
    if (old) {
      const del = await id.sign({ kind: 5, created_at: now(), tags: [['e', old], ['k', String(nostr.KIND_NIP60_TOKEN)]], content: 'replaced by a newer NIP-60 token event' });
      await nostr.publish(backupRelays, del, id.sign).catch(() => undefined);
    }
    state[k] = { digest: d, eventId: ev.id };
    n++;
    await store.kvSet('nip60', state);
  }
  await store.kvSet('nip60', state);
  setStatus(`backed up to ${backupRelays.length} relay(s) at ${new Date().toLocaleTimeString()}${n ? ` (${n} updated)` : ''}`);
}

/** Restore proofs from the relays' NIP-60 token events; keeps only those the mints call unspent. */
export async function restoreFromRelays(): Promise<number> {
  const id = identity;
  if (!id) throw new Error('no identity');
  const events = await new Promise<nostr.Event[]>((ok) => {
    const got: nostr.Event[] = [];
    const sub = nostr.pool.subscribeMany(backupRelays, { kinds: [nostr.KIND_NIP60_TOKEN], authors: [id.pubkey] }, {
      onevent: (e) => got.push(e),
      oneose: () => {
        sub.close();
        ok(got);
      },
      onauth: id.sign,
      maxWait: 8000,
    });
  });
  const deleted = new Set<string>();
  const contents: { mint: string; unit: string; proofs: { id: string; amount: number; secret: string; C: string; dleq?: cashu.StoredProof['dleq'] }[]; del?: string[] }[] = [];
  for (const e of events) {
    try {
      const c = JSON.parse(await id.decryptFromSelf(e.content));
      for (const d of c.del ?? []) deleted.add(d);
      contents.push({ ...c, _id: e.id });
    } catch {
      /* not ours to read */
    }
  }
  const known = new Set((await store.all<cashu.StoredProof>('proofs')).map((p) => p.secret));
  let added = 0;
  for (const c of contents as (typeof contents[number] & { _id: string })[]) {
    if (deleted.has(c._id)) continue;
    const fresh = c.proofs.filter((p) => !known.has(p.secret));
    if (!fresh.length) continue;
    const states = await cashu.checkStates(c.mint, fresh);
    const keep = fresh.filter((_, i) => states[i].state === 'UNSPENT');
    await store.write((b) => {
      for (const p of keep) b.put('proofs', { ...p, mint: cashu.normalizeUrl(c.mint), unit: c.unit, state: 'unspent' });
    });
    for (const p of keep) known.add(p.secret);
    added += keep.reduce((s, p) => s + p.amount, 0);
    // the backup is the user's own: a mint it holds proofs at was trusted where it was made
    if (keep.length && !(await trust.isTrusted(c.mint))) await trust.add(await trust.lookUp(c.mint));
  }
  changed();
  return added;
}
