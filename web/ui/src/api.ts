// The exchange's HTTP + WebSocket API (docs/protocol.md §9 "API"; bodies in protocol/src/api.rs).
import type { Event } from './nostr';

export interface ExchangeInfo {
  pubkey: string;
  lot: number;
  relays: string[];
  lock_secs: number;
  claim_secs: number;
  margin_secs: number;
  max_clock_skew_secs: number;
}

export interface MarketSummary {
  market: string;
  unit: string;
  mint_url: string;
  pool: string;
  epoch: number;
  state: string;
  issued: number | null;
  /** What the epoch pays out in total (sats), once closed on a block. */
  payout?: number | null;
  /** Sats one lot redeems for while the epoch is redeemable. */
  fair_price?: number | null;
  /** When a redeemable epoch expires. */
  expires?: number | null;
  /** What one lot is worth in sats (protocol::epoch::value_of), on `value_basis`. */
  value?: number | null;
  /** `redeemable` (pays now), `payout` (pays when its block matures) or `estimate` (the open epoch, from the pool's hashprice). */
  value_basis?: 'redeemable' | 'payout' | 'estimate' | null;
  bid: number | null;
  ask: number | null;
  last: number | null;
  volume_24h: number;
  lot: number;
}

export interface BookEntry {
  address: string;
  event_id: string;
  pubkey: string;
  side: 'buy' | 'sell';
  price: number;
  remaining: number;
  min: number;
  sat_mints: string[];
  expiration: number;
  seq: number;
}

export interface Book {
  market: string;
  lot: number;
  bids: BookEntry[];
  asks: BookEntry[];
  seq: number;
}

export interface TradeView {
  id: string;
  market: string;
  amount: number;
  sats: number;
  price: number;
  maker_side: 'buy' | 'sell';
  state: string;
  reason: string | null;
  blame: string | null;
  matched_at: number;
  event: Event;
}

export interface Candle {
  t: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  sats: number;
}

export interface Refusal {
  [k: string]: unknown;
}

/** A client of one exchange. */
export class ExchangeApi {
  constructor(readonly base: string) {}

  private async get<T>(path: string): Promise<T> {
    let r: Response;
    try {
      r = await fetch(`${this.base}${path}`, { signal: AbortSignal.timeout(30_000) });
    } catch (e) {
      throw new Error(`the exchange at ${this.base} cannot be reached (${(e as Error).message}); is it running?`);
    }
    if (!r.ok) throw new Error(`the exchange answered ${r.status} to ${path}: ${(await r.text()).slice(0, 200)}`);
    return r.json() as Promise<T>;
  }

  info() {
    return this.get<ExchangeInfo>('/api/info');
  }
  markets() {
    return this.get<MarketSummary[]>('/api/markets');
  }
  book(m: string, depth = 50) {
    return this.get<Book>(`/api/markets/${m}/book?depth=${depth}`);
  }
  trades(m: string, limit = 50) {
    return this.get<TradeView[]>(`/api/markets/${m}/trades?limit=${limit}`);
  }
  candles(m: string, interval: number) {
    return this.get<Candle[]>(`/api/markets/${m}/candles?interval=${interval}`);
  }
  epochs() {
    return this.get<Event[]>('/api/epochs');
  }
  trade(id: string) {
    return this.get<TradeView>(`/api/trades/${id}`);
  }

  /** Push updates (`book`, `trade`, `epoch`, `resync`); reconnects until `stop()`. */
  watch(on: (msg: { type: string; market?: string; data?: unknown }) => void): { stop(): void } {
    let stopped = false;
    let ws: WebSocket | null = null;
    const open = () => {
      if (stopped) return;
      ws = new WebSocket(`${this.base.replace(/^http/, 'ws')}/api/ws`);
      ws.onmessage = (m) => {
        try {
          on(JSON.parse(String(m.data)));
        } catch {
          /* a message we cannot read is ignored */
        }
      };
      ws.onclose = () => {
        if (!stopped) {
          on({ type: 'resync' });
          setTimeout(open, 2000);
        }
      };
    };
    open();
    return {
      stop() {
        stopped = true;
        ws?.close();
      },
    };
  }
}
