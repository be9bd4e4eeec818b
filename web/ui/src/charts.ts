// Depth chart and candlesticks as plain SVG (no chart library).
import type { Book, Candle } from './api';
import { fmt, svg } from './util';

const W = 600;
const H = 220;
const PAD = 36;

/** Cumulative depth: bids to the left of the mid price, asks to the right. */
export function depthChart(book: Book): SVGElement {
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': 'market depth' });
  const bids = [...book.bids].sort((a, b) => b.price - a.price);
  const asks = [...book.asks].sort((a, b) => a.price - b.price);
  if (!bids.length && !asks.length) {
    root.append(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'muted' }, 'no resting offers'));
    return root;
  }
  const cum = (xs: { price: number; remaining: number }[]) => {
    let s = 0;
    return xs.map((x) => ({ price: x.price, depth: (s += x.remaining) }));
  };
  const b = cum(bids);
  const a = cum(asks);
  const prices = [...b, ...a].map((x) => x.price);
  let lo = Math.min(...prices);
  let hi = Math.max(...prices);
  if (lo === hi) {
    lo -= 1;
    hi += 1;
  }
  const maxD = Math.max(...[...b, ...a].map((x) => x.depth));
  const x = (p: number) => PAD + ((p - lo) / (hi - lo)) * (W - 2 * PAD);
  const y = (d: number) => H - PAD - (d / maxD) * (H - 2 * PAD);
  const path = (pts: { price: number; depth: number }[], side: 'bid' | 'ask') => {
    if (!pts.length) return;
    let d = `M ${x(pts[0].price)} ${y(0)}`;
    let prev = 0;
    for (const p of pts) {
      d += ` L ${x(p.price)} ${y(prev)} L ${x(p.price)} ${y(p.depth)}`;
      prev = p.depth;
    }
    const end = side === 'bid' ? PAD : W - PAD;
    d += ` L ${end} ${y(prev)} L ${end} ${y(0)} Z`;
    root.append(svg('path', { d, class: side }));
  };
  path(b, 'bid');
  path(a, 'ask');
  root.append(svg('line', { x1: PAD, y1: H - PAD, x2: W - PAD, y2: H - PAD, class: 'axis' }));
  root.append(svg('text', { x: PAD, y: H - 10, class: 'label' }, `${fmt(lo)}`));
  root.append(svg('text', { x: W - PAD, y: H - 10, 'text-anchor': 'end', class: 'label' }, `${fmt(hi)} sat/lot`));
  root.append(svg('text', { x: PAD, y: PAD - 12, class: 'label' }, `${fmt(maxD)} ehash`));
  return root;
}

/** OHLC candles with volume bars. */
export function candleChart(candles: Candle[]): SVGElement {
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': 'price candles' });
  if (!candles.length) {
    root.append(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'muted' }, 'no trades yet'));
    return root;
  }
  const cs = candles.slice(-60);
  let lo = Math.min(...cs.map((c) => c.low));
  let hi = Math.max(...cs.map((c) => c.high));
  if (lo === hi) {
    lo -= 1;
    hi += 1;
  }
  const maxV = Math.max(...cs.map((c) => c.volume), 1);
  const step = (W - 2 * PAD) / cs.length;
  const y = (p: number) => PAD + (1 - (p - lo) / (hi - lo)) * (H - 2 * PAD - 30);
  cs.forEach((c, i) => {
    const cx = PAD + i * step + step / 2;
    const up = c.close >= c.open;
    root.append(svg('line', { x1: cx, x2: cx, y1: y(c.high), y2: y(c.low), class: up ? 'wick up' : 'wick down' }));
    const top = y(Math.max(c.open, c.close));
    const h = Math.max(1, Math.abs(y(c.open) - y(c.close)));
    root.append(svg('rect', { x: cx - step * 0.35, y: top, width: step * 0.7, height: h, class: up ? 'up' : 'down' }, svg('title', {}, `${new Date(c.t * 1000).toLocaleString()}: O ${c.open} H ${c.high} L ${c.low} C ${c.close}, ${c.volume} ehash`)));
    const vh = (c.volume / maxV) * 26;
    root.append(svg('rect', { x: cx - step * 0.35, y: H - PAD - vh + 4, width: step * 0.7, height: vh, class: 'vol' }));
  });
  root.append(svg('text', { x: 4, y: PAD - 12, class: 'label' }, `${fmt(hi)} sat/lot`));
  root.append(svg('text', { x: 4, y: y(lo) + 18, class: 'label' }, `${fmt(lo)}`));
  // the time axis: the first, middle and last candle
  const at = (c: Candle) => {
    const d = new Date(c.t * 1000);
    const sameDay = new Date(cs[0].t * 1000).toDateString() === new Date(cs[cs.length - 1].t * 1000).toDateString();
    return sameDay ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : d.toLocaleDateString([], { month: 'short', day: 'numeric' });
  };
  const marks = [...new Set([0, Math.floor((cs.length - 1) / 2), cs.length - 1])];
  for (const i of marks) {
    const anchor = i === 0 ? 'start' : i === cs.length - 1 ? 'end' : 'middle';
    root.append(svg('text', { x: PAD + i * step + step / 2, y: H - 6, 'text-anchor': anchor, class: 'label time' }, at(cs[i])));
  }
  return root;
}
