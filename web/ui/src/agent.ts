// The browser's trade agent: the same protocol as the Rust agent (wallet/src/agent, protocol
// §9–10). Offers are signed by a fresh key per offer derived from the wallet seed; trades the
// exchange publishes for those keys are settled with cross-mint HTLC swaps, every step written to
// IndexedDB before the network action it leads to; settlement messages go through an outbox
// that is filled before the step that follows them is saved. A reloaded page resumes every
// trade where it stopped, or refunds it after its locktime.
import { finalizeEvent, verifyEvent } from 'nostr-tools/pure';
import type { SubCloser } from 'nostr-tools/abstract-pool';
import type { ExchangeInfo, MarketSummary } from './api';
import * as cashu from './cashu';
import * as store from './db';
import * as nostr from './nostr';
import * as reserve from './reserve';
import * as rules from './rules';
import * as trust from './trust';
import * as wallet from './wallet';
import { now, randomId, short } from './util';

/** An offer made in this browser. */
export interface OfferRecord extends nostr.OfferTerms {
  index: number;
  pubkey: string;
  createdAt: number;
  eventId: string;
  /** Epoch keyset (from the verified announcement) the ehash side is in. */
  keyset: { id: string; keys: Record<string, string>; fee: number };
  /** Why the agent cancelled the offer by itself (the funds backing it were gone). */
  withdrawn?: string;
}

export type Step = 'matched' | 'locking' | 'locked' | 'claiming' | 'await_refund' | 'refunding' | 'settled' | 'refunded' | 'failed';
const FINAL: Step[] = ['settled', 'refunded', 'failed'];

/** One trade's settlement as this browser sees it. */
export interface TradeRecord {
  id: string;
  role: 'buy' | 'sell';
  offerD: string;
  counterparty: string;
  exchange: string;
  market: string;
  unit: string;
  mint: string;
  satMint: string;
  amount: number;
  sats: number;
  price: number;
  lot: number;
  sellerLockBy: number;
  buyerLockBy: number;
  ehashLocktime: number;
  satsLocktime: number;
  step: Step;
  exchangeState: string;
  /** `created_at` of the trade event version `exchangeState` came from. */
  exchangeAt: number;
  preimage?: string;
  preimageHint?: string;
  hash?: string;
  theirToken?: string;
  theirLock?: cashu.StoredProof[];
  theirAbort?: string;
  myLock?: { token: string; proofs: cashu.StoredProof[] };
  pending?: string;
  note?: string;
  /** Whether my refund's witness carries a dummy 32-byte preimage (after a mint refused an empty one). */
  refundPreimage?: boolean;
  /** Why the counterparty's last lock did not verify. Not final before its deadline: the exchange sends the lock it verified, which may differ. */
  badLock?: string;
  /** The hash of the seller's lock as the exchange judged it (its trade event): a buyer locks only against that one. */
  judgedHash?: string;
  lastPoll: number;
  createdAt: number;
  updatedAt: number;
  log: { at: number; text: string }[];
}

interface OutboxItem {
  id: string;
  event: nostr.Event;
  relays: string[];
  delivered: boolean;
  tries: number;
  lastError?: string;
}

/** Agent settings (as TradeConfig in the Rust agent). */
const CONFIG = { minMarginSecs: 30, maxLockSecs: 7200, claimGuardSecs: 10, lockGuardSecs: 2, graceSecs: 5, offerTtlSecs: 86_400, lookahead: 16, backingCheckSecs: 30 };

type Listener = () => void;

export class Agent {
  private sub: SubCloser | null = null;
  private subKeys = '';
  private listeners = new Set<Listener>();
  private stash = new Map<string, nostr.Event[]>();
  private busy: Promise<void> = Promise.resolve();
  private timer: ReturnType<typeof setInterval> | null = null;
  private keyCache = new Map<string, nostr.OfferKey>();
  private noticeListeners = new Set<(text: string) => void>();
  /** Whether the relays' stored trades and messages have been read and handled since the start: before that, a missing lock is not evidence that none was sent. */
  private caughtUp = false;
  private subGen = 0;
  private lastBackingCheck = 0;

  constructor(
    readonly info: ExchangeInfo,
    readonly relays: string[],
  ) {}

  onChange(f: Listener): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }
  private changed() {
    for (const f of this.listeners) f();
  }

  /** Hear what the agent did by itself that the user must know (an offer withdrawn, funds gone). */
  onNotice(f: (text: string) => void): () => void {
    this.noticeListeners.add(f);
    return () => this.noticeListeners.delete(f);
  }
  private tell(text: string) {
    for (const f of this.noticeListeners) f(text);
  }

  /** Start: resume, subscribe, and step every trade each second. */
  async start(): Promise<void> {
    await this.resubscribe();
    this.timer = setInterval(() => void this.tick(), 1000);
    void this.tick();
  }

  /** Whether a trade is under way (the page should stay open until it settles or refunds). */
  async busyTrades(): Promise<number> {
    return (await this.trades()).filter((t) => !FINAL.includes(t.step)).length;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.sub?.close();
  }

  // ------------------------------------------------------------ offers

  async offers(): Promise<OfferRecord[]> {
    return (await store.all<OfferRecord>('offers')).sort((a, b) => b.createdAt - a.createdAt);
  }

  async trades(): Promise<TradeRecord[]> {
    return (await store.all<TradeRecord>('trades')).sort((a, b) => b.createdAt - a.createdAt);
  }

  /** What is left of an offer (`rules.remaining`, through `reserve.remainingOf`). */
  async remaining(o: OfferRecord): Promise<number> {
    return reserve.remainingOf(o, await this.trades());
  }

  private async keyFor(pubkey: string): Promise<nostr.OfferKey> {
    const k = this.keyCache.get(pubkey);
    if (k) return k;
    const o = (await this.offers()).find((x) => x.pubkey === pubkey);
    if (!o) throw new Error(`no offer key ${pubkey}`);
    const key = await wallet.offerKeyAt(o.index);
    this.keyCache.set(pubkey, key);
    return key;
  }

  /** The checks an order's own fields must pass (market state, whole lots, price, size), before
   * anything else is said about it or asked of the user. Throws the first that fails. */
  checkOrder(m: MarketSummary, req: { amount: number; price: number; min?: number }): void {
    const lot = this.info.lot;
    if (m.state !== 'active' && m.state !== 'closed' && m.state !== 'redeemable') throw new Error(`the market of epoch ${m.epoch} is ${m.state}; it does not trade`);
    if (!Number.isSafeInteger(req.amount) || req.amount <= 0 || req.amount % lot !== 0) throw new Error(`the amount must be a whole number of lots of ${lot} ehash (e.g. ${lot}, ${2 * lot})`);
    const min = req.min ?? lot;
    if (!Number.isSafeInteger(min) || min <= 0 || min % lot !== 0 || min > req.amount) throw new Error(`the minimum fill must be whole lots of ${lot}, at most the amount`);
    if (!Number.isSafeInteger(req.price) || req.price <= 0) throw new Error('the price must be a whole number of sats per lot, above 0');
    const sats = (BigInt(req.amount) / BigInt(lot)) * BigInt(req.price);
    if (sats > 2_100_000_000_000_000n) throw new Error('that offer is worth more than 21 million bitcoin');
  }

  /** Place a new offer. Validates everything a user can get wrong before anything is signed. */
  async place(m: MarketSummary, keyset: OfferRecord['keyset'], req: { side: 'buy' | 'sell'; amount: number; price: number; min?: number; satMints: string[]; ttlSecs?: number }): Promise<OfferRecord> {
    const lot = this.info.lot;
    this.checkOrder(m, req);
    const min = req.min ?? lot;
    const sats = (BigInt(req.amount) / BigInt(lot)) * BigInt(req.price);
    if (req.satMints.length === 0) throw new Error('name at least one sat mint you accept');
    // never an offer settling at a mint the user has not trusted: nothing is published before
    for (const u of req.satMints) await trust.need(u, req.side === 'buy' ? 'where this bid would hold and pay its sats' : 'where this ask would be paid');
    const holds = await reserve.current();
    if (req.side === 'buy') {
      const lockFace = await this.satsNeeded(req.satMints[0], Number(sats));
      const have = await wallet.balance(req.satMints[0], 'sat');
      if (have < lockFace) throw new Error(`a bid of ${Number(sats)} sats needs about ${lockFace} sats at ${req.satMints[0]} (the lock plus fees); the wallet holds ${have}. Deposit sats first.`);
      reserve.checkFree(holds, cashu.normalizeUrl(req.satMints[0]), 'sat', have, lockFace, `a bid of ${Number(sats)} sats`);
    } else {
      const have = await wallet.balance(m.mint_url, m.unit);
      if (have < req.amount) throw new Error(`an ask of ${req.amount} ${m.unit} needs that much ehash plus fees; the wallet holds ${have}`);
      reserve.checkFree(holds, cashu.normalizeUrl(m.mint_url), m.unit, have, req.amount, `an ask of ${req.amount} ${m.unit}`);
    }
    const index = (await store.kvGet<number>('offer_index')) ?? 0;
    const key = await wallet.offerKeyAt(index);
    const created = now();
    const rec: OfferRecord = {
      d: randomId(12),
      side: req.side,
      status: 'pending',
      market: m.market,
      unit: m.unit,
      mint: cashu.normalizeUrl(m.mint_url),
      pool: m.pool,
      satMints: req.satMints.map(cashu.normalizeUrl),
      amount: req.amount,
      min,
      price: req.price,
      lot,
      exchange: this.info.pubkey,
      expiration: created + (req.ttlSecs ?? CONFIG.offerTtlSecs),
      index,
      pubkey: key.pubkey,
      createdAt: created,
      eventId: '',
      keyset,
    };
    const ev = finalizeEvent(nostr.offerTemplate(rec, created), key.sk);
    rec.eventId = ev.id;
    await store.write((b) => {
      b.put('kv', { k: 'offer_index', v: index + 1 });
      b.put('offers', rec);
      b.put('outbox', { id: ev.id, event: ev, relays: this.relays, delivered: false, tries: 0 } satisfies OutboxItem);
    });
    await this.resubscribe();
    await this.flush();
    this.changed();
    return rec;
  }

  /** Sats a bid of `sats` locks (the seller's redemption fee added) plus this swap's input fee, roughly. */
  async satsNeeded(satMint: string, sats: number): Promise<number> {
    const ks = await cashu.activeKeyset(satMint, 'sat');
    return cashu.lockFace(sats, ks.keys, ks.fee) + Math.ceil((ks.fee * 8) / 1000);
  }

  /** Publish a new version of an offer (edit), or its cancellation (`withdrawn`: why the agent cancelled it by itself). */
  async revise(d: string, change: { price?: number; amount?: number; cancel?: boolean; withdrawn?: string }): Promise<void> {
    const o = await store.get<OfferRecord>('offers', d);
    if (!o) throw new Error('unknown offer');
    if (o.status === 'canceled') throw new Error('the offer is already cancelled');
    const next: OfferRecord = { ...o };
    if (change.cancel) next.status = 'canceled';
    if (change.price !== undefined) {
      if (!Number.isSafeInteger(change.price) || change.price <= 0) throw new Error('the price must be a whole number of sats per lot, above 0');
      next.price = change.price;
    }
    if (change.amount !== undefined) {
      if (!Number.isSafeInteger(change.amount) || change.amount <= 0 || change.amount % o.lot !== 0) throw new Error(`the amount must be whole lots of ${o.lot}`);
      next.amount = change.amount;
      next.min = Math.min(next.min, change.amount);
    }
    if (change.withdrawn) next.withdrawn = change.withdrawn;
    if (!change.cancel) {
      // the new version replaces what is left: it must be backed as a new offer would be
      const left = change.amount ?? (await this.remaining(o));
      const [mint, unit, need] = o.side === 'sell' ? [o.mint, o.unit, left] : [o.satMints[0], 'sat', Math.floor(left / o.lot) * next.price];
      reserve.checkFree(await reserve.current(), mint, unit, await wallet.balance(mint, unit), need, `offer ${short(o.d)} at ${left} ehash for ${next.price} sat/lot`, o.d);
    }
    next.createdAt = Math.max(now(), o.createdAt + 1);
    const key = await wallet.offerKeyAt(o.index);
    const ev = finalizeEvent(nostr.offerTemplate(next, next.createdAt), key.sk);
    next.eventId = ev.id;
    await store.write((b) => {
      b.put('offers', next);
      b.put('outbox', { id: ev.id, event: ev, relays: this.relays, delivered: false, tries: 0 } satisfies OutboxItem);
    });
    await this.flush();
    this.changed();
  }

  // ------------------------------------------------------------ relays

  /** Subscribe to trades and messages for every offer key and the next ones. */
  private async resubscribe(): Promise<void> {
    const offers = await this.offers();
    const next = (await store.kvGet<number>('offer_index')) ?? 0;
    const keys = new Set(offers.map((o) => o.pubkey));
    for (let i = next; i < next + CONFIG.lookahead; i++) keys.add((await wallet.offerKeyAt(i)).pubkey);
    const list = [...keys].sort();
    const sig = list.join(',');
    if (sig === this.subKeys && this.sub) return;
    this.subKeys = sig;
    this.sub?.close();
    const since = now() - 7 * 86_400;
    // caught up once both subscriptions have read what the relays store (EOSE, or a relay
    // failing) and every event read before it has been handled (the queue runs in order)
    const gen = ++this.subGen;
    let eoses = 0;
    const oneose = () => {
      if (++eoses === 2 && gen === this.subGen && !this.caughtUp) void this.queue(async () => void (this.caughtUp = true));
    };
    const subs = [
      nostr.pool.subscribeMany(this.relays, { kinds: [nostr.KIND_TRADE], authors: [this.info.pubkey], '#p': list }, { onevent: (e) => this.queue(() => this.onTrade(e)), oneose }),
      nostr.pool.subscribeMany(this.relays, { kinds: [nostr.KIND_SETTLEMENT], '#p': list, since }, { onevent: (e) => this.queue(() => this.onMessage(e)), oneose }),
    ];
    this.sub = { close: () => subs.forEach((s) => s.close()) };
  }

  /** Run `f` after everything queued before it (one step at a time, as the Rust agent's lock). */
  private queue(f: () => Promise<void>): Promise<void> {
    this.busy = this.busy.then(f).catch((e) => console.warn('agent', e));
    return this.busy;
  }

  private async onTrade(ev: nostr.Event): Promise<void> {
    if (ev.pubkey !== this.info.pubkey || !verifyEvent(ev)) return;
    let tr: nostr.TradeEvent;
    try {
      tr = nostr.parseTrade(ev);
    } catch (e) {
      console.warn('malformed trade', e);
      return;
    }
    const offers = await this.offers();
    const mine = offers.find((o) => o.pubkey === tr.seller) ?? offers.find((o) => o.pubkey === tr.buyer);
    if (!mine) return;
    const role: 'sell' | 'buy' = mine.pubkey === tr.seller ? 'sell' : 'buy';
    const old = await store.get<TradeRecord>('trades', tr.id);
    if (old) {
      if (ev.created_at >= (old.exchangeAt ?? 0)) {
        old.exchangeState = tr.state;
        old.exchangeAt = ev.created_at;
      }
      if (!old.judgedHash && tr.hash) old.judgedHash = tr.hash;
      if (old.role === 'buy' && !old.preimage && tr.preimage) old.preimageHint = tr.preimage;
      if (tr.state === 'failed' && old.step === 'matched') {
        // nothing of mine is locked, and the exchange does not go on with the trade
        await this.fail(old, old.badLock ? `the counterparty's lock is not acceptable: ${old.badLock}` : `the exchange ended the trade: ${tr.reason ?? 'no reason given'}`, false);
        return;
      }
      await this.save(old);
      await this.step(old);
      return;
    }
    const t: TradeRecord = {
      id: tr.id,
      role,
      offerD: mine.d,
      counterparty: role === 'sell' ? tr.buyer : tr.seller,
      exchange: this.info.pubkey,
      market: tr.market,
      unit: tr.unit,
      mint: cashu.normalizeUrl(tr.mint),
      satMint: cashu.normalizeUrl(tr.satMint),
      amount: tr.amount,
      sats: tr.sats,
      price: tr.price,
      lot: tr.lot,
      sellerLockBy: tr.sellerLockBy,
      buyerLockBy: tr.buyerLockBy,
      ehashLocktime: tr.ehashLocktime,
      satsLocktime: tr.satsLocktime,
      step: 'matched',
      exchangeState: tr.state,
      exchangeAt: ev.created_at,
      preimageHint: tr.preimage,
      judgedHash: tr.hash,
      lastPoll: 0,
      createdAt: ev.created_at,
      updatedAt: now(),
      log: [{ at: now(), text: `matched: ${role === 'buy' ? 'buy' : 'sell'} ${tr.amount} ehash for ${tr.sats} sats` }],
    };
    const problem = await this.checkTrade(mine, role, tr);
    if (problem) {
      t.step = 'failed';
      t.note = `refused: ${problem}`;
      // the abort is queued before the refusal is saved
      if (tr.state === 'matched' || tr.state === 'ehash_locked') await this.send(t, { type: 'abort', reason: problem.slice(0, 300) });
      await this.save(t);
      return;
    }
    await this.save(t);
    for (const m of this.stash.get(t.id) ?? []) await this.applyMessage(t, m);
    this.stash.delete(t.id);
    await this.save(t);
    await this.step(t);
  }

  private async checkTrade(o: OfferRecord, role: 'buy' | 'sell', tr: nostr.TradeEvent): Promise<string | null> {
    if (role !== o.side) return `the offer is a ${o.side} offer`;
    if (tr.market !== o.market || tr.unit.toLowerCase() !== o.unit.toLowerCase() || cashu.normalizeUrl(tr.mint) !== o.mint) return 'the trade is in another market';
    if (!o.satMints.includes(cashu.normalizeUrl(tr.satMint))) return `the offer does not accept the sat mint ${tr.satMint}`;
    if (!(await trust.isTrusted(tr.satMint))) return `the trade settles at the sat mint ${tr.satMint}, which this wallet does not trust`;
    const rate = (p: number, lot: number) => BigInt(p) * BigInt(o.lot) * 1n - BigInt(o.price) * BigInt(lot);
    const cmp = rate(tr.price, tr.lot);
    if (role === 'sell' ? cmp < 0n : cmp > 0n) return `the price ${tr.price} is worse than the offer's ${o.price}`;
    const remaining = await this.remaining(o);
    if (tr.amount > remaining) return `${tr.amount} ehash is more than the ${remaining} left of the offer`;
    if (tr.amount < Math.min(o.min, remaining)) return `${tr.amount} ehash is less than the offer's minimum fill ${o.min}`;
    const fresh = role === 'sell' ? tr.state === 'matched' : tr.state === 'matched' || tr.state === 'ehash_locked';
    if (!fresh) return `the trade was already ${tr.state} when this agent first saw it`;
    return rules.timesRefusal(tr, role, now(), CONFIG.minMarginSecs, CONFIG.maxLockSecs);
  }

  private async onMessage(ev: nostr.Event): Promise<void> {
    const to = nostr.tag(ev, 'p');
    if (!to) return;
    let key;
    try {
      key = await this.keyFor(to);
    } catch {
      return;
    }
    let m: nostr.Message;
    try {
      m = nostr.readMessage(ev, key);
    } catch (e) {
      console.warn('unreadable settlement message', e);
      return;
    }
    const t = await store.get<TradeRecord>('trades', m.trade);
    if (!t) {
      this.stash.set(m.trade, [...(this.stash.get(m.trade) ?? []), ev]);
      return;
    }
    if (await this.applyMessage(t, ev)) {
      await this.save(t);
      await this.step(t);
    }
  }

  private async applyMessage(t: TradeRecord, ev: nostr.Event): Promise<boolean> {
    // the counterparty's messages, and the exchange's copy of a lock it verified (a sender
    // cannot show the exchange one lock and us another, or none); every lock is verified here
    // before anything depends on it
    const fromExchange = ev.pubkey === t.exchange;
    if (ev.pubkey !== t.counterparty && !fromExchange) return false;
    const o = await store.get<OfferRecord>('offers', t.offerD);
    if (!o) return false;
    let m: nostr.Message;
    try {
      m = nostr.readMessage(ev, await this.keyFor(o.pubkey));
    } catch {
      return false;
    }
    if (m.trade !== t.id) return false;
    // the exchange's copy replaces another lock until one is used (verified and answered or claimed)
    if (m.type === 'lock' && !t.theirLock && (!t.theirToken || (fromExchange && t.theirToken !== m.token))) {
      t.theirToken = m.token;
      this.log(t, fromExchange ? 'received the counterparty’s lock as the exchange verified it' : 'received the counterparty’s lock');
    } else if (fromExchange) return false;
    else if (m.type === 'preimage' && !t.preimage) {
      t.preimageHint = m.preimage;
      this.log(t, 'received the preimage');
    } else if (m.type === 'abort' && !t.theirAbort) {
      t.theirAbort = m.reason;
      this.log(t, `the counterparty aborted: ${m.reason}`);
    } else return false;
    return true;
  }

  // ------------------------------------------------------------ outbox

  private async send(t: TradeRecord, body: nostr.Body): Promise<void> {
    const o = await store.get<OfferRecord>('offers', t.offerD);
    if (!o) throw new Error(`trade ${t.id} names an unknown offer`);
    const key = await this.keyFor(o.pubkey);
    const m = { v: 1, trade: t.id, ...body } as nostr.Message;
    const items = [t.counterparty, t.exchange].map((to) => {
      const ev = nostr.messageEvent(m, key, to, t.ehashLocktime + 86_400);
      return { id: ev.id, event: ev, relays: this.relays, delivered: false, tries: 0 } satisfies OutboxItem;
    });
    await store.write((b) => items.forEach((i) => b.put('outbox', i)));
    void this.flush();
  }

  private flushing = false;
  /** Deliver what the outbox holds; an event counts once a relay accepted it. */
  async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (const item of await store.all<OutboxItem>('outbox')) {
        if (item.delivered) continue;
        try {
          await nostr.publish(item.relays, item.event);
          await store.write((b) => b.put('outbox', { ...item, delivered: true }));
        } catch (e) {
          await store.write((b) => b.put('outbox', { ...item, tries: item.tries + 1, lastError: (e as Error).message }));
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Undelivered events (shown to the user). */
  async undelivered(): Promise<OutboxItem[]> {
    return (await store.all<OutboxItem>('outbox')).filter((i) => !i.delivered);
  }

  // ------------------------------------------------------------ the state machine

  private ticking = false;
  private async tick(): Promise<void> {
    void this.flush();
    if (this.ticking) return;
    this.ticking = true;
    try {
      await this.queue(async () => {
        await this.resubscribe();
        for (const t of await this.trades()) if (!FINAL.includes(t.step)) await this.step(t);
        if (now() >= this.lastBackingCheck + CONFIG.backingCheckSecs) {
          this.lastBackingCheck = now();
          await this.checkBacking();
        }
      });
    } finally {
      this.ticking = false;
    }
  }

  /**
   * Ask the mints (NUT-07) whether the proofs backing open offers are still unspent: another
   * device with the same recovery words may have spent them. Spent proofs leave the wallet, and
   * offers no longer backed are withdrawn (newest first) before they can be matched again.
   */
  private async checkBacking(): Promise<void> {
    const holds = await reserve.current();
    const places = new Map(holds.map((x) => [`${x.mint} ${x.unit}`, { mint: x.mint, unit: x.unit }]));
    for (const { mint, unit } of places.values()) {
      const proofs = await cashu.unspent(mint, unit);
      let states;
      try {
        states = proofs.length ? await cashu.checkStates(mint, proofs) : [];
      } catch {
        continue; // the mint is asked again next round
      }
      const spent = new Set(proofs.filter((_, i) => states[i]?.state === 'SPENT').map((p) => p.secret));
      if (spent.size) {
        let gone = 0;
        // only proofs still unspent here: one this page spent meanwhile is its operation's
        await cashu.exclusive(async () => {
          const still = (await cashu.unspent(mint, unit)).filter((p) => spent.has(p.secret));
          gone = still.reduce((s, p) => s + p.amount, 0);
          await store.write((b) => still.forEach((p) => b.del('proofs', p.secret)));
        });
        if (gone) {
          wallet.changed();
          this.tell(`${gone} ${unit} at ${mint} were spent elsewhere (another device with this wallet's recovery words?) and left the wallet.`);
        }
      }
      const have = await wallet.balance(mint, unit);
      const mine = reserve.holdsAt(await reserve.current(), mint, unit);
      let held = mine.reduce((s, x) => s + x.amount, 0);
      const offers = (await this.offers()).filter((o) => mine.some((x) => x.offer === o.d && !x.trade));
      for (const o of offers) {
        if (held <= have) break;
        held -= mine.filter((x) => x.offer === o.d && !x.trade).reduce((s, x) => s + x.amount, 0);
        await this.withdraw(o.d, `the wallet holds ${have} ${unit} at ${mint}, less than its open offers need`);
      }
    }
  }

  private log(t: TradeRecord, text: string) {
    t.log = [...(t.log ?? []), { at: now(), text }].slice(-30);
  }

  private async save(t: TradeRecord, also?: (b: store.Batch) => void): Promise<void> {
    t.updatedAt = now();
    await store.write((b) => {
      b.put('trades', t);
      also?.(b);
    });
    this.changed();
  }

  /** Move a trade as far as it can go now. */
  async step(t: TradeRecord): Promise<void> {
    for (let i = 0; i < 16; i++) {
      if (FINAL.includes(t.step)) return;
      let go = false;
      try {
        go = await this.transition(t);
      } catch (e) {
        if (e instanceof cashu.Unreachable) {
          t.note = `waiting: ${e.message}`;
          await this.save(t);
          return;
        }
        throw e;
      }
      if (!go) return;
    }
  }

  private async transition(t: TradeRecord): Promise<boolean> {
    switch (t.step) {
      case 'matched':
        return t.role === 'sell' ? this.sellerLock(t) : this.buyerLock(t);
      case 'locking':
        return this.finishLock(t);
      case 'locked':
        return t.role === 'sell' ? this.sellerClaim(t) : this.buyerWait(t);
      case 'claiming':
        return this.finishClaim(t);
      case 'await_refund':
        return this.refund(t);
      case 'refunding':
        return this.finishRefund(t);
      default:
        return false;
    }
  }

  /** End the trade (nothing of mine locked, or nothing left to do); `also` joins the same write. */
  private async fail(t: TradeRecord, why: string, tell: boolean, also?: (b: store.Batch) => void): Promise<boolean> {
    // queued before the step is saved: a reload in between sends it again (at least once)
    if (tell) await this.send(t, { type: 'abort', reason: why.slice(0, 300) });
    t.step = 'failed';
    t.note = why;
    t.pending = undefined;
    this.log(t, `failed: ${why}`);
    await this.save(t, also);
    return true;
  }

  /** Stop; my lock comes back after its locktime. */
  private async giveUp(t: TradeRecord, why: string, tell: boolean, also?: (b: store.Batch) => void): Promise<boolean> {
    if (tell) await this.send(t, { type: 'abort', reason: why.slice(0, 300) });
    t.step = 'await_refund';
    t.note = why;
    t.pending = undefined;
    this.log(t, `giving up (${why}); my lock comes back after its locktime`);
    await this.save(t, also);
    return true;
  }

  /** The counterparty's lock does not verify: remember why and drop it, so the lock the exchange verified (its copy) can take its place; the deadline decides. */
  private async badLock(t: TradeRecord, why: string): Promise<boolean> {
    t.badLock = why;
    t.note = `the counterparty's lock is not acceptable: ${why}; waiting for the exchange's copy until the deadline`;
    t.theirToken = undefined;
    this.log(t, t.note);
    await this.save(t);
    return false;
  }

  private myLockKey(o: OfferRecord): string {
    return nostr.lockKey(o.pubkey);
  }

  private async offerOf(t: TradeRecord): Promise<OfferRecord> {
    const o = await store.get<OfferRecord>('offers', t.offerD);
    if (!o) throw new Error(`trade ${t.id} names an unknown offer`);
    return o;
  }

  /** The terms the counterparty's lock must meet. */
  private async theirTerms(t: TradeRecord, refresh = false): Promise<cashu.LockTerms> {
    const o = await this.offerOf(t);
    if (t.role === 'sell') {
      const sets = (await cashu.keysets(t.satMint, refresh)).filter((k) => k.unit === 'sat');
      const keysets = new Map<string, { keys: Record<string, string>; fee: number }>();
      for (const k of sets) keysets.set(k.id, { keys: await cashu.keysOf(t.satMint, k.id), fee: k.fee });
      return { mint: t.satMint, unit: 'sat', keysets, hash: t.hash, locktime: t.satsLocktime, receiver: this.myLockKey(o), maker: nostr.lockKey(t.counterparty), amount: t.sats };
    }
    return {
      mint: t.mint,
      unit: t.unit,
      keysets: new Map([[o.keyset.id, { keys: o.keyset.keys, fee: o.keyset.fee }]]),
      locktime: t.ehashLocktime,
      receiver: this.myLockKey(o),
      maker: nostr.lockKey(t.counterparty),
      amount: t.amount,
    };
  }

  /** Build my lock: reserve inputs, HTLC outputs worth `net` plus the receiver's fee, change. */
  private async prepareLock(t: TradeRecord, net: number, spec: cashu.LockSpec): Promise<cashu.Op> {
    const [mint, unit] = t.role === 'sell' ? [t.mint, t.unit] : [t.satMint, 'sat'];
    const o = await this.offerOf(t);
    const ks = t.role === 'sell' ? { ...o.keyset, active: true, unit } : await cashu.activeKeyset(mint, unit);
    if (t.role === 'sell') cashu.knowKeys(mint, ks.id, ks.keys);
    const face = cashu.lockFace(net, ks.keys, ks.fee);
    const { inputs, fee, total } = await cashu.select(mint, unit, face);
    const lock = cashu.htlcOutputs(face, ks, spec);
    const change = cashu.randomOutputs(total - fee - face, ks);
    return cashu.newOp({ kind: 'swap', mint, unit, keysetId: ks.id, inputs, outputs: [...lock, ...change], give: lock.length, purpose: `lock for trade ${t.id}`, owner: `trade:${t.id}` });
  }

  /** Refuse to lock anything against a sat mint the user does not trust (they may have removed it since the offer). */
  private async untrustedSatMint(t: TradeRecord): Promise<boolean> {
    if (await trust.isTrusted(t.satMint)) return false;
    await this.fail(t, `the trade settles at the sat mint ${t.satMint}, which this wallet does not trust; nothing was locked`, true);
    return true;
  }

  /** My lock cannot be paid for: the funds backing the offer are gone. End the trade and withdraw the offer before it is matched again. */
  private async unbacked(t: TradeRecord, e: cashu.Insufficient): Promise<boolean> {
    const what = t.role === 'sell' ? 'ehash' : 'sats';
    await this.fail(t, `cannot lock the ${what}: ${e.message}`, true);
    await this.withdraw(t.offerD, `the ${what} backing it are no longer in the wallet (${e.message})`);
    return true;
  }

  /** Cancel an open offer on the relays because the agent cannot honour it, and tell the user. */
  private async withdraw(d: string, why: string): Promise<void> {
    const o = await store.get<OfferRecord>('offers', d);
    if (!o || o.status !== 'pending') return;
    await this.revise(d, { cancel: true, withdrawn: why });
    this.tell(`Your offer to ${o.side} ${o.amount} ehash at ${o.price} sat/lot (offer ${short(d)}) was withdrawn: ${why}.`);
  }

  private async sellerLock(t: TradeRecord): Promise<boolean> {
    if (t.theirAbort) return this.fail(t, `the buyer aborted before anything was locked: ${t.theirAbort}`, false);
    if (now() + CONFIG.lockGuardSecs >= t.sellerLockBy) return this.fail(t, "too late to lock before the seller's deadline", true);
    if (await this.untrustedSatMint(t)) return true;
    const o = await this.offerOf(t);
    const { preimage, hash } = cashu.newPreimage();
    try {
      await cashu.exclusive(async () => {
        const op = await this.prepareLock(t, t.amount, { hash, receiver: nostr.lockKey(t.counterparty), maker: this.myLockKey(o), locktime: t.ehashLocktime });
        // the preimage is written with the lock, before the lock is sent
        t.preimage = preimage;
        t.hash = hash;
        t.pending = op.id;
        t.step = 'locking';
        this.log(t, 'locking the ehash');
        await cashu.saveOp(op, (b) => b.put('trades', { ...t, updatedAt: now() }));
      });
    } catch (e) {
      if (e instanceof cashu.Insufficient) return this.unbacked(t, e);
      if (e instanceof cashu.Refused) return this.fail(t, `cannot lock the ehash: ${e.message}`, true);
      throw e;
    }
    this.changed();
    return true;
  }

  private async buyerLock(t: TradeRecord): Promise<boolean> {
    if (t.theirAbort) return this.fail(t, `the seller aborted before anything was locked: ${t.theirAbort}`, false);
    if (!t.theirToken) {
      // judged only once the relays' stored messages are read (after a reload the lock may be
      // there), or once no lock could help any more
      const n = now();
      if (n > t.sellerLockBy + CONFIG.graceSecs && (this.caughtUp || n + CONFIG.lockGuardSecs >= t.buyerLockBy)) {
        return t.badLock ? this.fail(t, `the seller's lock is not acceptable: ${t.badLock}`, true) : this.fail(t, 'the seller did not lock by its deadline', false);
      }
      return false;
    }
    if (now() + CONFIG.lockGuardSecs >= t.buyerLockBy) return this.fail(t, "the seller's lock came too late for the buyer to lock before its deadline", true);
    if (await this.untrustedSatMint(t)) return true;
    // lock only against the lock the exchange judged (its trade event names the hash): one the
    // seller showed only us would leave our lock unmatched there, and the blame with us
    const judged = t.judgedHash;
    if (!judged) return false;
    let lock;
    try {
      lock = await cashu.verifyLock(t.theirToken, await this.theirTerms(t));
    } catch (e) {
      if (e instanceof cashu.LockError) return this.badLock(t, e.message);
      throw e;
    }
    if (judged.toLowerCase() !== lock.hash.toLowerCase()) return this.badLock(t, 'hash: not the lock the exchange verified');
    this.log(t, 'verified the seller’s ehash lock');
    const o = await this.offerOf(t);
    t.hash = lock.hash;
    t.theirLock = lock.proofs;
    try {
      await cashu.exclusive(async () => {
        const op = await this.prepareLock(t, t.sats, { hash: lock.hash, receiver: nostr.lockKey(t.counterparty), maker: this.myLockKey(o), locktime: t.satsLocktime });
        t.pending = op.id;
        t.step = 'locking';
        this.log(t, 'locking the sats');
        await cashu.saveOp(op, (b) => b.put('trades', { ...t, updatedAt: now() }));
      });
    } catch (e) {
      if (e instanceof cashu.Insufficient) return this.unbacked(t, e);
      if (e instanceof cashu.Refused) return this.fail(t, `cannot lock the sats: ${e.message}`, true);
      throw e;
    }
    this.changed();
    return true;
  }

  private async pendingOp(t: TradeRecord): Promise<cashu.Op | undefined> {
    return t.pending ? store.get<cashu.Op>('ops', t.pending) : undefined;
  }

  private async finishLock(t: TradeRecord): Promise<boolean> {
    const op = await this.pendingOp(t);
    if (!op) return this.fail(t, 'lost the lock swap', false);
    let proofs;
    try {
      proofs = await cashu.execute(op);
    } catch (e) {
      if (e instanceof cashu.Refused) {
        await store.write((b) => cashu.releaseOp(b, op, e.spent));
        wallet.changed();
        return this.fail(t, `the mint refused the lock: ${e.conflict ? 'its inputs were spent elsewhere' : e.message}`, true);
      }
      throw e;
    }
    const token = cashu.encodeToken(op.mint, op.unit, proofs.slice(0, op.give));
    // the message is queued before the step is saved (receivers keep the first copy)
    await this.send(t, { type: 'lock', token });
    let locked: cashu.StoredProof[] = [];
    t.pending = undefined;
    t.step = 'locked';
    this.log(t, t.role === 'sell' ? 'ehash locked; waiting for the buyer’s sats lock' : 'sats locked; waiting for the seller to claim');
    await store.write((b) => {
      locked = cashu.finishOp(b, op, proofs);
      t.myLock = { token, proofs: locked };
      b.put('trades', { ...t, updatedAt: now() });
    });
    t.myLock = { token, proofs: locked };
    wallet.changed();
    this.changed();
    return true;
  }

  private async sellerClaim(t: TradeRecord): Promise<boolean> {
    if (t.theirAbort) return this.giveUp(t, `the buyer aborted: ${t.theirAbort}`, false);
    if (!t.theirToken) {
      // judged only once the relays' stored messages are read (after a reload the lock may be
      // there), or once it is too late to claim anyway
      const n = now();
      if (n > t.buyerLockBy + CONFIG.graceSecs && (this.caughtUp || n + CONFIG.claimGuardSecs >= t.satsLocktime)) {
        return t.badLock ? this.giveUp(t, `the buyer's lock is not acceptable: ${t.badLock}`, true) : this.giveUp(t, 'the buyer did not lock by its deadline', false);
      }
      return false;
    }
    if (now() + CONFIG.claimGuardSecs >= t.satsLocktime) return this.giveUp(t, "too late to check and claim the buyer's lock safely before its locktime", true);
    let lock;
    try {
      lock = await cashu.verifyLock(t.theirToken, await this.theirTerms(t));
    } catch (e) {
      if (e instanceof cashu.LockError && e.message.startsWith('keyset:')) {
        try {
          lock = await cashu.verifyLock(t.theirToken, await this.theirTerms(t, true));
        } catch (e2) {
          if (e2 instanceof cashu.LockError) return this.badLock(t, e2.message);
          throw e2;
        }
      } else if (e instanceof cashu.LockError) return this.badLock(t, e.message);
      else throw e;
    }
    const o = await this.offerOf(t);
    const key = await this.keyFor(o.pubkey);
    t.theirLock = lock.proofs;
    this.log(t, 'verified the buyer’s sats lock; claiming it');
    return this.startClaim(t, cashu.claimWitness(lock.proofs, t.preimage!, key.sk), t.satMint, 'sat');
  }

  private async startClaim(t: TradeRecord, inputs: cashu.StoredProof[], mint: string, unit: string): Promise<boolean> {
    const o = await this.offerOf(t);
    const ks = unit === 'sat' ? await cashu.activeKeyset(mint, unit) : { ...o.keyset };
    if (unit !== 'sat') cashu.knowKeys(mint, ks.id, ks.keys);
    const total = inputs.reduce((s, p) => s + p.amount, 0);
    const fee = await cashu.inputFee(mint, inputs);
    if (total <= fee) {
      const why = `the lock (${total}) does not cover the mint's fee (${fee})`;
      return t.role === 'sell' ? this.giveUp(t, why, true) : this.fail(t, why, false);
    }
    const op = cashu.newOp({ kind: 'swap', mint, unit, keysetId: ks.id, inputs: inputs.map((p) => ({ ...p, state: undefined as never })), outputs: cashu.randomOutputs(total - fee, ks), give: 0, purpose: `claim for trade ${t.id}`, owner: `trade:${t.id}` });
    t.pending = op.id;
    t.step = 'claiming';
    await cashu.saveOp(op, (b) => b.put('trades', { ...t, updatedAt: now() }));
    this.changed();
    return true;
  }

  private async buyerWait(t: TradeRecord): Promise<boolean> {
    const hash = t.hash ?? '';
    if (t.preimageHint) {
      if (/^[0-9a-fA-F]{64}$/.test(t.preimageHint) && cashu.hashOf(t.preimageHint) === hash.toLowerCase()) return this.buyerClaim(t, t.preimageHint.toLowerCase());
      t.preimageHint = undefined;
    }
    const n = now();
    const past = n > t.satsLocktime + 1;
    if (n < t.lastPoll + 2 && !past) return false;
    t.lastPoll = n;
    if (!t.myLock) return this.fail(t, 'lost my lock', false);
    const s = await cashu.spendOf(t.satMint, t.myLock.proofs, hash);
    if (s.kind === 'claimed') return this.buyerClaim(t, s.preimage);
    if (s.kind === 'refunded') {
      t.step = 'refunded';
      await this.save(t);
      return true;
    }
    if (past) return this.startRefund(t);
    return false;
  }

  private async buyerClaim(t: TradeRecord, preimage: string): Promise<boolean> {
    if (!t.theirLock) return this.fail(t, "lost the seller's lock", false);
    const o = await this.offerOf(t);
    const key = await this.keyFor(o.pubkey);
    t.preimage = preimage;
    this.log(t, 'the seller claimed the sats; claiming the ehash with the preimage');
    return this.startClaim(t, cashu.claimWitness(t.theirLock, preimage, key.sk), t.mint, t.unit);
  }

  private async finishClaim(t: TradeRecord): Promise<boolean> {
    const op = await this.pendingOp(t);
    if (!op) return this.fail(t, 'lost the claim swap', false);
    const drop = (b: store.Batch) => b.del('ops', op.id);
    // the seller never claims after T2 − guard (§10): an unsent claim is dropped then
    if (t.role === 'sell' && now() + CONFIG.claimGuardSecs >= t.satsLocktime) {
      const states = await cashu.checkStates(op.mint, op.inputs);
      if (states.every((x) => x.state === 'UNSPENT')) return this.giveUp(t, 'too late to claim the sats safely before their locktime', true, drop);
    }
    let proofs;
    try {
      proofs = await cashu.execute(op);
    } catch (e) {
      if (e instanceof cashu.Refused) {
        t.pending = undefined;
        if (t.role === 'sell') return this.giveUp(t, `could not claim the sats: ${e.message}`, false, drop);
        if (now() > t.ehashLocktime) return this.fail(t, `could not claim the ehash before its locktime: ${e.message}`, false, drop);
        t.step = 'locked';
        t.note = `claim refused (${e.message}); retrying until the locktime`;
        await this.save(t, drop);
        return false;
      }
      throw e;
    }
    if (t.role === 'sell' && t.preimage) await this.send(t, { type: 'preimage', preimage: t.preimage });
    t.pending = undefined;
    t.step = 'settled';
    t.note = undefined;
    this.log(t, t.role === 'sell' ? `settled: received ${proofs.reduce((s, p) => s + p.amount, 0)} sats` : `settled: received ${proofs.reduce((s, p) => s + p.amount, 0)} ehash`);
    await store.write((b) => {
      cashu.finishOp(b, op, proofs);
      b.put('trades', { ...t, updatedAt: now() });
    });
    wallet.changed();
    this.changed();
    return true;
  }

  private async refund(t: TradeRecord): Promise<boolean> {
    if (!t.myLock) return this.fail(t, t.note ?? 'nothing was locked', false);
    const locktime = t.role === 'sell' ? t.ehashLocktime : t.satsLocktime;
    if (now() <= locktime + 1) return false;
    const [mint] = t.role === 'sell' ? [t.mint] : [t.satMint];
    const s = await cashu.spendOf(mint, t.myLock.proofs, t.hash ?? '');
    if (s.kind === 'unspent') return this.startRefund(t);
    if (s.kind === 'refunded') {
      t.step = 'refunded';
      await this.save(t);
      return true;
    }
    if (t.role === 'buy') return this.buyerClaim(t, s.preimage);
    return this.fail(t, 'the buyer claimed the ehash lock after the seller gave up', false);
  }

  private async startRefund(t: TradeRecord): Promise<boolean> {
    if (!t.myLock) return this.fail(t, 'nothing to refund', false);
    const o = await this.offerOf(t);
    const key = await this.keyFor(o.pubkey);
    const [mint, unit] = t.role === 'sell' ? [t.mint, t.unit] : [t.satMint, 'sat'];
    const inputs = cashu.refundWitness(t.myLock.proofs, key.sk, t.refundPreimage ?? false).map((p) => ({ ...p, state: undefined as never }));
    const ks = unit === 'sat' ? await cashu.activeKeyset(mint, unit) : { ...o.keyset };
    const total = inputs.reduce((s, p) => s + p.amount, 0);
    const fee = await cashu.inputFee(mint, inputs);
    const op = cashu.newOp({ kind: 'swap', mint, unit, keysetId: ks.id, inputs, outputs: cashu.randomOutputs(total - fee, ks), give: 0, purpose: `refund for trade ${t.id}`, owner: `trade:${t.id}` });
    t.pending = op.id;
    t.step = 'refunding';
    this.log(t, 'the locktime passed: taking my lock back');
    await cashu.saveOp(op, (b) => b.put('trades', { ...t, updatedAt: now() }));
    this.changed();
    return true;
  }

  private async finishRefund(t: TradeRecord): Promise<boolean> {
    const op = await this.pendingOp(t);
    if (!op) return this.fail(t, 'lost the refund swap', false);
    let proofs;
    try {
      proofs = await cashu.execute(op);
    } catch (e) {
      if (e instanceof cashu.Refused) {
        if (!e.conflict) {
          // the inputs are unspent and the mint said no: say why, and try the other witness form
          const next = t.refundPreimage ? 'an empty preimage' : 'a dummy preimage';
          t.note = `the mint refused the refund: ${e.message}; retrying with ${next} in the witness`;
          t.refundPreimage = !t.refundPreimage;
          this.log(t, t.note);
        }
        // else spent already (claimed by the other side at the last moment, or refunded)
        t.step = 'await_refund';
        t.pending = undefined;
        await this.save(t, (b) => b.del('ops', op.id));
        return false;
      }
      throw e;
    }
    t.pending = undefined;
    t.step = 'refunded';
    this.log(t, `refunded: ${proofs.reduce((s, p) => s + p.amount, 0)} ${op.unit} back in the wallet`);
    await store.write((b) => {
      cashu.finishOp(b, op, proofs);
      b.put('trades', { ...t, updatedAt: now() });
    });
    wallet.changed();
    this.changed();
    return true;
  }
}
