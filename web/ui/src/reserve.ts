// What open offers hold back in the wallet: an offer must be backed by the funds it offers, so
// the ehash of an open ask and the sats of an open bid (at its first sat mint) are reserved for
// it, and so is every trade that has not locked its side yet. Sending a token, or placing an
// offer that would use reserved funds, is refused, naming the offers that hold them.
import type { OfferRecord, TradeRecord } from './agent';
import * as store from './db';
import * as rules from './rules';
import { now, short } from './util';

/** Funds one offer (or one of its trades not yet locked) holds back. */
export interface Hold {
  /** The offer (`d`) the funds back. */
  offer: string;
  /** The trade, when this is a trade of the offer not locked yet (not the offer's own remainder). */
  trade?: string;
  mint: string;
  unit: string;
  amount: number;
  /** For people: "sell 8 ehash at 100 sat/lot (offer 1a2b3c4d…)". */
  what: string;
}

/** What is left of an offer (`rules.remaining`, the shared rule of protocol/vectors/remaining.json): its amount less every trade of it, except one that failed before I locked anything. */
export function remainingOf(o: OfferRecord, trades: TradeRecord[]): number {
  const ts = trades.filter((t) => t.offerD === o.d);
  return rules.remaining(o.amount, ts.map((t) => ({ amount: t.amount, step: t.step, locked: !!t.myLock })));
}

/** Whether an offer is open at `at`: not cancelled, not expired, something left. */
export function isOpen(o: OfferRecord, trades: TradeRecord[], at: number): boolean {
  return o.status === 'pending' && o.expiration > at && remainingOf(o, trades) > 0;
}

/** Sats a fill of `amount` ehash costs at the offer's price (amounts are whole lots). */
function satsOf(o: OfferRecord, amount: number): number {
  return Math.floor(amount / o.lot) * o.price;
}

function describe(o: OfferRecord, amount: number): string {
  return `${o.side} ${amount} ehash at ${o.price} sat/lot (offer ${short(o.d)})`;
}

/**
 * Everything held back at `at`: each open offer's remaining amount (ehash at the pool mint for
 * an ask; sats at its first sat mint for a bid, at its price), and each trade still waiting to
 * lock (step `matched`), whether or not its offer is still open.
 */
export function holds(offers: OfferRecord[], trades: TradeRecord[], at: number): Hold[] {
  const out: Hold[] = [];
  const byD = new Map(offers.map((o) => [o.d, o]));
  for (const o of offers) {
    if (!isOpen(o, trades, at)) continue;
    const left = remainingOf(o, trades);
    if (o.side === 'sell') out.push({ offer: o.d, mint: o.mint, unit: o.unit, amount: left, what: describe(o, left) });
    else out.push({ offer: o.d, mint: o.satMints[0], unit: 'sat', amount: satsOf(o, left), what: describe(o, left) });
  }
  for (const t of trades) {
    if (t.step !== 'matched') continue;
    const o = byD.get(t.offerD);
    const what = `trade ${short(t.id)} (not locked yet)${o ? ` of offer ${short(o.d)}` : ''}`;
    if (t.role === 'sell') out.push({ offer: t.offerD, trade: t.id, mint: t.mint, unit: t.unit, amount: t.amount, what });
    else out.push({ offer: t.offerD, trade: t.id, mint: t.satMint, unit: 'sat', amount: t.sats, what });
  }
  return out.filter((x) => x.amount > 0);
}

/** The holds on `unit` at `mint`, leaving out the remainder of offer `except` (an offer being edited; its trades stay). */
export function holdsAt(all: Hold[], mint: string, unit: string, except?: string): Hold[] {
  return all.filter((x) => x.mint === mint && x.unit === unit && !(x.offer === except && !x.trade));
}

/**
 * Refuse `action` when it needs `need` of `unit` at `mint` and the wallet holds `have` there,
 * of which the holds of other offers leave less than that free. The error names how much is
 * reserved, by which offers, and what to do.
 */
export function checkFree(all: Hold[], mint: string, unit: string, have: number, need: number, action: string, except?: string): void {
  const mine = holdsAt(all, mint, unit, except);
  const held = mine.reduce((s, x) => s + x.amount, 0);
  const free = Math.max(0, have - held);
  if (need <= free || held === 0) return;
  throw new Error(
    `${action} needs ${need} ${unit} at ${mint}, but only ${free} of the ${have} held there is free: ${held} is reserved by your open offer${mine.length > 1 ? 's' : ''} (${mine.map((x) => x.what).join('; ')}). Cancel or shrink the offer first.`,
  );
}

/** The holds as they stand in this browser's database now. */
export async function current(): Promise<Hold[]> {
  return holds(await store.all<OfferRecord>('offers'), await store.all<TradeRecord>('trades'), now());
}
