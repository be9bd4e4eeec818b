// Rules the browser agent shares with the Rust agent (wallet/src/agent), as pure functions: both
// run the vectors in protocol/vectors against them (tests/unit.mjs here).

/** A trade's timetable (protocol §10), unix seconds. */
export interface Times {
  sellerLockBy: number;
  buyerLockBy: number;
  ehashLocktime: number;
  satsLocktime: number;
}

/** Why an agent in `role` refuses a trade with these times at `now`, or null (as `SettlementTimes::refusal`). */
export function timesRefusal(t: Times, role: 'buy' | 'sell', now: number, minMarginSecs: number, maxLockSecs: number): string | null {
  if (!(t.sellerLockBy <= t.buyerLockBy && t.buyerLockBy < t.satsLocktime && t.satsLocktime < t.ehashLocktime))
    return `the trade's times are out of order: need seller deadline ${t.sellerLockBy} ≤ buyer deadline ${t.buyerLockBy} < sats locktime ${t.satsLocktime} < ehash locktime ${t.ehashLocktime}`;
  const margin = t.ehashLocktime - t.satsLocktime;
  if (margin < minMarginSecs) return `the locktimes leave a margin of ${margin} s; this agent needs ${minMarginSecs}`;
  const mine = role === 'sell' ? t.ehashLocktime : t.satsLocktime;
  if (mine - now > maxLockSecs) return `my lock would stay locked until ${mine}, longer than this agent's ${maxLockSecs} s`;
  return null;
}

/** One trade of an offer, as its agent sees it. */
export interface OfferTrade {
  amount: number;
  step: string;
  /** Whether anything of this agent's was locked for it. */
  locked: boolean;
}

/**
 * What is left of an offer whose latest version offers `amount` (as
 * `ehash_protocol::market::offer_remaining`): every trade of the offer, of any version, takes
 * its amount, but one that failed with nothing of mine locked. A version's amount is the offer's
 * total, as the exchange books it: an edit never undoes fills.
 */
export function remaining(amount: number, trades: OfferTrade[]): number {
  const taken = trades.filter((t) => !(t.step === 'failed' && !t.locked)).reduce((s, t) => s + t.amount, 0);
  return Math.max(0, amount - taken);
}
