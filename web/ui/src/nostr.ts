// Nostr: the relay pool, the user's identity (NIP-07 or a key kept in this browser), and the
// ehash event formats of docs/protocol.md (offers 38190, trades 38191, settlement messages
// 4190, epoch announcements 38180, mint announcements 38172).
import { SimplePool } from 'nostr-tools/pool';
import { finalizeEvent, generateSecretKey, getPublicKey, verifyEvent, type Event, type EventTemplate, type VerifiedEvent } from 'nostr-tools/pure';
import * as nip19 from 'nostr-tools/nip19';
import * as nip44 from 'nostr-tools/nip44';
import { deriveKeysetId } from '@cashu/cashu-ts';
import { schnorr } from '@noble/curves/secp256k1.js';
import { bytesToHex, hexToBytes, isHex, sha256Bytes } from './util';
import * as store from './db';

export type { Event };

export const KIND_MINT = 38172;
export const KIND_EPOCH = 38180;
export const KIND_OFFER = 38190;
export const KIND_TRADE = 38191;
export const KIND_SETTLEMENT = 4190;
export const KIND_NIP60_WALLET = 17375;
export const KIND_NIP60_TOKEN = 7375;

/** The one relay pool of the page; AUTH (NIP-42) is answered with the user's identity. */
export const pool = new SimplePool({ enableReconnect: true, maxWaitForConnection: 5000 } as ConstructorParameters<typeof SimplePool>[0]);

/** A value of the first tag named `name`. */
export function tag(ev: Pick<Event, 'tags'>, name: string, i = 1): string | undefined {
  return ev.tags.find((t) => t[0] === name)?.[i];
}

// ---------------------------------------------------------------- identity

declare global {
  interface Window {
    nostr?: {
      getPublicKey(): Promise<string>;
      signEvent(e: EventTemplate): Promise<VerifiedEvent>;
      nip44?: { encrypt(pk: string, text: string): Promise<string>; decrypt(pk: string, text: string): Promise<string> };
    };
  }
}

/** Who the user is on nostr: a NIP-07 extension, or a key generated (or imported) here. */
export interface Identity {
  pubkey: string;
  kind: 'nip07' | 'local';
  sign(e: EventTemplate): Promise<VerifiedEvent>;
  encryptToSelf(text: string): Promise<string>;
  decryptFromSelf(text: string): Promise<string>;
  /** The nsec, for a local key only. */
  nsec?: string;
}

function localIdentity(sk: Uint8Array): Identity {
  const pubkey = getPublicKey(sk);
  const ck = nip44.v2.utils.getConversationKey(sk, pubkey);
  return {
    pubkey,
    kind: 'local',
    nsec: nip19.nsecEncode(sk),
    sign: async (e) => finalizeEvent(e, sk),
    encryptToSelf: async (t) => nip44.v2.encrypt(t, ck),
    decryptFromSelf: async (t) => nip44.v2.decrypt(t, ck),
  };
}

/** The identity in use: NIP-07 when the user chose it, else the stored key (made on first use). */
export async function loadIdentity(): Promise<Identity> {
  const mode = await store.kvGet<string>('identity_mode');
  if (mode === 'nip07' && window.nostr) {
    const ext = window.nostr;
    const pubkey = await ext.getPublicKey();
    if (!ext.nip44) throw new Error('the NIP-07 extension has no NIP-44 encryption (needed for the wallet backup); use a key kept in this browser');
    const n44 = ext.nip44;
    return { pubkey, kind: 'nip07', sign: (e) => ext.signEvent(e), encryptToSelf: (t) => n44.encrypt(pubkey, t), decryptFromSelf: (t) => n44.decrypt(pubkey, t) };
  }
  let hex = await store.kvGet<string>('identity_sk');
  if (!hex) {
    hex = bytesToHex(generateSecretKey());
    await store.kvSet('identity_sk', hex);
  }
  return localIdentity(hexToBytes(hex));
}

/** Use the NIP-07 extension from now on. */
export async function useExtension(): Promise<void> {
  if (!window.nostr) throw new Error('no NIP-07 extension found in this browser (install one such as nos2x or Alby, then reload)');
  await store.kvSet('identity_mode', 'nip07');
  await store.kvSet('identity_from_words', false);
}

/** The secret key of an nsec, or an error in plain words. */
export function parseNsec(nsec: string): Uint8Array {
  let d;
  try {
    d = nip19.decode(nsec.trim());
  } catch {
    // the bech32 decoder's words (its alphabet, a checksum) mean nothing to a user
    throw new Error('that is not an nsec: a secret key is nsec1 followed by 58 letters and digits; check it was copied whole');
  }
  if (d.type !== 'nsec') throw new Error(`that is an ${d.type}, not an nsec (a secret key starts with nsec1)`);
  return d.data;
}

/** Import an nsec as the identity (replacing the stored key; it is no longer the one the recovery words make). */
export async function importNsec(nsec: string): Promise<void> {
  const sk = parseNsec(nsec);
  await store.kvSet('identity_sk', bytesToHex(sk));
  await store.kvSet('identity_mode', 'local');
  await store.kvSet('identity_from_words', false);
}

export function npub(pubkey: string): string {
  return nip19.npubEncode(pubkey);
}

// ---------------------------------------------------------------- publishing

/** Publish to `relays`; resolves when at least one accepted it, else rejects naming each refusal. */
export async function publish(relays: string[], ev: Event, auth?: (e: EventTemplate) => Promise<VerifiedEvent>): Promise<void> {
  if (relays.length === 0) throw new Error('no relays to publish to (the exchange names none in /api/info)');
  const attempts = pool.publish(relays, ev, { onauth: auth, maxWait: 8000 });
  // done at the first relay that accepts it (the others keep trying in the background)
  try {
    await Promise.any(attempts);
  } catch (e) {
    const why = (e as AggregateError).errors?.map((r, i) => `${relays[i]}: ${String((r as Error)?.message ?? r)}`).join('; ');
    throw new Error(`no relay accepted the event: ${why}`);
  }
}

// ---------------------------------------------------------------- keys for offers

/** A nostr key as used for an offer (its secret and x-only public key). */
export interface OfferKey {
  sk: Uint8Array;
  pubkey: string;
}

export function offerKey(sk: Uint8Array): OfferKey {
  return { sk, pubkey: getPublicKey(sk) };
}

/** The Cashu lock key of a nostr key: `02 ‖ x-only` (protocol §9, as NIP-61). */
export function lockKey(pubkey: string): string {
  return `02${pubkey}`;
}

// ---------------------------------------------------------------- offers (38190)

export interface OfferTerms {
  d: string;
  side: 'buy' | 'sell';
  status: 'pending' | 'canceled';
  market: string;
  unit: string;
  mint: string;
  pool: string;
  satMints: string[];
  amount: number;
  min: number;
  price: number;
  lot: number;
  exchange: string;
  expiration: number;
}

/** The unsigned offer event (tags in the order of protocol §9). */
export function offerTemplate(o: OfferTerms, createdAt: number): EventTemplate {
  return {
    kind: KIND_OFFER,
    created_at: createdAt,
    content: '',
    tags: [
      ['d', o.d],
      ['k', o.side],
      ['s', o.status],
      ['market', o.market],
      ['unit', o.unit],
      ['mint', o.mint],
      ['a', `${KIND_EPOCH}:${o.pool}:${o.market}`],
      ['pm', ...o.satMints],
      ['amount', String(o.amount)],
      ['min', String(o.min)],
      ['price', String(o.price), String(o.lot)],
      ['p', o.exchange],
      ['expiration', String(o.expiration)],
      ['expires_at', String(o.expiration)],
      ['y', 'ehash'],
      ['z', 'order'],
      ['alt', `ehash offer: ${o.side} ${o.amount} ehash of ${o.unit} at ${o.price} sat per ${o.lot}`],
    ],
  };
}

// ---------------------------------------------------------------- trades (38191)

export type TradeState = 'matched' | 'ehash_locked' | 'sats_locked' | 'sats_claimed' | 'settled' | 'failed' | 'refunded';

export interface TradeEvent {
  id: string;
  market: string;
  unit: string;
  mint: string;
  satMint: string;
  amount: number;
  sats: number;
  price: number;
  lot: number;
  state: TradeState;
  seller: string;
  buyer: string;
  makerAddress: string;
  takerAddress: string;
  sellerLockBy: number;
  buyerLockBy: number;
  ehashLocktime: number;
  satsLocktime: number;
  hash?: string;
  preimage?: string;
  reason?: string;
  blame?: string;
  createdAt: number;
}

function num(v: string | undefined, field: string): number {
  if (v === undefined || !/^\d+$/.test(v)) throw new Error(`trade event: ${field} is not a number`);
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`trade event: ${field} is too large`);
  return n;
}

/** Read a trade event (its signature and author are the caller's to check). */
export function parseTrade(ev: Event): TradeEvent {
  if (ev.kind !== KIND_TRADE) throw new Error(`kind ${ev.kind} is not a trade`);
  const role = (r: string) => ev.tags.find((t) => t[0] === 'p' && t[3] === r)?.[1];
  const addr = (r: string) => ev.tags.find((t) => t[0] === 'a' && t[3] === r)?.[1];
  const price = ev.tags.find((t) => t[0] === 'price');
  const deadline = ev.tags.find((t) => t[0] === 'deadline');
  const locktime = ev.tags.find((t) => t[0] === 'locktime');
  const seller = role('seller');
  const buyer = role('buyer');
  if (!seller || !buyer) throw new Error('trade event: missing seller or buyer');
  const t = {
    id: tag(ev, 'd') ?? '',
    market: tag(ev, 'market') ?? '',
    unit: tag(ev, 'unit') ?? '',
    mint: tag(ev, 'mint') ?? '',
    satMint: tag(ev, 'pm') ?? '',
    amount: num(tag(ev, 'amount'), 'amount'),
    sats: num(tag(ev, 'sats'), 'sats'),
    price: num(price?.[1], 'price'),
    lot: num(price?.[2], 'lot'),
    state: (tag(ev, 'state') ?? '') as TradeState,
    seller,
    buyer,
    makerAddress: addr('maker') ?? '',
    takerAddress: addr('taker') ?? '',
    sellerLockBy: num(deadline?.[1], 'deadline'),
    buyerLockBy: num(deadline?.[2], 'deadline'),
    ehashLocktime: num(locktime?.[1], 'locktime'),
    satsLocktime: num(locktime?.[2], 'locktime'),
    hash: tag(ev, 'hash'),
    preimage: tag(ev, 'preimage'),
    reason: tag(ev, 'reason'),
    blame: tag(ev, 'blame'),
    createdAt: ev.created_at,
  };
  // what the Rust reader (protocol::events::Trade::parse) checks as well
  if (!/^[0-9a-f]{32}$/.test(t.id)) throw new Error('trade event: d is not a trade id');
  if (!TRADE_STATES.includes(t.state)) throw new Error(`trade event: state ${t.state} is unknown`);
  if (t.lot <= 0 || t.amount <= 0 || t.amount % t.lot !== 0) throw new Error('trade event: amount is not whole lots');
  if (BigInt(t.amount / t.lot) * BigInt(t.price) !== BigInt(t.sats)) throw new Error(`trade event: ${t.sats} sats is not ${t.amount} ehash at ${t.price} per ${t.lot}`);
  if (!(t.sellerLockBy <= t.buyerLockBy && t.buyerLockBy < t.satsLocktime && t.satsLocktime < t.ehashLocktime)) throw new Error('trade event: deadlines and locktimes out of order');
  return t;
}

const TRADE_STATES: TradeState[] = ['matched', 'ehash_locked', 'sats_locked', 'sats_claimed', 'settled', 'failed', 'refunded'];

// ---------------------------------------------------------------- settlement messages (4190)

export type Body = { type: 'lock'; token: string } | { type: 'preimage'; preimage: string } | { type: 'abort'; reason: string };
export type Message = { v: 1; trade: string } & Body;

/** Encrypt `m` to `to` (NIP-44 v2) and sign it with the offer key; it expires at `expiration`. */
export function messageEvent(m: Message, from: OfferKey, to: string, expiration: number): VerifiedEvent {
  const ck = nip44.v2.utils.getConversationKey(from.sk, to);
  return finalizeEvent(
    {
      kind: KIND_SETTLEMENT,
      created_at: Math.floor(Date.now() / 1000),
      content: nip44.v2.encrypt(JSON.stringify(m), ck),
      tags: [
        ['p', to],
        ['expiration', String(expiration)],
      ],
    },
    from.sk,
  );
}

/** Decrypt and check a message addressed to `me`. */
export function readMessage(ev: Event, me: OfferKey): Message {
  if (!verifyEvent(ev)) throw new Error('bad signature');
  if (tag(ev, 'p') !== me.pubkey) throw new Error('addressed to another key');
  const ck = nip44.v2.utils.getConversationKey(me.sk, ev.pubkey);
  const m = JSON.parse(nip44.v2.decrypt(ev.content, ck)) as Message;
  if (m.v !== 1) throw new Error(`message version ${m.v} (this page speaks 1)`);
  if (typeof m.trade !== 'string' || !/^[0-9a-f]{32}$/.test(m.trade)) throw new Error('trade: a trade id is 32 hex characters');
  if (m.type === 'lock' && (typeof m.token !== 'string' || !m.token.startsWith('cashuB'))) throw new Error('token: not a cashuB token');
  if (m.type === 'preimage' && !/^[0-9a-fA-F]{64}$/.test(m.preimage)) throw new Error('preimage: must be 32 bytes of hex');
  if (!['lock', 'preimage', 'abort'].includes(m.type)) throw new Error(`unknown message type ${String(m.type)}`);
  return m;
}

// ---------------------------------------------------------------- epoch announcements (38180)

export interface EpochCheck {
  event: Event;
  keysetId: string;
  unit: string;
  epoch: number;
  state: string;
  start?: number;
  end?: number;
  issued?: number;
  shares?: number;
  reason?: string;
  block?: string;
  /** Root of the closed epoch's share log (protocol §12). */
  logRoot?: string;
  mint: string;
  keys: Record<string, string>;
  fee: number;
  /** Each check, named, with whether it passed. */
  checks: { name: string; ok: boolean; detail: string }[];
  ok: boolean;
}

/** The message a keyset's owner proof signs (protocol §5, "The owner proof"): the BIP-340 tagged hash, tag `ehash/keyset-owner`, of the keyset id's bytes followed by the announcing pool's 32-byte key. */
export function ownerDigest(keysetId: string, pool: string): Uint8Array {
  const tag = sha256Bytes('ehash/keyset-owner');
  const id = hexToBytes(keysetId);
  const key = hexToBytes(pool);
  const msg = new Uint8Array(64 + id.length + key.length);
  msg.set(tag, 0);
  msg.set(tag, 32);
  msg.set(id, 64);
  msg.set(key, 64 + id.length);
  return sha256Bytes(msg);
}

/** Check the `owner` tag: the keyset's key for its smallest amount signed the event's author, so only the pool that holds the keyset can announce it. */
function ownerCheck(ev: Event, keysetId: string, keys: Record<string, string> | undefined): EpochCheck['checks'][number] {
  const name = 'keyset owner';
  const proof = tag(ev, 'owner');
  if (proof === undefined) return { name, ok: false, detail: 'no owner proof: nothing shows that the keyset\'s mint named this key' };
  const amounts = Object.keys(keys ?? {}).filter((a) => /^[0-9]+$/.test(a));
  const smallest = amounts.sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0))[0];
  const key = smallest === undefined ? undefined : keys?.[smallest];
  if (!isHex(proof, 128) || !key || !isHex(key, 66) || !isHex(keysetId)) return { name, ok: false, detail: 'the owner proof is not a 64-byte signature in hex' };
  let ok = false;
  try {
    ok = schnorr.verify(hexToBytes(proof), ownerDigest(keysetId, ev.pubkey), hexToBytes(key).slice(1));
  } catch {
    ok = false;
  }
  return { name, ok, detail: ok ? 'the keyset itself names the signer as its pool' : 'the owner proof is not the keyset\'s signature of the signer (a copy of another pool\'s announcement?)' };
}

/** Check an epoch announcement: signature, author = the pool's key, `d` = content.id, the keyset id derived from the keys (NUT-02), and the keyset's owner proof. */
export function checkEpoch(ev: Event, pool: string | undefined): EpochCheck {
  const checks: EpochCheck['checks'] = [];
  const sig = verifyEvent(ev);
  checks.push({ name: 'signature', ok: sig, detail: sig ? 'valid BIP-340 signature over the event id' : 'the signature does not verify' });
  if (pool !== undefined) checks.push({ name: 'pool key', ok: ev.pubkey === pool, detail: ev.pubkey === pool ? 'signed by the pool the market names' : `signed by ${ev.pubkey}, the market names ${pool}` });
  let content: { id?: string; unit?: string; keys?: Record<string, string>; input_fee_ppk?: number } = {};
  try {
    content = JSON.parse(ev.content);
  } catch {
    checks.push({ name: 'keyset', ok: false, detail: 'content is not a NUT-01 keyset' });
  }
  const d = tag(ev, 'd') ?? '';
  checks.push({ name: 'keyset id', ok: d === content.id, detail: d === content.id ? '`d` names the keyset in the content' : `d ${d} ≠ content.id ${content.id}` });
  const unit = tag(ev, 'unit') ?? '';
  if (content.keys) {
    let derived = '';
    try {
      derived = d.length === 66 ? deriveKeysetId(content.keys as never, { unit: content.unit ?? unit, input_fee_ppk: content.input_fee_ppk, versionByte: 1 }) : deriveKeysetId(content.keys as never);
    } catch (e) {
      derived = `error: ${(e as Error).message}`;
    }
    checks.push({ name: 'keys', ok: derived === d, detail: derived === d ? 'the id derives from the keys (NUT-02)' : `the keys derive ${derived}` });
  }
  checks.push(ownerCheck(ev, d, content.keys));
  checks.push(stateCheck(ev));
  const n = (k: string) => (tag(ev, k) !== undefined ? Number(tag(ev, k)) : undefined);
  return {
    event: ev,
    keysetId: d,
    unit,
    epoch: n('epoch') ?? 0,
    state: tag(ev, 's') ?? '',
    start: n('start'),
    end: n('end'),
    issued: n('issued'),
    shares: n('shares'),
    reason: tag(ev, 'reason'),
    block: tag(ev, 'block'),
    logRoot: tag(ev, 'log'),
    mint: tag(ev, 'u') ?? '',
    keys: content.keys ?? {},
    fee: content.input_fee_ppk ?? 0,
    checks,
    ok: checks.every((c) => c.ok),
  };
}

const EPOCH_STATES = ['active', 'closed', 'redeemable', 'expired', 'orphaned'];

/** The tags an epoch's state requires (protocol §5, kind 38180): an active epoch has no end; an ended one names its end, issued total, share count and reason; a redeemable or expired one its payout and expiry. */
function stateCheck(ev: Event): EpochCheck['checks'][number] {
  const state = tag(ev, 's') ?? '';
  const has = (k: string) => tag(ev, k) !== undefined;
  let why = '';
  if (!EPOCH_STATES.includes(state)) why = `state ${JSON.stringify(state)} is not ${EPOCH_STATES.join(', ')}`;
  else if (state === 'active') why = has('end') ? 'an active epoch has no end' : '';
  else {
    const needs = ['end', 'issued', 'shares', 'reason', ...(state === 'redeemable' || state === 'expired' ? ['payout', 'expires'] : [])];
    const missing = needs.filter((k) => !has(k));
    if (missing.length) why = `a ${state} epoch names its ${missing.join(', ')}`;
  }
  return { name: 'state', ok: !why, detail: why || `the tags of a ${state} epoch` };
}
