// What ehash is worth in sats, from the exchange's market summary (protocol::epoch::value_of):
// the redemption value of an epoch with a payout, the hashprice estimate of the open one. The
// page shows it beside prices and balances and warns before an order far from it.
import type { MarketSummary } from './api';
import { fmt, fmtRelative, now } from './util';

/** How far from the value an order may be before the page asks first: tight where the value is
 * known (a payout), loose where it is an estimate of the open epoch's luck. */
const TOLERANCE = { redeemable: 0.1, payout: 0.1, estimate: 0.5 } as const;

/** Expiry closer than this (seconds) is warned about. */
export const EXPIRY_WARNING_SECS = 3 * 86_400;

/** Sats `amount` ehash redeems for: floor(amount × payout / issued) (protocol §2; vectors: work.json `redemptions`). */
export function redeemSats(amount: number, payout: number, issued: number): number {
  if (issued <= 0) return 0;
  return Number((BigInt(amount) * BigInt(payout)) / BigInt(issued));
}

/** One lot's value and a sentence saying what it rests on; null when nothing is known. */
export function lotValue(m: Pick<MarketSummary, 'value' | 'value_basis' | 'lot'>): { sats: number; basis: 'redeemable' | 'payout' | 'estimate'; text: string } | null {
  if (m.value === null || m.value === undefined || !m.value_basis) return null;
  const text =
    m.value_basis === 'redeemable'
      ? `${fmt(m.value)} sat per lot: what it redeems for now`
      : m.value_basis === 'payout'
        ? `${fmt(m.value)} sat per lot once the block matures`
        : `≈ ${fmt(m.value)} sat per lot, estimated from the pool's hashprice`;
  return { sats: m.value, basis: m.value_basis, text };
}

/** Sats `amount` ehash is worth at `m`'s value (floored), or null. */
export function worth(amount: number, m: Pick<MarketSummary, 'value' | 'value_basis' | 'lot'> | undefined): number | null {
  if (!m || m.value === null || m.value === undefined || !m.value_basis || m.lot <= 0) return null;
  return Number((BigInt(amount) * BigInt(m.value)) / BigInt(m.lot));
}

/** Why an order at `price` sats per lot is far from what a lot is worth, or null when it is not. */
export function priceWarning(side: 'buy' | 'sell', price: number, m: Pick<MarketSummary, 'value' | 'value_basis' | 'lot'>): string | null {
  const v = lotValue(m);
  if (!v || !Number.isFinite(price) || v.sats <= 0) return null;
  const tol = TOLERANCE[v.basis];
  const pct = (x: number) => `${Math.floor((Math.abs(x - v.sats) * 100) / v.sats)} %`;
  if (side === 'sell' && price < v.sats * (1 - tol)) return `You would sell at ${fmt(price)} sat per lot, ${pct(price)} below its value (${v.text}).`;
  if (side === 'buy' && price > v.sats * (1 + tol)) return `You would pay ${fmt(price)} sat per lot, ${pct(price)} above its value (${v.text}).`;
  return null;
}

/** A warning when a redeemable epoch expires soon (its ehash then redeems for nothing), or null. */
export function expiryWarning(m: Pick<MarketSummary, 'state' | 'expires' | 'epoch'>, at = now()): string | null {
  if (m.state !== 'redeemable' || !m.expires || m.expires - at > EXPIRY_WARNING_SECS) return null;
  return `Epoch ${m.epoch} stops redeeming ${fmtRelative(m.expires, at)}: redeem its ehash before then, or it is worth nothing.`;
}
