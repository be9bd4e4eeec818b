// Cashu in the browser (cashu-ts): proofs kept in IndexedDB, keysets, and durable operations.
// An operation (a swap, a mint or a melt) is written with its inputs reserved and its outputs' secrets
// and blinding factors before it is sent; sending it again is safe, and when the mint already
// did it the outputs' signatures are fetched back with NUT-09 restore. HTLC locks (NUT-14) for
// the market's swaps are built and checked here too (protocol §10).
import { Amount, HttpResponseError, Mint, MintOperationError, OutputData, getDecodedToken, getEncodedToken, getTokenMetadata, hasValidDleq, hashToCurve, setGlobalRequestOptions, signMintQuote, type Proof } from '@cashu/cashu-ts';
import { schnorr, secp256k1 } from '@noble/curves/secp256k1.js';
import * as store from './db';
import { bytesToHex, hexToBytes, randomId, sha256Bytes, sha256Hex } from './util';

/** A proof as stored (amount as a plain integer). */
export interface StoredProof {
  secret: string;
  id: string;
  amount: number;
  C: string;
  dleq?: { e: string; s: string; r?: string };
  witness?: string;
  mint: string;
  unit: string;
  state: 'unspent' | 'reserved';
  op?: string;
}

/** An output whose signature we await: enough to unblind it (or restore it) later. */
export interface StoredOutput {
  amount: number;
  id: string;
  B_: string;
  secret: string;
  r: string;
}

/** A blind signature as a mint answers it. */
type Signature = Parameters<OutputData['toProof']>[0];

/** A swap, mint or melt written before it is sent. */
export interface Op {
  id: string;
  kind: 'swap' | 'mint' | 'melt';
  /** The payment method of a mint or melt (`bolt11` when absent; `ehash-redeem` for redemptions). */
  method?: string;
  /** NUT-20: the secret key (hex) the mint quote is locked to; the mint request is signed with it. */
  quoteKey?: string;
  mint: string;
  unit: string;
  keysetId: string;
  /** Inputs with their witnesses (swap, melt). */
  inputs: StoredProof[];
  quote?: string;
  /** The outputs (a melt's are NUT-08 blanks for the change of its fee reserve). */
  outputs: StoredOutput[];
  /** How many of the outputs (from the start) are handed to the caller instead of the wallet. */
  give: number;
  purpose: string;
  created: number;
  /** The owner, to resume it after a reload: `wallet` or `trade:<id>`. */
  owner: string;
}

/** The mint answered and refused (and did not do it); `conflict` when the inputs were spent elsewhere. */
export class Refused extends Error {
  constructor(
    msg: string,
    readonly conflict = false,
    /** Secrets of inputs the mint reports spent (they leave the wallet when the op is released). */
    readonly spent: string[] = [],
  ) {
    super(msg);
  }
}

/** The mint could not be reached or did not answer clearly: try again. */
export class Unreachable extends Error {}

/** The wallet does not hold enough to pay for something (nothing was sent to a mint). */
export class Insufficient extends Refused {}

// ---------------------------------------------------------------- keysets

export interface KeysetInfo {
  id: string;
  unit: string;
  active: boolean;
  fee: number;
  keys?: Record<string, string>;
}

const keysetCache = new Map<string, Promise<KeysetInfo[]>>();
const keysCache = new Map<string, Promise<Record<string, string>>>();

export function normalizeUrl(u: string): string {
  return u.replace(/\/+$/, '');
}

/** How long one request to a mint may take: a mint that does not answer by then counts as unreachable (asked again later, never as a refusal). */
export const MINT_TIMEOUT_MS = 30_000;
setGlobalRequestOptions({ requestTimeout: MINT_TIMEOUT_MS });

export function mintOf(url: string): Mint {
  return new Mint(normalizeUrl(url));
}

/** The mint's keysets (cached for the page; `refresh` asks again). */
export async function keysets(mint: string, refresh = false): Promise<KeysetInfo[]> {
  const k = normalizeUrl(mint);
  if (refresh || !keysetCache.has(k)) {
    const p = mintOf(k)
      .getKeySets()
      .then((r) => r.keysets.map((s) => ({ id: s.id, unit: s.unit, active: s.active, fee: s.input_fee_ppk ?? 0 })))
      .catch((e) => {
        keysetCache.delete(k);
        throw new Unreachable(`the mint ${k} cannot be reached: ${(e as Error).message}`);
      });
    keysetCache.set(k, p);
  }
  return keysetCache.get(k)!;
}

/** Keys of a keyset (from the mint). */
export async function keysOf(mint: string, id: string): Promise<Record<string, string>> {
  const k = `${normalizeUrl(mint)} ${id}`;
  if (!keysCache.has(k)) {
    const p = mintOf(mint)
      .getKeys(id)
      .then((r) => {
        const ks = r.keysets.find((s) => s.id === id);
        if (!ks) throw new Error(`the mint has no keyset ${id}`);
        return ks.keys as unknown as Record<string, string>;
      })
      .catch((e) => {
        keysCache.delete(k);
        throw new Unreachable(`keys of keyset ${id} at ${mint}: ${(e as Error).message}`);
      });
    keysCache.set(k, p);
  }
  return keysCache.get(k)!;
}

/** Use keys known from elsewhere (a verified epoch announcement). */
export function knowKeys(mint: string, id: string, keys: Record<string, string>): void {
  keysCache.set(`${normalizeUrl(mint)} ${id}`, Promise.resolve(keys));
}

/** The active keyset of `unit` at `mint`, with its keys. */
export async function activeKeyset(mint: string, unit: string): Promise<KeysetInfo & { keys: Record<string, string> }> {
  const all = await keysets(mint);
  const ks = all.filter((k) => k.unit === unit && k.active).sort((a, b) => a.fee - b.fee)[0];
  if (!ks) throw new Refused(`the mint ${mint} has no active keyset for unit ${unit}`);
  return { ...ks, keys: await keysOf(mint, ks.id) };
}

/** NUT-02 input fee of spending `proofs`. */
export async function inputFee(mint: string, proofs: { id: string }[]): Promise<number> {
  if (proofs.length === 0) return 0;
  const all = await keysets(mint);
  let ppk = 0;
  for (const p of proofs) {
    let k = all.find((s) => s.id === p.id);
    if (!k) k = (await keysets(mint, true)).find((s) => s.id === p.id);
    if (!k) throw new Refused(`keyset ${p.id} is not known at ${mint}`);
    ppk += k.fee;
  }
  return feeForPpk(ppk);
}

/** NUT-02 input fee of inputs whose keysets' `input_fee_ppk` add up to `totalPpk` (as `wallet::htlc::fee_for_ppk`). */
export function feeForPpk(totalPpk: number): number {
  return Math.ceil(totalPpk / 1000);
}

/** The amounts a value splits into (powers of two the keyset signs), smallest first (as cdk's `Amount::split`). */
export function split(value: number, keys: Record<string, string>): number[] {
  if (!Object.keys(keys).every((k) => /^[1-9][0-9]*$/.test(k))) throw new Refused('the keyset has an amount that is not a positive whole number');
  // amounts past 2^53 (keysets often sign up to 2^63) are larger than any value a page holds
  const have = Object.keys(keys)
    .map(Number)
    .filter((a) => Number.isSafeInteger(a))
    .sort((a, b) => b - a);
  const out: number[] = [];
  let left = value;
  for (const a of have) {
    while (left >= a) {
      out.push(a);
      left -= a;
    }
  }
  if (left !== 0) throw new Refused(`${value} cannot be made of this keyset's amounts`);
  return out.reverse();
}

// ---------------------------------------------------------------- conversions

export function toCashu(p: StoredProof): Proof {
  const q: Proof = { id: p.id, amount: Amount.from(p.amount), secret: p.secret, C: p.C };
  if (p.dleq) q.dleq = p.dleq;
  if (p.witness) q.witness = p.witness;
  return q;
}

export function fromCashu(p: Proof, mint: string, unit: string): StoredProof {
  const s: StoredProof = { id: p.id, amount: Amount.from(p.amount).toNumber(), secret: p.secret, C: p.C, mint: normalizeUrl(mint), unit, state: 'unspent' };
  if (p.dleq) s.dleq = { e: p.dleq.e, s: p.dleq.s, ...(p.dleq.r ? { r: p.dleq.r } : {}) };
  return s;
}

function saveOutput(o: OutputData): StoredOutput {
  return { amount: Amount.from(o.blindedMessage.amount).toNumber(), id: o.blindedMessage.id, B_: o.blindedMessage.B_, secret: bytesToHex(o.secret), r: o.blindingFactor.toString(16) };
}

function loadOutput(o: StoredOutput): OutputData {
  return new OutputData({ amount: Amount.from(o.amount), id: o.id, B_: o.B_ }, BigInt(`0x${o.r}`), hexToBytes(o.secret));
}

/** Random outputs worth `value` in keyset `ks`. */
export function randomOutputs(value: number, ks: { id: string; keys: Record<string, string> }): StoredOutput[] {
  if (value === 0) return [];
  return OutputData.createRandomData(value, { id: ks.id, keys: ks.keys as never }, split(value, ks.keys)).map(saveOutput);
}

/** NUT-07 Y of a secret. */
export function yOf(secret: string): string {
  return hashToCurve(new TextEncoder().encode(secret)).toHex(true);
}

/** Token string of proofs. */
export function encodeToken(mint: string, unit: string, proofs: StoredProof[]): string {
  return getEncodedToken({ mint: normalizeUrl(mint), unit, proofs: proofs.map((p) => ({ ...toCashu(p), witness: undefined })) });
}

/** The mint and unit a token names, read without contacting anyone. */
export function tokenMint(token: string): { mint: string; unit: string } {
  let meta;
  try {
    meta = getTokenMetadata(token.trim());
  } catch {
    // the decoder's own words ("Unsupported major type: 6") mean nothing to a user
    throw new Refused('that is not a Cashu token: paste the whole text, which starts with cashuA or cashuB');
  }
  return { mint: normalizeUrl(meta.mint), unit: meta.unit ?? 'sat' };
}

/** Decode a token, resolving its keyset ids with the mint's list. */
export async function decodeToken(token: string): Promise<{ mint: string; unit: string; proofs: StoredProof[] }> {
  const { mint } = tokenMint(token);
  const ids = (await keysets(mint)).map((k) => k.id);
  const t = getDecodedToken(token.trim(), ids);
  const unit = t.unit ?? 'sat';
  return { mint, unit, proofs: t.proofs.map((p) => fromCashu(p, mint, unit)) };
}

// ---------------------------------------------------------------- wallet proofs

export async function unspent(mint?: string, unit?: string): Promise<StoredProof[]> {
  const all = await store.all<StoredProof>('proofs');
  return all.filter((p) => p.state === 'unspent' && (!mint || p.mint === normalizeUrl(mint)) && (!unit || p.unit === unit) && !isHtlc(p.secret));
}

let selecting: Promise<unknown> = Promise.resolve();
/**
 * Run `f` alone among the callers that pick wallet proofs: from choosing inputs to writing the
 * operation that reserves them, so two operations never take the same proofs.
 */
export function exclusive<T>(f: () => Promise<T>): Promise<T> {
  const run = selecting.then(f, f);
  selecting = run.catch(() => undefined);
  return run;
}

/** Proofs worth at least `target` plus the fee of spending them, largest first. */
export async function select(mint: string, unit: string, target: number): Promise<{ inputs: StoredProof[]; fee: number; total: number }> {
  const have = (await unspent(mint, unit)).sort((a, b) => b.amount - a.amount);
  const balance = have.reduce((s, p) => s + p.amount, 0);
  const inputs: StoredProof[] = [];
  let total = 0;
  for (const p of have) {
    const fee = await inputFee(mint, inputs);
    if (total >= target + fee && inputs.length > 0) break;
    inputs.push(p);
    total += p.amount;
  }
  const fee = await inputFee(mint, inputs);
  if (total < target + fee) throw new Insufficient(`not enough ${unit} at ${mint}: have ${balance}, need ${target} plus ${fee} fee`);
  return { inputs, fee, total };
}

/** Write an operation: its inputs from this wallet become reserved. */
export async function saveOp(op: Op, also?: (b: store.Batch) => void): Promise<void> {
  await store.write((b) => {
    b.put('ops', op);
    for (const p of op.inputs) {
      if (p.state === 'unspent' || p.state === 'reserved') b.put('proofs', { ...p, witness: undefined, state: 'reserved', op: op.id });
    }
    also?.(b);
  });
}

/** A new operation record. */
export function newOp(o: Omit<Op, 'id' | 'created'>): Op {
  return { ...o, id: randomId(), created: Math.floor(Date.now() / 1000) };
}

/** NUT-00 error codes (cdk) that mean "this was done already". */
const ALREADY_SPENT = 11001;
const PENDING = 11002;
const ALREADY_SIGNED = 11003;

/**
 * Send (or send again) an operation; returns every output's proof, in order. As
 * `wallet::durable::execute_at`: after an error the inputs' states tell whether the mint did it
 * (then NUT-09 restore returns the signatures), did not (a 4xx answer is a refusal, anything else
 * is retried), or is still doing it (retried).
 */
export async function execute(op: Op): Promise<StoredProof[]> {
  if (op.kind === 'melt') return executeMelt(op);
  const mint = mintOf(op.mint);
  const outputs = op.outputs.map(loadOutput);
  const messages = outputs.map((o) => o.blindedMessage);
  const restore = async (why: string) => {
    let r;
    try {
      r = await mint.restore({ outputs: messages });
    } catch (e) {
      throw new Unreachable(`${why}; restoring the outputs: ${(e as Error).message}`);
    }
    const byB = new Map(r.outputs.map((o, i) => [o.B_, r.signatures[i]]));
    const sigs = messages.map((m) => byB.get(m.B_));
    if (sigs.every((x) => x)) return sigs as NonNullable<(typeof sigs)[number]>[];
    return null;
  };
  const inputStates = async (why: string) => {
    try {
      return (await checkStates(op.mint, op.inputs)).map((x) => x.state);
    } catch (c) {
      throw new Unreachable(`${why}; and the mint could not be asked about the inputs: ${(c as Error).message}`);
    }
  };
  let signatures;
  try {
    const r =
      op.kind === 'swap'
        ? await mint.swap({ inputs: op.inputs.map(toCashu), outputs: messages })
        : op.method && op.method !== 'bolt11'
          ? ((await mint.mint(op.method, { quote: op.quote ?? '', outputs: messages, ...(op.quoteKey ? { signature: signMintQuote(op.quoteKey, op.quote ?? '', messages) } : {}) })) as unknown as { signatures: Signature[] })
          : await mint.mintBolt11({ quote: op.quote ?? '', outputs: messages });
    signatures = r.signatures;
  } catch (e) {
    const why = `${op.mint}: ${(e as Error).message}`;
    if (!(e instanceof HttpResponseError)) throw new Unreachable(why);
    const code = e instanceof MintOperationError ? e.code : undefined;
    // a rate limit or a timeout (408, 425, 429) is "later", not "no"
    const answered = e.status >= 400 && e.status < 500 && ![408, 425, 429].includes(e.status) && code !== PENDING;
    if (op.kind === 'mint') {
      signatures = await restore(why);
      if (!signatures) throw answered ? new Refused(why) : new Unreachable(why);
    } else {
      if (code === ALREADY_SPENT || code === ALREADY_SIGNED) signatures = await restore(why);
      if (!signatures) {
        const states = await inputStates(why);
        if (states.every((x) => x === 'UNSPENT')) throw answered ? new Refused(why) : new Unreachable(why);
        if (states.some((x) => x === 'PENDING')) throw new Unreachable(`${why}; an input is pending at the mint`);
        signatures = await restore(why);
        if (!signatures) {
          const spent = op.inputs.filter((_, i) => states[i] === 'SPENT').map((p) => p.secret);
          throw new Refused(`${why}; its inputs were spent elsewhere`, true, spent);
        }
      }
    }
  }
  if (signatures.length !== outputs.length) throw new Unreachable(`the mint returned ${signatures.length} signatures for ${outputs.length} outputs`);
  const keys = await keysOf(op.mint, op.keysetId);
  return outputs.map((o, i) => fromCashu(o.toProof(signatures[i], { id: op.keysetId, keys: keys as never }), op.mint, op.unit));
}

/**
 * Send (or send again) a melt; returns the change proofs of its NUT-08 blank outputs. The quote's
 * state and the inputs' states after an error tell what happened: a PAID quote with our inputs
 * spent (the change comes from the quote, else by NUT-09 restore), a PAID quote with our inputs
 * unspent (other inputs paid it: refused, ours come back), PENDING (asked again later), UNPAID
 * with the inputs unspent (a 4xx answer is a refusal), UNPAID with inputs spent elsewhere
 * (refused; those leave the wallet).
 */
async function executeMelt(op: Op): Promise<StoredProof[]> {
  const mint = mintOf(op.mint);
  const method = op.method ?? 'bolt11';
  const outputs = op.outputs.map(loadOutput);
  const messages = outputs.map((o) => o.blindedMessage);
  const inputStates = async (why: string) => {
    try {
      return (await checkStates(op.mint, op.inputs)).map((x) => x.state);
    } catch (c) {
      throw new Unreachable(`${why}; and the mint could not be asked about the inputs: ${(c as Error).message}`);
    }
  };
  // the mint's change, as [output index, signature]
  let change: [number, Signature][];
  let why: string;
  let answered = false;
  try {
    const r = (await mint.melt(method, { quote: op.quote ?? '', inputs: op.inputs.map(toCashu), outputs: messages })) as { state?: string; change?: Signature[] };
    if (r.state === 'PAID') return changeProofs(op, outputs, (r.change ?? []).map((s, i) => [i, s]));
    if (r.state !== 'UNPAID') throw new Unreachable(`${op.mint}: the payment is ${r.state ?? 'in an unknown state'}; the wallet will ask again`);
    why = `${op.mint}: the payment failed`;
    answered = true;
  } catch (e) {
    if (e instanceof Unreachable) throw e;
    why = `${op.mint}: ${(e as Error).message}`;
    answered = e instanceof HttpResponseError && e.status >= 400 && e.status < 500 && ![408, 425, 429].includes(e.status);
  }
  let q;
  try {
    q = (await mint.checkMeltQuote(method, op.quote ?? '')) as { state?: string; change?: Signature[] };
  } catch (c) {
    throw new Unreachable(`${why}; and the mint could not be asked about the payment: ${(c as Error).message}`);
  }
  if (q.state === 'PENDING') throw new Unreachable(`${why}; the payment is pending at the mint`);
  const states = await inputStates(why);
  if (states.some((x) => x === 'PENDING')) throw new Unreachable(`${why}; an input is pending at the mint`);
  const spent = op.inputs.filter((_, i) => states[i] === 'SPENT').map((p) => p.secret);
  if (q.state !== 'PAID') {
    if (!spent.length) throw answered ? new Refused(why) : new Unreachable(why);
    throw new Refused(`${why}; ${spent.length} of its inputs were spent elsewhere`, true, spent);
  }
  // paid, but not with these inputs (a second attempt on a quote another payment settled)
  if (!spent.length) throw new Refused(`${op.mint}: the quote was paid already, with other funds; these were not spent`);
  if (spent.length < op.inputs.length) throw new Unreachable(`${why}; the quote is paid but only some inputs are spent`);
  // paid with these inputs: the change is in the quote (NUT-05), else restored (NUT-09)
  if (q.change?.length) {
    change = q.change.map((s, i) => [i, s]);
  } else if (!messages.length) {
    change = [];
  } else {
    let r;
    try {
      r = await mint.restore({ outputs: messages });
    } catch (c) {
      throw new Unreachable(`${why}; the payment is made, and its change could not be fetched yet: ${(c as Error).message}`);
    }
    const byB = new Map(r.outputs.map((o, i) => [o.B_, r.signatures[i]]));
    change = messages.flatMap((m, i): [number, Signature][] => {
      const s = byB.get(m.B_);
      return s ? [[i, s]] : [];
    });
  }
  return changeProofs(op, outputs, change);
}

/** The proofs of a melt's change: each signature with the blank output it signed, under the keyset that signed it. */
async function changeProofs(op: Op, outputs: OutputData[], change: [number, Signature][]): Promise<StoredProof[]> {
  const proofs: StoredProof[] = [];
  for (const [i, sig] of change) {
    const o = outputs[i];
    if (!o) throw new Unreachable(`${op.mint} returned change for ${change.length} outputs, ${outputs.length} were sent`);
    const keys = await keysOf(op.mint, sig.id);
    o.blindedMessage.amount = Amount.from(sig.amount);
    proofs.push(fromCashu(o.toProof(sig, { id: sig.id, keys: keys as never }), op.mint, op.unit));
  }
  return proofs;
}

/** NUT-08 blank outputs for the change of a melt whose fee reserve is `reserve`. */
export function blankOutputs(reserve: number, ks: { id: string; keys: Record<string, string> }): StoredOutput[] {
  const n = reserve > 0 ? Math.max(1, Math.ceil(Math.log2(reserve))) : 0;
  return Array.from({ length: n }, () => OutputData.createRandomData(1, { id: ks.id, keys: ks.keys as never })[0]).map(saveOutput);
}

/** NUT-07 states of `proofs`, checked to answer exactly for them. */
export async function checkStates(mint: string, proofs: { secret: string }[]): Promise<{ state: string; witness: string | null }[]> {
  const ys = proofs.map((p) => yOf(p.secret));
  const r = await mintOf(mint).check({ Ys: ys });
  if (r.states.length !== ys.length || r.states.some((x, i) => x.Y !== ys[i])) throw new Unreachable(`${mint} answered NUT-07 for other proofs`);
  return r.states;
}

/** After `execute`: the wallet keeps its outputs, the inputs are gone, the op is done. */
export function finishOp(b: store.Batch, op: Op, proofs: StoredProof[]): StoredProof[] {
  for (const p of op.inputs) b.del('proofs', p.secret);
  for (const p of proofs.slice(op.give)) b.put('proofs', p);
  b.del('ops', op.id);
  return proofs.slice(0, op.give);
}

/** An operation the mint refused: its inputs come back, but for those spent elsewhere. */
export function releaseOp(b: store.Batch, op: Op, spent: string[] = []): void {
  for (const p of op.inputs) {
    if (spent.includes(p.secret)) b.del('proofs', p.secret);
    else if (p.state) b.put('proofs', { ...p, witness: undefined, state: 'unspent', op: undefined });
  }
  b.del('ops', op.id);
}

// ---------------------------------------------------------------- HTLC (NUT-14)

export function isHtlc(secret: string): boolean {
  try {
    const s = JSON.parse(secret);
    return Array.isArray(s) && s[0] === 'HTLC';
  } catch {
    return false;
  }
}

/** Lock conditions of a trade (protocol §10). */
export interface LockSpec {
  hash: string;
  receiver: string;
  maker: string;
  locktime: number;
}

/** HTLC outputs worth `value`. */
export function htlcOutputs(value: number, ks: { id: string; keys: Record<string, string> }, l: LockSpec): StoredOutput[] {
  return OutputData.createP2PKData(
    { pubkey: l.receiver, locktime: l.locktime, refundKeys: [l.maker], hashlock: l.hash, sigFlag: 'SIG_INPUTS', requiredSignatures: 1, requiredRefundSignatures: 1 },
    value,
    { id: ks.id, keys: ks.keys as never },
    split(value, ks.keys),
  ).map(saveOutput);
}

/** The face value of a lock whose receiver nets `net` after redeeming it (the fee of its own proofs added). */
export function lockFace(net: number, keys: Record<string, string>, ppk: number): number {
  let face = net;
  for (let i = 0; i < 16; i++) {
    const next = net + Math.ceil((split(face, keys).length * ppk) / 1000);
    if (next === face) return face;
    face = next;
  }
  throw new Refused("the lock's fee does not converge");
}

export function newPreimage(): { preimage: string; hash: string } {
  const p = bytesToHex(crypto.getRandomValues(new Uint8Array(32)));
  return { preimage: p, hash: sha256Hex(hexToBytes(p)) };
}

export function hashOf(preimage: string): string {
  return sha256Hex(hexToBytes(preimage));
}

function signSecret(secret: string, sk: Uint8Array): string {
  return bytesToHex(schnorr.sign(sha256Bytes(secret), sk));
}

/** Inputs that claim HTLC proofs with the preimage and the receiver's signature. */
export function claimWitness(proofs: StoredProof[], preimage: string, sk: Uint8Array): StoredProof[] {
  return proofs.map((p) => ({ ...p, dleq: undefined, witness: JSON.stringify({ preimage, signatures: [signSecret(p.secret, sk)] }) }));
}

/**
 * Inputs that take HTLC proofs back after the locktime: the maker's signature and an empty
 * preimage, or with `dummyPreimage` 32 zero bytes (for mints that refuse an empty one; a preimage
 * that does not match the hash selects the NUT-14 refund path).
 */
export function refundWitness(proofs: StoredProof[], sk: Uint8Array, dummyPreimage = false): StoredProof[] {
  const preimage = dummyPreimage ? '00'.repeat(32) : '';
  return proofs.map((p) => ({ ...p, dleq: undefined, witness: JSON.stringify({ preimage, signatures: [signSecret(p.secret, sk)] }) }));
}

/** What a lock must be (the counterparty's, before anything is locked in return). */
export interface LockTerms {
  mint: string;
  unit: string;
  /** Allowed keysets with keys and fee. */
  keysets: Map<string, { keys: Record<string, string>; fee: number }>;
  hash?: string;
  locktime: number;
  receiver: string;
  maker: string;
  amount: number;
}

/** A lock that does not meet the terms, naming the field (as wallet::htlc::LockError). */
export class LockError extends Error {}

/** The conditions of a NUT-14 lock secret (as `wallet::htlc::LockSecret`): hex in lowercase, a tag left out null (or no keys). */
export interface LockSecret {
  data: string;
  locktime: number | null;
  pubkeys: string[];
  refund: string[];
  nSigs: number | null;
  nSigsRefund: number | null;
  sigflag: string | null;
}

const SECRET_TAGS = ['locktime', 'pubkeys', 'refund', 'n_sigs', 'n_sigs_refund', 'sigflag'];
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * What in a JSON text (one that parses) other parsers read differently: a key repeated in an
 * object (JavaScript and Python keep the last copy, serde refuses it, so cdk reads no lock at
 * all) or a string that is not valid Unicode (serde_json refuses a lone surrogate).
 */
function jsonAmbiguity(text: string): string | null {
  const objects: (Set<string> | null)[] = [];
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '{') objects.push(new Set());
    else if (ch === '[') objects.push(null);
    else if (ch === '}' || ch === ']') objects.pop();
    else if (ch === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const str = JSON.parse(text.slice(i, j + 1)) as string;
      if (LONE_SURROGATE.test(str)) return 'not JSON (a string is not valid Unicode)';
      let k = j + 1;
      while (' \t\r\n'.includes(text[k] ?? '.')) k++;
      const keys = objects[objects.length - 1];
      if (text[k] === ':' && keys) {
        if (keys.has(str)) return `an object repeats a key (${str})`;
        keys.add(str);
      }
      i = j;
    }
  }
  return null;
}

/**
 * Read a counterparty's lock secret strictly (protocol §10, "Reading a lock secret"; as
 * `wallet::htlc::read_lock_secret`): exactly `["HTLC", {nonce, data, tags}]` where every mint
 * reads the same conditions. Refused: text other parsers read otherwise, unknown fields and
 * tags, a tag given twice (cdk and nutshell read the first copy, nutshell joins repeated key
 * lists), a value not in its one canonical form, and conditions cdk would not parse.
 */
export function parseHtlc(secret: string): LockSecret {
  const bad = (why: string) => new LockError(`secret: ${why}`);
  let s: unknown;
  try {
    s = JSON.parse(secret);
  } catch (e) {
    throw bad(`not JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(s) || s.length !== 2 || s[0] !== 'HTLC') throw bad('not a NUT-14 HTLC: the secret must be ["HTLC", {nonce, data, tags}]');
  const body = s[1] as Record<string, unknown>;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('the body must be an object');
  const ambiguity = jsonAmbiguity(secret);
  if (ambiguity) throw bad(ambiguity);
  for (const k of Object.keys(body)) if (!['nonce', 'data', 'tags'].includes(k)) throw bad(`unknown field ${k}`);
  if (typeof body.nonce !== 'string' || body.nonce.length === 0) throw bad('the nonce must be a non-empty string');
  if (typeof body.data !== 'string' || !/^[0-9a-fA-F]{64}$/.test(body.data)) throw bad('data must be a 32-byte hash in hex');
  if (body.tags !== undefined && !Array.isArray(body.tags)) throw bad('tags must be an array');
  const out: LockSecret = { data: body.data.toLowerCase(), locktime: null, pubkeys: [], refund: [], nSigs: null, nSigsRefund: null, sigflag: null };
  const names = new Set<string>();
  for (const t of (body.tags ?? []) as unknown[]) {
    if (!Array.isArray(t) || t.length < 2 || t.some((x) => typeof x !== 'string')) throw bad('each tag must be a name and at least one value, all strings');
    const [name, ...values] = t as string[];
    if (!SECRET_TAGS.includes(name)) throw bad(`unknown tag ${name}`);
    if (names.has(name)) throw bad(`the tag ${name} appears twice`);
    names.add(name);
    const one = () => {
      if (values.length !== 1) throw bad(`${name} must have exactly one value`);
      return values[0];
    };
    const integer = (least: number) => {
      const v = one();
      const n = Number(v);
      if (!/^(0|[1-9][0-9]*)$/.test(v) || !Number.isSafeInteger(n) || n < least) throw bad(`${name} must be a decimal integer from ${least} to 2^53 - 1 (digits only, no leading zero), not ${JSON.stringify(v)}`);
      return n;
    };
    const keys = () => {
      const got: string[] = [];
      for (const v of values) {
        let point = /^0[23][0-9a-fA-F]{64}$/.test(v);
        try {
          if (point) secp256k1.Point.fromHex(v);
        } catch {
          point = false;
        }
        if (!point) throw bad(`${name}: ${v} is not a compressed public key`);
        if (got.includes(v.toLowerCase())) throw bad(`${name} repeats a key`);
        got.push(v.toLowerCase());
      }
      return got;
    };
    if (name === 'locktime') out.locktime = integer(0);
    else if (name === 'n_sigs') out.nSigs = integer(1);
    else if (name === 'n_sigs_refund') out.nSigsRefund = integer(1);
    else if (name === 'pubkeys') out.pubkeys = keys();
    else if (name === 'refund') out.refund = keys();
    else {
      const f = values.length === 1 ? values[0] : '';
      if (f !== 'SIG_INPUTS' && f !== 'SIG_ALL') throw bad('sigflag must be one value, SIG_INPUTS or SIG_ALL');
      out.sigflag = f;
    }
  }
  if (out.nSigsRefund !== null && out.nSigsRefund > out.refund.length) throw bad('n_sigs_refund needs that many refund keys');
  return out;
}

/**
 * Check a lock secret's conditions against a trade's, naming the first field that differs (as
 * `wallet::htlc::check_conditions`): the hash when given, `pubkeys` exactly `[receiver]`,
 * `refund` exactly `[maker]`, the trade's `locktime`, one signature on each path, `SIG_INPUTS`.
 */
export function checkConditions(s: LockSecret, t: { hash?: string; locktime: number; receiver: string; maker: string }): void {
  if (t.hash !== undefined && t.hash.toLowerCase() !== s.data) throw new LockError(`hash: the lock pays against ${s.data}, the trade's hash is ${t.hash}`);
  if (s.pubkeys.length !== 1 || s.pubkeys[0] !== t.receiver.toLowerCase()) throw new LockError(`pubkeys: the lock must be claimable by exactly the receiver's key ${t.receiver}; it names ${s.pubkeys.join(',')}`);
  if (s.refund.length !== 1 || s.refund[0] !== t.maker.toLowerCase()) throw new LockError(`refund: the lock must be refundable to exactly its maker's key ${t.maker}; it names ${s.refund.join(',')}`);
  if (s.locktime !== t.locktime) throw new LockError(`locktime: the lock expires at ${s.locktime}, the trade says ${t.locktime}`);
  if ((s.nSigs ?? 1) !== 1 || (s.nSigsRefund ?? 1) !== 1) throw new LockError('conditions: each path must need exactly one signature');
  if ((s.sigflag ?? 'SIG_INPUTS') !== 'SIG_INPUTS') throw new LockError('conditions: the lock must be SIG_INPUTS');
}

/** Check a lock token completely (protocol §10 "Verifying a lock"), including NUT-07 UNSPENT. */
export async function verifyLock(token: string, t: LockTerms): Promise<{ proofs: StoredProof[]; hash: string }> {
  let meta;
  try {
    meta = getTokenMetadata(token.trim());
  } catch (e) {
    throw new LockError(`token: ${(e as Error).message}`);
  }
  if (normalizeUrl(meta.mint) !== normalizeUrl(t.mint)) throw new LockError(`mint: the lock is at ${meta.mint}, the trade's mint is ${t.mint}`);
  if ((meta.unit ?? 'sat') !== t.unit) throw new LockError(`unit: the lock is in ${meta.unit}, the trade is in ${t.unit}`);
  let decoded;
  try {
    decoded = getDecodedToken(token.trim(), [...t.keysets.keys()]);
  } catch (e) {
    throw new LockError(`keyset: ${(e as Error).message}`);
  }
  const proofs = decoded.proofs.map((p) => fromCashu(p, t.mint, t.unit));
  if (proofs.length === 0) throw new LockError('token: the token has no proofs');
  const seen = new Set<string>();
  let hash = t.hash;
  let total = 0;
  let ppk = 0;
  for (const [i, p] of proofs.entries()) {
    if (seen.has(p.secret)) throw new LockError('proofs: the token repeats a proof');
    seen.add(p.secret);
    const ks = t.keysets.get(p.id);
    if (!ks) throw new LockError(`keyset: proof of keyset ${p.id} is not of the trade's market`);
    const read = parseHtlc(p.secret);
    checkConditions(read, { hash, locktime: t.locktime, receiver: t.receiver, maker: t.maker });
    hash = hash ?? read.data;
    if (!p.dleq) throw new LockError(`dleq: proof of ${p.amount} in keyset ${p.id}: no DLEQ proof`);
    let dleqOk = false;
    try {
      dleqOk = hasValidDleq(decoded.proofs[i], { id: p.id, keys: ks.keys as never });
    } catch (e) {
      throw new LockError(`dleq: proof of ${p.amount} in keyset ${p.id}: ${(e as Error).message}`);
    }
    if (!dleqOk) throw new LockError(`dleq: proof of ${p.amount} in keyset ${p.id}: invalid DLEQ proof`);
    total += p.amount;
    ppk += ks.fee;
  }
  const fee = feeForPpk(ppk);
  if (total - fee < t.amount) throw new LockError(`amount: the lock is worth ${total - fee} after the mint's fee of ${fee}; the trade needs ${t.amount}`);
  let states;
  try {
    states = await checkStates(t.mint, proofs);
  } catch (e) {
    throw new Unreachable(`mint unreachable: ${(e as Error).message}`);
  }
  const bad = states.find((s) => s.state !== 'UNSPENT');
  if (bad) throw new LockError(`state: a locked proof is ${bad.state} at the mint`);
  return { proofs, hash: hash! };
}

export type Spend = { kind: 'unspent' } | { kind: 'claimed'; preimage: string } | { kind: 'refunded' };

/** How my lock was spent, read from NUT-07 (a claim reveals the preimage in its witness). */
export async function spendOf(mint: string, proofs: StoredProof[], hash: string): Promise<Spend> {
  let states;
  try {
    states = await checkStates(mint, proofs);
  } catch (e) {
    throw new Unreachable(`${mint}: ${(e as Error).message}`);
  }
  let refunded = false;
  for (const s of states) {
    if (s.state !== 'SPENT') continue;
    let pre: string | undefined;
    try {
      pre = s.witness ? (JSON.parse(s.witness) as { preimage?: string }).preimage : undefined;
    } catch {
      pre = undefined;
    }
    if (pre && /^[0-9a-fA-F]{64}$/.test(pre) && hashOf(pre) === hash.toLowerCase()) return { kind: 'claimed', preimage: pre.toLowerCase() };
    refunded = true;
  }
  return refunded ? { kind: 'refunded' } : { kind: 'unspent' };
}
