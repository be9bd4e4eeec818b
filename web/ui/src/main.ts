// The ehash exchange UI: markets, order book, depth, trades, candles, the epoch explorer, the
// browser wallet and the trade agent. Hash routes: #/ (markets), #/market/<id>, #/trades,
// #/wallet, #/epochs, #/identity.
import { ExchangeApi, type Book, type ExchangeInfo, type MarketSummary, type TradeView } from './api';
import { Agent, type OfferRecord, type TradeRecord } from './agent';
import * as cashu from './cashu';
import { candleChart, depthChart } from './charts';
import * as store from './db';
import * as nostr from './nostr';
import * as trust from './trust';
import * as value from './value';
import qrcode from 'qrcode-generator';
import { errText, fmt, fmtRelative, fmtTime, h, now, short } from './util';
import * as wallet from './wallet';

interface Config {
  exchange: string;
  sat_mints: string[];
  relays: string[];
}

const app = {
  cfg: { exchange: '', sat_mints: [], relays: [] } as Config,
  api: null as unknown as ExchangeApi,
  info: null as unknown as ExchangeInfo,
  relays: [] as string[],
  identity: null as unknown as nostr.Identity,
  agent: null as unknown as Agent,
  markets: [] as MarketSummary[],
  epochs: new Map<string, nostr.EpochCheck>(),
  satMints: [] as string[],
  live: 'connecting',
};

const main = () => document.getElementById('main')!;
/** How often the wallet tries again what a mint left unresolved (a payment, redemption or deposit). */
const RETRY_MS = 15_000;
/** The container of the view being shown; a view that finishes after the user moved on draws into a detached one. */
let viewRoot: HTMLElement = document.createElement('div');

// ---------------------------------------------------------------- notices

function notice(text: string, kind: 'ok' | 'error' = 'ok', link?: { href: string; text: string }) {
  const box = document.getElementById('notices')!;
  const n = h(
    'div',
    { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    text,
    link ? h('a', { href: link.href, class: 'notice-link', onclick: () => n.remove() }, ` ${link.text}`) : null,
    h('button', { class: 'close', 'aria-label': 'dismiss', onclick: () => n.remove() }, '×'),
  );
  box.append(n);
  setTimeout(() => n.remove(), kind === 'ok' ? 6000 : 15000);
}

// an error shown next to a form goes once the user changes what caused it
document.addEventListener('input', (e) => (e.target as HTMLElement | null)?.closest('form, .card, li')?.querySelector(':scope > .form-error')?.remove());

/** Run an action from a button: disables it, shows the error in plain words. */
async function act(btn: HTMLButtonElement | null, f: () => Promise<void>): Promise<void> {
  if (btn) btn.disabled = true;
  // the error also shows next to the control that caused it
  const place = btn?.closest('form, .card, li');
  place?.querySelector(':scope > .form-error')?.remove();
  try {
    await f();
  } catch (e) {
    notice(errText(e), 'error');
    place?.append(h('p', { class: 'form-error error', role: 'alert' }, errText(e)));
  } finally {
    if (btn) btn.disabled = false;
  }
}

/** A QR code of `text` (an invoice in upper case, which QR holds more compactly), or null when it is too long for one. */
function qrOf(text: string): HTMLElement | null {
  try {
    const invoice = /^ln[a-z0-9]+$/i.test(text);
    const qr = qrcode(0, 'L');
    qr.addData(invoice ? text.toUpperCase() : text, invoice ? 'Alphanumeric' : 'Byte');
    qr.make();
    const box = h('div', { class: 'qr', role: 'img', 'aria-label': invoice ? 'QR code of the invoice' : 'QR code' });
    box.innerHTML = qr.createSvgTag({ cellSize: 4, margin: 2, scalable: true });
    return box;
  } catch {
    return null;
  }
}

/** A read-only text (an invoice, a token) with a button that copies it, and its QR code when it fits one. */
function copyable(text: string, testid: string, rows = 3, qr = false): HTMLElement {
  const area = h('textarea', { readonly: true, rows, 'data-testid': testid }, text) as HTMLTextAreaElement;
  const btn = h('button', { type: 'button', class: 'small', 'data-testid': `${testid}-copy` }, 'Copy') as HTMLButtonElement;
  btn.onclick = () =>
    void navigator.clipboard.writeText(text).then(
      () => (btn.textContent = 'Copied ✓'),
      () => (area.select(), (btn.textContent = 'Selected: press Ctrl+C')),
    );
  return h('div', {}, h('div', { class: 'copyable' }, area, btn), qr ? qrOf(text) : null);
}

function field(label: string, input: HTMLElement, hint?: string): HTMLElement {
  return h('label', { class: 'field' }, h('span', {}, label), input, hint ? h('small', { class: 'muted' }, hint) : null);
}

function intOf(input: HTMLInputElement, what: string): number {
  const v = input.value.trim();
  if (!/^\d+$/.test(v)) throw new Error(`${what}: enter a whole number`);
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`${what}: too large`);
  return n;
}

// ---------------------------------------------------------------- data

async function loadMarkets() {
  app.markets = await app.api.markets();
}

async function loadEpochs() {
  const evs = await app.api.epochs();
  for (const ev of evs) {
    const pool = app.markets.find((m) => m.market === nostr.tag(ev, 'd'))?.pool;
    const c = nostr.checkEpoch(ev, pool);
    const old = app.epochs.get(c.keysetId);
    if (!old || old.event.created_at <= ev.created_at) app.epochs.set(c.keysetId, c);
  }
  // the pool mints of markets whose announcement checks out are trusted without asking
  trust.setPoolMints(app.markets.filter((m) => app.epochs.get(m.market)?.ok).map((m) => m.mint_url));
}

/** Whether the wallet may use a mint, decided for many at once. */
async function trustedNow(): Promise<(url: string) => boolean> {
  const mine = new Set((await trust.list()).map((m) => m.url));
  return (u) => mine.has(cashu.normalizeUrl(u)) || trust.isPoolMint(u);
}

/**
 * Sat mints to pick from: the trusted ones, then those this page's operator suggests (the user
 * is asked before one is used). Never the mints other people's offers name.
 */
async function satMintChoices(): Promise<{ url: string; trusted: boolean }[]> {
  const ok = await trustedNow();
  const mine = (await trust.list()).filter((m) => m.keysets.some((k) => k.unit === 'sat')).map((m) => m.url);
  const out = mine.map((url) => ({ url, trusted: true }));
  for (const u of app.satMints) if (!out.some((x) => x.url === u)) out.push({ url: u, trusted: ok(u) });
  return out;
}

function mintOption(c: { url: string; trusted: boolean }): HTMLOptionElement {
  return h('option', { value: c.url }, c.trusted ? c.url : `${c.url} (not trusted yet: you will be asked)`);
}

/**
 * Ask the user whether to trust `mint`. The page shows its URL, and contacts the mint (its
 * `/v1/info` name and keysets) only when the user asks to look it up; it can be trusted only
 * after that. Resolves `true` once it is trusted.
 */
function askTrust(mint: string, what: string): Promise<boolean> {
  return new Promise((done) => {
    const name = h('dd', { 'data-testid': 'trust-name' }, 'not asked yet: the page contacts the mint only when you look it up');
    const keysets = h('dd', { 'data-testid': 'trust-keysets' }, '–');
    const status = h('p', { 'aria-live': 'polite' });
    let found: Awaited<ReturnType<typeof trust.lookUp>> | null = null;
    const look = h('button', { type: 'button', 'data-testid': 'trust-lookup' }, 'Look up this mint') as HTMLButtonElement;
    const accept = h('button', { type: 'button', class: 'primary', disabled: true, 'data-testid': 'trust-accept' }, 'Trust this mint') as HTMLButtonElement;
    const decline = h('button', { type: 'button', 'data-testid': 'trust-decline' }, 'Do not trust it') as HTMLButtonElement;
    const dlg = h(
      'dialog',
      { class: 'trust', 'data-testid': 'trust-dialog', 'aria-labelledby': 'trust-title' },
      h('h2', { id: 'trust-title' }, 'Trust this mint?'),
      h('p', {}, `This is the mint ${what}. You have not said you trust it.`),
      h('dl', { class: 'kv' }, h('dt', {}, 'URL'), h('dd', {}, h('code', { 'data-testid': 'trust-url' }, mint)), h('dt', {}, 'name'), name, h('dt', {}, 'keysets'), keysets),
      h('p', { class: 'warn' }, 'A mint holds the money itself: it can print the sats it pays you with, or refuse to pay out. Trust only a mint you know and would keep sats at.'),
      status,
      h('div', { class: 'row' }, look, accept, decline),
    );
    const close = (ok: boolean) => {
      dlg.close();
      dlg.remove();
      done(ok);
    };
    look.onclick = async () => {
      look.disabled = true;
      status.className = 'muted';
      status.textContent = `asking ${mint}…`;
      try {
        found = await trust.lookUp(mint);
        name.textContent = found.name ?? '(the mint gives no name)';
        keysets.replaceChildren(...found.keysets.map((k) => h('div', {}, h('code', {}, k.id), ` ${k.unit}${k.active ? '' : ' (inactive)'}`)));
        status.textContent = '';
        accept.disabled = false;
        accept.focus();
      } catch (e) {
        status.className = 'error';
        status.textContent = errText(e);
        look.disabled = false;
      }
    };
    accept.onclick = async () => {
      if (!found) return;
      await trust.add(found);
      close(true);
    };
    decline.onclick = () => close(false);
    dlg.addEventListener('cancel', (e) => {
      e.preventDefault();
      close(false);
    });
    document.body.append(dlg);
    dlg.showModal();
    look.focus();
  });
}

/** Run `f`; when it needs a mint the user has not trusted, ask, and run it again once they agree. */
async function trusting<T>(f: () => Promise<T>): Promise<T> {
  const asked = new Set<string>();
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (!(e instanceof trust.Untrusted) || asked.has(e.mint)) throw e;
      asked.add(e.mint);
      if (!(await askTrust(e.mint, e.what))) throw new Error(`not done: you did not trust the mint ${e.mint}, ${e.what}`);
    }
  }
}

/** The verified keyset of a market, or an error saying why it cannot be traded here. */
function marketKeyset(m: MarketSummary): OfferRecord['keyset'] {
  const e = app.epochs.get(m.market);
  if (!e) throw new Error(`the epoch announcement of market ${short(m.market)} has not been seen; it cannot be traded safely`);
  if (!e.ok) throw new Error(`the epoch announcement of market ${short(m.market)} does not check out (${e.checks.filter((c) => !c.ok).map((c) => c.name).join(', ')}); not trading it`);
  return { id: e.keysetId, keys: e.keys, fee: e.fee };
}

// ---------------------------------------------------------------- routing

let cleanup: (() => void)[] = [];
let rerender: (() => void) | null = null;

function route() {
  for (const c of cleanup) c();
  cleanup = [];
  document.getElementById('notices')?.replaceChildren();
  rerender = null;
  const hash = location.hash.replace(/^#\/?/, '');
  const [page, arg] = hash.split('/');
  document.querySelectorAll('nav a').forEach((a) => a.setAttribute('aria-current', (a.getAttribute('href') ?? '') === `#/${page === 'market' ? '' : page}` ? 'page' : 'false'));
  const root = h('div', { class: 'view' }, h('p', { class: 'muted' }, 'Loading…'));
  viewRoot = root;
  main().replaceChildren(root);
  const views: Record<string, (r: HTMLElement) => Promise<void>> = {
    '': marketsView,
    market: (r) => marketView(r, arg ?? ''),
    trades: tradesView,
    wallet: walletView,
    epochs: epochsView,
    identity: identityView,
  };
  const v = views[page] ?? marketsView;
  v(root).catch((e) => {
    root.replaceChildren(h('p', { class: 'error', role: 'alert' }, errText(e)));
  });
}

/** Keep a view's subscription until the user leaves it (at once, if they already did). */
function keep(root: HTMLElement, unsubscribe: () => void) {
  if (root === viewRoot) cleanup.push(unsubscribe);
  else unsubscribe();
}

/** Redraw the current view on exchange pushes, at most every 500 ms. */
let redrawTimer: ReturnType<typeof setTimeout> | null = null;
function redrawSoon() {
  if (redrawTimer) return;
  redrawTimer = setTimeout(() => {
    redrawTimer = null;
    rerender?.();
  }, 500);
}

// ---------------------------------------------------------------- markets

async function marketsView(root: HTMLElement) {
  await loadMarkets();
  const draw = () => {
    const rows = app.markets.map((m) =>
      h(
        'tr',
        {},
        h('td', {}, h('a', { href: `#/market/${m.market}`, 'data-testid': `market-${m.epoch}` }, `epoch ${m.epoch}`)),
        h('td', {}, h('span', { class: `state ${m.state}` }, m.state)),
        h('td', { class: 'num' }, fmt(m.bid)),
        h('td', { class: 'num' }, fmt(m.ask)),
        h('td', { class: 'num' }, fmt(m.last)),
        h('td', { class: 'num wide' }, fmt(m.volume_24h)),
        h('td', { class: 'num wide' }, fmt(m.issued)),
        h('td', { 'data-testid': `value-${m.epoch}`, title: value.lotValue(m)?.text ?? '' }, valueCell(m)),
        h('td', { class: 'wide', 'data-testid': `payout-${m.epoch}` }, payoutText(m)),
      ),
    );
    root.replaceChildren(
      h('h1', {}, 'Markets'),
      h('p', { class: 'muted' }, `Each pool epoch's ehash is its own market, priced in sats per lot of ${app.info.lot} ehash. Settlement is a cross-mint HTLC swap: the exchange never holds your money.`),
      app.markets.length
        ? h('div', { class: 'scroll' }, h('table', {}, h('thead', {}, h('tr', {}, ...['market', 'state', 'bid', 'ask', 'last', '24 h volume', 'issued', 'value per lot', 'payout'].map((c) => h('th', { class: ['24 h volume', 'issued', 'payout'].includes(c) ? 'wide' : undefined }, c)))), h('tbody', {}, ...rows)))
        : h('p', {}, 'No epoch has been announced yet.'),
    );
  };
  draw();
  if (root === viewRoot) rerender = () => void loadMarkets().then(draw);
}

/** One lot's value in the markets table: the sats, and what they rest on. */
function valueCell(m: MarketSummary): HTMLElement | string {
  const v = value.lotValue(m);
  if (!v) return '–';
  const basis = { redeemable: 'redeemable now', payout: 'when the block matures', estimate: 'estimate (hashprice)' }[v.basis];
  return h('span', {}, `${v.basis === 'estimate' ? '≈ ' : ''}${fmt(v.sats)} sat `, h('small', { class: 'muted' }, basis));
}

/** What a market's epoch pays: the fair price per lot once redeemable. */
function payoutText(m: MarketSummary): string {
  if (m.fair_price !== null && m.fair_price !== undefined) return `${fmt(m.fair_price)} sat per lot (redeemable until ${fmtTime(m.expires ?? undefined)})`;
  if (m.state === 'expired') return 'expired: no longer redeemable';
  if (m.state === 'orphaned') return 'orphaned: its block left the chain; it pays nothing';
  if (m.payout) return `${fmt(m.payout)} sats for ${fmt(m.issued)} ehash once the block matures`;
  return m.state === 'active' ? 'not yet known (the epoch is open)' : 'none (closed without a block)';
}

// ---------------------------------------------------------------- one market

async function marketView(root: HTMLElement, id: string) {
  await loadMarkets();
  await loadEpochs();
  const m = app.markets.find((x) => x.market === id);
  if (!m) throw new Error(`no market ${id} at this exchange`);
  const sections = {
    summary: h('section', { class: 'summary' }),
    depth: h('section', {}),
    book: h('section', {}),
    trades: h('section', {}),
    candles: h('section', {}),
    order: h('section', { class: 'card' }),
    mine: h('section', {}),
  };
  let interval = 60;
  root.replaceChildren(
    h('p', {}, h('a', { href: '#/' }, '← markets')),
    h('h1', {}, `Epoch ${m.epoch} `, h('small', { class: 'muted' }, m.unit)),
    sections.summary,
    h(
      'div',
      { class: 'market-grid' },
      h('div', { class: 'grid' }, h('div', { class: 'charts' }, h('h2', {}, 'Depth'), sections.depth, h('h2', {}, 'Price'), sections.candles), h('div', { class: 'orders' }, sections.order, sections.mine)),
      h('div', { class: 'grid' }, h('div', { class: 'book' }, h('h2', {}, 'Order book'), sections.book), h('div', { class: 'recent' }, h('h2', {}, 'Recent trades'), sections.trades)),
    ),
  );
  const orderForm = async (prefill?: { side: 'buy' | 'sell'; price: number; amount: number; satMints: string[] }) => {
    const side = h('select', { 'aria-label': 'side', 'data-testid': 'order-side' }, h('option', { value: 'buy' }, 'buy ehash'), h('option', { value: 'sell' }, 'sell ehash')) as HTMLSelectElement;
    const amount = h('input', { inputmode: 'numeric', value: String(prefill?.amount ?? app.info.lot), 'data-testid': 'order-amount' }) as HTMLInputElement;
    const price = h('input', { inputmode: 'numeric', value: String(prefill?.price ?? m.ask ?? m.last ?? 100), 'data-testid': 'order-price' }) as HTMLInputElement;
    // a take settles at one of the offer's sat mints, the trusted ones first (any other is
    // asked about before anything is published); a new offer at the trusted or suggested ones
    const ok = await trustedNow();
    const mints = prefill?.satMints?.length ? [...prefill.satMints].sort((a, b) => Number(ok(b)) - Number(ok(a))).map((url) => ({ url, trusted: ok(url) })) : await satMintChoices();
    const satMint = h('select', { 'aria-label': 'sat mint', 'data-testid': 'order-satmint' }, ...mints.map(mintOption)) as HTMLSelectElement;
    if (prefill) side.value = prefill.side;
    const cost = h('p', { class: 'muted', 'aria-live': 'polite' });
    const warning = h('p', { class: 'warn', 'data-testid': 'order-warning', hidden: true });
    // an order far from the value is sent only after the user saw the warning and pressed again
    let warned = '';
    const update = () => {
      const a = Number(amount.value);
      const p = Number(price.value);
      const ok = Number.isSafeInteger(a) && Number.isSafeInteger(p) && a > 0 && p > 0 && a % app.info.lot === 0;
      const worth = ok ? value.worth(a, app.markets.find((x) => x.market === id) ?? m) : null;
      cost.textContent = ok ? `${fmt(a)} ehash = ${fmt((a / app.info.lot) * p)} sats${worth !== null ? ` (worth ${m.value_basis === 'estimate' ? '≈ ' : ''}${fmt(worth)} sats)` : ''}` : `amount: whole lots of ${app.info.lot}; price: whole sats above 0`;
      warned = '';
      warning.hidden = true;
      submit.textContent = submitText;
    };
    amount.oninput = update;
    price.oninput = update;
    side.onchange = update;
    const submitText = prefill ? (prefill.side === 'buy' ? 'Buy' : 'Sell') : 'Place offer';
    const submit = h('button', { class: 'primary', type: 'submit', 'data-testid': 'order-submit' }, submitText) as HTMLButtonElement;
    update();
    const form = h(
      'form',
      {
        onsubmit: (e: Event) => {
          e.preventDefault();
          void act(submit, async () => {
            if (!satMint.value) throw new Error('no sat mint to settle at: trust one first (Wallet → Trusted mints)');
            // a wrong amount or price is said first: a warning about the price of an order
            // that cannot be placed would only be followed by the error
            app.agent.checkOrder(m, { amount: intOf(amount, 'amount'), price: intOf(price, 'price') });
            const far = value.priceWarning(side.value as 'buy' | 'sell', intOf(price, 'price'), app.markets.find((x) => x.market === id) ?? m);
            if (far && warned !== far) {
              warned = far;
              warning.textContent = `${far} Press “${side.value === 'sell' ? 'Sell' : 'Buy'} anyway” to go ahead.`;
              warning.hidden = false;
              submit.textContent = `${side.value === 'sell' ? 'Sell' : 'Buy'} anyway`;
              return;
            }
            const o = await trusting(() => app.agent.place(m, marketKeyset(m), { side: side.value as 'buy' | 'sell', amount: intOf(amount, 'amount'), price: intOf(price, 'price'), satMints: [satMint.value] }));
            notice(`your offer to ${o.side} ${fmt(o.amount)} ehash at ${o.price} sat/lot is published; its trades settle in this page while it is open`, 'ok', { href: '#/trades', text: 'your trades →' });
            await drawOrder();
          });
        },
      },
      h('h2', {}, prefill ? 'Take offer' : 'Place an offer'),
      field('side', side),
      field('amount (ehash)', amount, `whole lots of ${app.info.lot}`),
      field('price (sats per lot)', price),
      field('sat mint', satMint, 'where the sats side settles'),
      cost,
      warning,
      h('div', { class: 'row' }, submit, prefill ? h('button', { type: 'button', onclick: () => void drawOrder() }, 'Cancel') : null),
    );
    sections.order.replaceChildren(form);
    if (prefill) amount.focus();
  };
  const drawOrder = () => orderForm();
  const take = (e: { side: string; price: number; remaining: number; min: number; sat_mints: string[] }) =>
    void orderForm({ side: e.side === 'sell' ? 'buy' : 'sell', price: e.price, amount: e.remaining, satMints: e.sat_mints.map(cashu.normalizeUrl) });

  const draw = async () => {
    await loadMarkets();
    const mm = app.markets.find((x) => x.market === id) ?? m;
    const ep = app.epochs.get(id);
    sections.summary.replaceChildren(
      h(
        'dl',
        { class: 'kv' },
        h('dt', {}, 'state'),
        h('dd', {}, h('span', { class: `state ${mm.state}` }, mm.state)),
        h('dt', {}, 'bid / ask'),
        h('dd', { 'data-testid': 'bidask' }, `${fmt(mm.bid)} / ${fmt(mm.ask)} sat per lot`),
        h('dt', {}, 'last'),
        h('dd', {}, fmt(mm.last)),
        h('dt', {}, '24 h volume'),
        h('dd', {}, `${fmt(mm.volume_24h)} ehash`),
        h('dt', {}, 'value'),
        h('dd', { 'data-testid': 'market-value' }, value.lotValue(mm)?.text ?? 'not known', mm.value_basis === 'estimate' ? h('small', { class: 'muted block' }, `hashprice: the pool's expected sats per ehash of work = payout × 2^unit_size × (T + 1) / 2^256, T the network target (protocol §2); the epoch really pays what the block that closes it pays, shared by all its ehash`) : null),
        h('dt', {}, 'payout'),
        h('dd', {}, payoutText(mm)),
        h('dt', {}, 'announcement'),
        h('dd', {}, ep ? h('a', { href: '#/epochs', class: ep.ok ? 'ok' : 'bad' }, ep.ok ? 'signature and keys check out ✓' : 'does NOT check out ✗') : 'not seen'),
        h('dt', {}, 'mint'),
        h('dd', {}, mm.mint_url),
      ),
    );
    const [book, trades, candles] = await Promise.all([app.api.book(id), app.api.trades(id, 30), app.api.candles(id, interval)]);
    sections.depth.replaceChildren(depthChart(book));
    const sel = h('select', { 'aria-label': 'candle interval', onchange: (e: Event) => ((interval = Number((e.target as HTMLSelectElement).value)), void draw()) }, ...[60, 300, 3600, 86400].map((s) => h('option', { value: s, selected: s === interval }, s < 3600 ? `${s / 60} min` : s === 3600 ? '1 h' : '1 day')));
    sections.candles.replaceChildren(sel, candleChart(candles));
    const mine = new Set((await app.agent.offers()).map((o) => o.pubkey));
    const ok = await trustedNow();
    const row = (e: Book['asks'][number]) =>
      h(
        'tr',
        { class: e.side },
        h('td', { class: 'num' }, fmt(e.price)),
        h('td', { class: 'num' }, fmt(e.remaining)),
        h('td', { class: 'num' }, fmt((e.remaining / book.lot) * e.price)),
        h(
          'td',
          {},
          mine.has(e.pubkey) ? h('span', { class: 'muted' }, 'yours') : h('button', { class: 'small', 'data-testid': `take-${e.side}`, onclick: () => take(e) }, e.side === 'sell' ? 'Buy' : 'Sell'),
          e.sat_mints.some(ok) ? null : h('small', { class: 'warn', title: `settles at ${e.sat_mints.join(', ')}`, 'data-testid': 'untrusted-mint' }, ' sat mint not trusted'),
        ),
      );
    const head = h('thead', {}, h('tr', {}, h('th', {}, 'price'), h('th', {}, 'ehash'), h('th', {}, 'sats'), h('th', {}, '')));
    sections.book.replaceChildren(
      h('div', { class: 'scroll' }, h('table', { 'data-testid': 'asks' }, h('caption', {}, 'asks (sell ehash)'), head.cloneNode(true), h('tbody', {}, ...[...book.asks].reverse().map(row)))),
      h('div', { class: 'scroll' }, h('table', { 'data-testid': 'bids' }, h('caption', {}, 'bids (buy ehash)'), head, h('tbody', {}, ...book.bids.map(row)))),
    );
    sections.trades.replaceChildren(tradeTable(trades, new Set((await app.agent.trades()).map((t) => t.id))));
    await drawMine();
  };
  const drawMine = async () => {
    const offers = (await openOffers()).filter((o) => o.market === id);
    const list = offers.length ? await offerList(offers) : h('p', { class: 'muted' }, 'none');
    keepingTyped(sections.mine, () => sections.mine.replaceChildren(h('h2', {}, 'Your open offers'), list));
  };
  await drawOrder();
  await draw();
  if (root === viewRoot) rerender = () => void draw().catch((e) => console.warn(e));
  keep(root, app.agent.onChange(() => redrawSoon()));
}

function tradeTable(trades: TradeView[], mine = new Set<string>()): HTMLElement {
  if (!trades.length) return h('p', { class: 'muted' }, 'no trades yet');
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      { 'data-testid': 'trades' },
      h('thead', {}, h('tr', {}, ...['time', 'price', 'ehash', 'sats', 'state'].map((c) => h('th', {}, c)))),
      h(
        'tbody',
        {},
        ...trades.map((t) =>
          h('tr', { class: t.maker_side === 'sell' ? 'buy' : 'sell' }, h('td', {}, new Date(t.matched_at * 1000).toLocaleTimeString()), h('td', { class: 'num' }, fmt(t.price)), h('td', { class: 'num' }, fmt(t.amount)), h('td', { class: 'num' }, fmt(t.sats)), h('td', {}, h('span', { class: `state ${t.state}`, title: t.reason ?? '' }, t.state.replace('_', ' ')), mine.has(t.id) ? h('a', { href: '#/trades', class: 'yours', 'data-testid': 'my-trade' }, ' yours') : null)),
        ),
      ),
    ),
  );
}

/** Offers still open: not cancelled, not expired, something left. */
async function openOffers(): Promise<OfferRecord[]> {
  const out = [];
  for (const o of await app.agent.offers()) if (o.status === 'pending' && o.expiration > now() && (await app.agent.remaining(o)) > 0) out.push(o);
  return out;
}

/** Redraw `root` keeping a new price the user is typing into an offer's field (market activity redraws often). */
function keepingTyped(root: HTMLElement, redraw: () => void): void {
  const inputs = () => [...root.querySelectorAll<HTMLInputElement>('input[data-offer]')];
  const typed = new Map(inputs().filter((i) => i.value !== i.defaultValue).map((i) => [i.dataset.offer, i.value]));
  const focused = inputs().find((i) => i === document.activeElement)?.dataset.offer;
  redraw();
  for (const i of inputs()) {
    const v = typed.get(i.dataset.offer);
    if (v !== undefined) i.value = v;
    if (i.dataset.offer === focused) i.focus();
  }
}

async function offerList(offers: OfferRecord[]): Promise<HTMLElement> {
  const items = await Promise.all(
    offers.map(async (o) => {
      const left = await app.agent.remaining(o);
      const price = h('input', { inputmode: 'numeric', value: String(o.price), 'aria-label': 'new price', class: 'narrow', 'data-offer': o.d }) as HTMLInputElement;
      const edit = h('button', { class: 'small', onclick: (e: Event) => void act(e.currentTarget as HTMLButtonElement, async () => (await app.agent.revise(o.d, { price: intOf(price, 'price') }), notice('new version published (it queues again)'))) }, 'Update price') as HTMLButtonElement;
      const cancel = h('button', { class: 'small danger', 'data-testid': 'cancel-offer', onclick: (e: Event) => void act(e.currentTarget as HTMLButtonElement, async () => (await app.agent.revise(o.d, { cancel: true }), notice('offer cancelled'))) }, 'Cancel') as HTMLButtonElement;
      return h('li', {}, h('strong', {}, `${o.side} ${fmt(left)} of ${fmt(o.amount)} ehash`), ` at ${o.price} sat/lot, expires ${fmtRelative(o.expiration)} `, h('span', { class: 'row' }, price, edit, cancel));
    }),
  );
  return h('ul', { class: 'offers' }, ...items);
}

// ---------------------------------------------------------------- my trades

const STEPS: [string, string][] = [
  ['matched', 'matched'],
  ['ehash_locked', 'ehash locked'],
  ['sats_locked', 'sats locked'],
  ['sats_claimed', 'sats claimed'],
  ['settled', 'settled'],
];

function progress(t: TradeRecord): HTMLElement {
  // what this browser knows happened, whatever the exchange's latest state says
  const mine = !!t.myLock;
  const theirs = !!t.theirLock || !!t.theirToken;
  const done = [
    true,
    t.role === 'sell' ? mine : theirs,
    t.role === 'sell' ? theirs && t.step !== 'await_refund' && t.step !== 'refunded' : mine,
    t.step === 'settled' || (t.role === 'buy' && !!t.preimage) || (t.role === 'sell' && t.step === 'claiming'),
    t.step === 'settled',
  ];
  const end = t.step === 'failed' || t.step === 'refunded' || t.step === 'await_refund' || t.step === 'refunding';
  return h(
    'ol',
    { class: 'steps' },
    ...STEPS.map(([, label], i) => (end && i === STEPS.length - 1 ? null : h('li', { class: done[i] ? 'done' : '' }, label))),
    end ? h('li', { class: t.step === 'failed' ? 'bad' : 'warn' }, t.step === 'failed' ? 'failed' : t.step === 'refunded' ? 'refunded' : 'refund pending') : null,
  );
}

async function tradesView(root: HTMLElement) {
  const draw = async () => {
    const trades = await app.agent.trades();
    const offers = await openOffers();
    const withdrawn = (await app.agent.offers()).filter((o) => o.withdrawn && o.expiration > now());
    const undelivered = await app.agent.undelivered();
    const offerItems = offers.length ? await offerList(offers) : h('p', { class: 'muted' }, 'none');
    keepingTyped(root, () => root.replaceChildren(
      h('h1', {}, 'Your trades'),
      h('p', { class: 'muted' }, 'Your trades settle in this page: keep it open until they finish. If it closes, each trade resumes where it stopped when you open it again, and a lock the other side never claimed comes back to you after its locktime.'),
      undelivered.length ? h('p', { class: 'warn' }, `${undelivered.length} event(s) not yet accepted by a relay; retrying (${undelivered[0].lastError ?? 'sending'})`) : '',
      trades.length
        ? h(
            'ul',
            { class: 'trades' },
            ...trades.map((t) => {
              const deadline =
                t.step === 'await_refund' || t.step === 'refunding'
                  ? `refund ${fmtRelative(t.role === 'sell' ? t.ehashLocktime : t.satsLocktime)}`
                  : t.step === 'matched'
                    ? `${t.role === 'sell' ? 'lock' : 'seller locks'} by ${fmtRelative(t.sellerLockBy)}`
                    : '';
              return h(
                'li',
                { class: `trade ${t.step}`, 'data-testid': `trade-${t.step}`, 'data-trade': t.id },
                h('div', { class: 'row' }, h('strong', {}, `${t.role === 'buy' ? 'Buy' : 'Sell'} ${fmt(t.amount)} ehash for ${fmt(t.sats)} sats`), h('span', { class: `state ${t.step}`, 'data-testid': 'trade-step' }, t.step.replace('_', ' ')), h('span', { class: 'muted' }, deadline)),
                progress(t),
                t.note ? h('p', { class: t.step === 'failed' ? 'error' : 'muted' }, t.note) : null,
                h('details', {}, h('summary', {}, `trade ${short(t.id)}, epoch unit ${t.unit}`), h('ul', { class: 'log' }, ...t.log.map((l) => h('li', {}, `${new Date(l.at * 1000).toLocaleTimeString()} ${l.text}`)))),
              );
            }),
          )
        : h('p', { class: 'muted' }, 'No trades yet. Take an offer in a market.'),
      h('h2', {}, 'Open offers'),
      offerItems,
      withdrawn.length
        ? h('section', {}, h('h2', {}, 'Offers withdrawn by this page'), h('ul', { class: 'offers', 'data-testid': 'withdrawn' }, ...withdrawn.map((o) => h('li', {}, h('strong', {}, `${o.side} ${fmt(o.amount)} ehash at ${o.price} sat/lot`), `: ${o.withdrawn}`))))
        : '',
    ));
  };
  await draw();
  if (root === viewRoot) rerender = () => void draw();
  keep(root, app.agent.onChange(() => redrawSoon()));
}

// ---------------------------------------------------------------- wallet

/** Redemption terms the user is looking at (by mint and unit), kept across redraws. */
const redeemShown = new Map<string, wallet.RedeemTerms>();
/** Redemptions whose terms the pool's mint is being asked for (by mint and unit), across redraws. */
const redeemAsking = new Set<string>();

async function walletView(root: HTMLElement) {
  const bal = h('section', {});
  const hist = h('section', {});
  const drawBal = async () => {
    const bs = await wallet.balances();
    await loadMarkets().catch(() => undefined);
    const marketOf = (b: wallet.Balance) => app.markets.find((m) => m.unit === b.unit && cashu.normalizeUrl(m.mint_url) === b.mint);
    // redeeming asks the pool's mint for its terms first, and melts only once the user agrees;
    // the question in flight and the terms on show survive the redraws that backups and market
    // activity bring (terms that arrive after a redraw show in the row drawn since)
    const redeemBtn = (b: wallet.Balance, m: MarketSummary) => {
      const key = `${b.mint} ${b.unit}`;
      const box = h('span', {});
      const showTerms = (t: wallet.RedeemTerms) => {
        const yes = h('button', { type: 'button', class: 'small primary', 'data-testid': 'redeem-confirm' }, `Redeem for ${fmt(t.sats)} sats`) as HTMLButtonElement;
        yes.onclick = () =>
          void act(yes, async () => {
            redeemShown.delete(key);
            box.replaceChildren(h('span', { class: 'muted' }, 'redeeming…'));
            try {
              await wallet.redeem(t);
              notice(`redeemed ${fmt(t.amount)} ${t.unit} for ${fmt(t.sats)} sats`);
            } finally {
              redrawSoon();
            }
          });
        const no = h('button', { type: 'button', class: 'small', onclick: () => (redeemShown.delete(key), showAsk()) }, 'Cancel');
        box.replaceChildren(h('span', { 'data-testid': 'redeem-terms' }, `${fmt(t.amount)} ${t.unit} for ${fmt(t.sats)} sats? `), yes, no);
      };
      const showAsk = () =>
        box.replaceChildren(
          h(
            'button',
            {
              type: 'button',
              class: 'small',
              'data-testid': 'redeem',
              title: `redeem ${fmt(b.free)} ${b.unit} at the pool's mint`,
              onclick: (e: Event) =>
                void act(e.currentTarget as HTMLButtonElement, async () => {
                  redeemAsking.add(key);
                  showAsking();
                  try {
                    const t = await wallet.redeemTerms(m, b.free);
                    redeemShown.set(key, t);
                    if (box.isConnected) showTerms(t);
                  } catch (err) {
                    if (box.isConnected) showAsk();
                    throw err;
                  } finally {
                    redeemAsking.delete(key);
                    if (!box.isConnected) redrawSoon();
                  }
                }),
            },
            'Redeem',
          ),
        );
      const showAsking = () => box.replaceChildren(h('span', { class: 'muted', 'data-testid': 'redeem-asking' }, 'asking the pool’s mint for its terms…'));
      const shown = redeemShown.get(key);
      if (shown && shown.amount === b.free) showTerms(shown);
      else if (redeemAsking.has(key)) showAsking();
      else showAsk();
      return box;
    };
    const warnings = bs.flatMap((b) => {
      const m = b.unit !== 'sat' ? marketOf(b) : undefined;
      const w = m && b.amount > 0 ? value.expiryWarning(m) : null;
      return w ? [h('p', { class: 'warn', 'data-testid': 'expiry-warning' }, `${w} You hold ${fmt(b.amount)} of its ehash.`)] : [];
    });
    bal.replaceChildren(
      h('h2', {}, 'Balances'),
      ...warnings,
      bs.length
        ? h(
            'div',
            { class: 'scroll' },
            h(
              'table',
              { 'data-testid': 'balances' },
              h('thead', {}, h('tr', {}, ...['unit', 'held', 'worth (sats)', 'reserved by your offers', 'free', 'in trades', 'mint', ''].map((c) => h('th', {}, c)))),
              h(
                'tbody',
                {},
                ...bs.map((b) => {
                  const k = b.unit === 'sat' ? 'sat' : 'ehash';
                  const m = k === 'ehash' ? marketOf(b) : undefined;
                  const worth = k === 'sat' ? b.amount : value.worth(b.amount, m);
                  return h(
                    'tr',
                    { 'data-unit': b.unit },
                    h('td', {}, b.unit),
                    h('td', { class: 'num', 'data-testid': `balance-${k}` }, fmt(b.amount)),
                    h('td', { class: 'num', 'data-testid': `worth-${k}`, title: m ? (value.lotValue(m)?.text ?? '') : '' }, worth === null ? '–' : `${m?.value_basis === 'estimate' ? '≈ ' : ''}${fmt(worth)}`),
                    h('td', { class: 'num', 'data-testid': `offers-${k}` }, fmt(b.offers)),
                    h('td', { class: 'num', 'data-testid': `free-${k}` }, fmt(b.free)),
                    h('td', { class: 'num' }, fmt(b.reserved)),
                    h('td', { class: 'muted' }, b.mint),
                    h('td', {}, m && m.state === 'redeemable' && b.free > 0 ? redeemBtn(b, m) : null),
                  );
                }),
              ),
            ),
          )
        : h('p', { class: 'muted', 'data-testid': 'balances-empty' }, 'The wallet is empty. Deposit sats below.'),
      h('p', { class: 'muted' }, `NIP-60 backup: ${wallet.backupState()}`),
    );
    const items = await wallet.history();
    const shown = depositShown ? items.find((i) => i.id === depositShown) : undefined;
    if (shown && shown.state === 'done') {
      invoice.replaceChildren(h('p', { class: 'ok', 'data-testid': 'invoice-paid' }, `paid: ${fmt(shown.amount)} sats arrived in the wallet`));
      depositShown = '';
    }
    // the wallet's own operations and the user's trades, newest first
    const trades = (await app.agent.trades()).map((t) => ({
      at: t.createdAt,
      line: `${fmtTime(t.createdAt)} trade: ${t.role === 'buy' ? 'buy' : 'sell'} ${fmt(t.amount)} ${t.unit} for ${fmt(t.sats)} sats — ${t.step.replace('_', ' ')}`,
      token: undefined as string | undefined,
      testid: 'history-trade',
    }));
    const lines = [
      ...items.map((i) => ({ at: i.at, line: `${fmtTime(i.at)} ${i.kind} ${fmt(i.amount)} ${i.unit} — ${i.state}${i.note ? `: ${i.note}` : ''}`, token: i.token, testid: `history-${i.kind}` })),
      ...trades,
    ].sort((a, b) => b.at - a.at);
    hist.replaceChildren(
      h('h2', {}, 'History'),
      lines.length
        ? h('ul', { class: 'history' }, ...lines.slice(0, 40).map((i) => h('li', { 'data-testid': i.testid }, i.line, i.token ? h('details', {}, h('summary', {}, 'token'), copyable(i.token, 'history-token')) : null)))
        : h('p', { class: 'muted' }, 'nothing yet'),
    );
  };
  // deposit
  const depMint = h('select', { 'aria-label': 'sat mint', 'data-testid': 'deposit-mint' }, ...(await satMintChoices()).map(mintOption)) as HTMLSelectElement;
  const depAmount = h('input', { inputmode: 'numeric', value: '1000', 'data-testid': 'deposit-amount' }) as HTMLInputElement;
  const invoice = h('div', { 'aria-live': 'polite' });
  // the invoice on show gives way to a line saying it was paid once its sats are in
  let depositShown = '';
  const depBtn = h('button', { class: 'primary', type: 'submit', 'data-testid': 'deposit-submit' }, 'Get invoice') as HTMLButtonElement;
  const depForm = h(
    'form',
    {
      class: 'card',
      onsubmit: (e: Event) => {
        e.preventDefault();
        void act(depBtn, async () => {
          if (!depMint.value) throw new Error('no sat mint to deposit at: trust one first (Trusted mints, below)');
          const item = await trusting(() => wallet.deposit(depMint.value, intOf(depAmount, 'amount')));
          depositShown = item.id;
          invoice.replaceChildren(h('p', {}, 'Pay this Lightning invoice; the sats arrive in the wallet once it is paid:'), copyable(item.request ?? '', 'invoice', 3, true));
        });
      },
    },
    h('h2', {}, 'Receive sats by Lightning'),
    field('sat mint', depMint),
    field('amount (sats)', depAmount),
    depBtn,
    invoice,
  );
  // receive a token
  const tokenIn = h('textarea', { rows: 3, placeholder: 'cashuB…', 'aria-label': 'token', 'data-testid': 'receive-token' }) as HTMLTextAreaElement;
  const recBtn = h('button', { type: 'submit', 'data-testid': 'receive-submit' }, 'Receive') as HTMLButtonElement;
  const recForm = h(
    'form',
    {
      class: 'card',
      onsubmit: (e: Event) => {
        e.preventDefault();
        void act(recBtn, async () => {
          if (!tokenIn.value.trim()) throw new Error('paste a Cashu token first');
          const r = await trusting(() => wallet.receive(tokenIn.value));
          tokenIn.value = '';
          notice(`received ${fmt(r.amount)} ${r.unit} from ${r.mint}`);
        });
      },
    },
    h('h2', {}, 'Receive a token'),
    tokenIn,
    recBtn,
  );
  // send a token
  const sendWhich = h('select', { 'aria-label': 'balance to send from', 'data-testid': 'send-from' }) as HTMLSelectElement;
  const fillSend = async () => {
    const was = sendWhich.value;
    sendWhich.replaceChildren(...(await wallet.balances()).map((b) => h('option', { value: `${b.mint} ${b.unit}` }, `${b.unit} at ${b.mint} (${fmt(b.free)} free${b.offers ? ` of ${fmt(b.amount)}` : ''})`)));
    if (was && [...sendWhich.options].some((o) => o.value === was)) sendWhich.value = was;
  };
  const sendAmount = h('input', { inputmode: 'numeric', value: '1', 'data-testid': 'send-amount' }) as HTMLInputElement;
  const sendOut = h('div', {});
  const sendBtn = h('button', { type: 'submit', 'data-testid': 'send-submit' }, 'Create token') as HTMLButtonElement;
  const sendForm = h(
    'form',
    {
      class: 'card',
      onsubmit: (e: Event) => {
        e.preventDefault();
        void act(sendBtn, async () => {
          if (!sendWhich.value) throw new Error('the wallet holds nothing to send');
          const [mint, unit] = sendWhich.value.split(' ');
          const t = await wallet.send(mint, unit, intOf(sendAmount, 'amount'));
          sendOut.replaceChildren(h('p', {}, 'Give this token to the receiver (it is money: anyone holding it can claim it):'), copyable(t, 'sent-token', 4, true));
        });
      },
    },
    h('h2', {}, 'Send a token'),
    field('from', sendWhich),
    field('amount', sendAmount),
    sendBtn,
    sendOut,
  );
  // withdraw sats by Lightning: the fee is shown before anything is paid
  const wdMint = h('select', { 'aria-label': 'mint to pay from', 'data-testid': 'withdraw-mint' }) as HTMLSelectElement;
  const fillWithdraw = async () => {
    const was = wdMint.value;
    wdMint.replaceChildren(...(await wallet.balances()).filter((b) => b.unit === 'sat').map((b) => h('option', { value: b.mint }, `${b.mint} (${fmt(b.free)} sats free)`)));
    if (was && [...wdMint.options].some((o) => o.value === was)) wdMint.value = was;
  };
  const wdInvoice = h('textarea', { rows: 3, placeholder: 'lnbc…', 'aria-label': 'Lightning invoice', 'data-testid': 'withdraw-invoice' }) as HTMLTextAreaElement;
  const wdOut = h('div', { 'aria-live': 'polite' });
  const wdBtn = h('button', { type: 'submit', 'data-testid': 'withdraw-quote' }, 'Show the fee') as HTMLButtonElement;
  wdInvoice.oninput = () => wdOut.replaceChildren();
  const wdForm = h(
    'form',
    {
      class: 'card',
      onsubmit: (e: Event) => {
        e.preventDefault();
        void act(wdBtn, async () => {
          if (!wdMint.value) throw new Error('the wallet holds no sats to pay from');
          if (!wdInvoice.value.trim()) throw new Error('paste a Lightning invoice first');
          const q = await wallet.withdrawQuote(wdMint.value, wdInvoice.value);
          const pay = h('button', { type: 'button', class: 'primary', 'data-testid': 'withdraw-pay' }, `Pay ${fmt(q.amount + q.feeReserve)} sats`) as HTMLButtonElement;
          // one attempt per quote: the button goes once pressed (a lost answer is finished by the wallet, never paid twice)
          pay.onclick = () =>
            void act(pay, async () => {
              pay.remove();
              wdOut.append(h('p', { class: 'muted', 'data-testid': 'withdraw-paying' }, 'paying…'));
              const spent = await wallet.withdraw(q);
              wdInvoice.value = '';
              wdOut.replaceChildren(h('p', { class: 'ok', 'data-testid': 'withdraw-done' }, `paid: ${fmt(q.amount)} sats and ${fmt(spent - q.amount)} sat${spent - q.amount === 1 ? '' : 's'} of fee`));
              notice(`paid the invoice: ${fmt(spent)} sats in all`);
            });
          wdOut.replaceChildren(h('p', { 'data-testid': 'withdraw-fee' }, `The invoice is for ${fmt(q.amount)} sats; the mint reserves up to ${fmt(q.feeReserve)} sats of Lightning fee, and returns what it does not use.`), pay);
        });
      },
    },
    h('h2', {}, 'Pay a Lightning invoice'),
    field('from', wdMint),
    wdInvoice,
    wdBtn,
    wdOut,
  );
  // backup
  const restoreBtn = h('button', { type: 'button', onclick: (e: Event) => void act(e.currentTarget as HTMLButtonElement, async () => notice(`restored ${fmt(await wallet.restoreFromRelays())} from the relays' NIP-60 backup`)) }, 'Restore from relays (NIP-60)') as HTMLButtonElement;
  const backupBtn = h('button', { type: 'button', onclick: (e: Event) => void act(e.currentTarget as HTMLButtonElement, async () => (await wallet.backup(), notice(wallet.backupState()))) }, 'Back up now') as HTMLButtonElement;
  const wordsBox = h('div', {});
  const fromWords = await wallet.identityFromWords();
  // the words are revealed only after the user says nobody is looking
  const showWords = h(
    'button',
    {
      type: 'button',
      'data-testid': 'words-show',
      onclick: () =>
        wordsBox.replaceChildren(
          h('p', { class: 'warn' }, `Anyone who sees your recovery words can take ${fromWords ? 'this wallet: its balance, offers and trades' : 'your offers and trades'}. Show them only where nobody is looking, and keep them offline.`),
          h(
            'button',
            {
              type: 'button',
              class: 'danger',
              'data-testid': 'words-confirm',
              onclick: async () => wordsBox.replaceChildren(copyable(await wallet.words(), 'words', 2), h('button', { type: 'button', class: 'small', onclick: () => wordsBox.replaceChildren() }, 'Hide')),
            },
            'Nobody is looking: show them',
          ),
          h('button', { type: 'button', class: 'small', onclick: () => wordsBox.replaceChildren() }, 'Cancel'),
        ),
    },
    'Show recovery words',
  );
  const story = fromWords
    ? 'Your recovery words are the whole backup: in a new browser they restore the balance as last backed up (the NIP-60 backup on the relays, made with the key the words make, follows every change) and your next offers take keys past the ones already used. Offers, trades, payments and redemptions under way are finished only by the browser that started them: keep it until they are done.'
    : 'Your backup is two secrets: the recovery words make your offer keys; your nsec (Identity page) or extension restores the balance from the NIP-60 backup on the relays. Keep both. Offers, trades, payments and redemptions under way are finished only by the browser that started them: keep it until they are done.';
  // restore: a fresh browser becomes the wallet of the words (and nsec)
  const restoreWords = h('textarea', { rows: 2, placeholder: 'twelve recovery words', 'aria-label': 'recovery words', 'data-testid': 'restore-words', autocomplete: 'off', spellcheck: 'false' }) as HTMLTextAreaElement;
  const restoreNsec = h('input', { placeholder: 'nsec1… (only if your identity is not the words’ own)', 'aria-label': 'nsec for the restore', 'data-testid': 'restore-nsec', autocomplete: 'off' }) as HTMLInputElement;
  const restoreWalletBtn = h('button', { type: 'submit', class: 'primary', 'data-testid': 'restore-submit' }, 'Restore this wallet') as HTMLButtonElement;
  const restoreForm = h(
    'form',
    {
      onsubmit: (e: Event) => {
        e.preventDefault();
        void act(restoreWalletBtn, async () => {
          await wallet.restoreWallet(restoreWords.value, restoreNsec.value);
          location.reload();
        });
      },
    },
    field('recovery words', restoreWords),
    field('nsec (optional)', restoreNsec, 'leave empty when your identity was made from the words (the default)'),
    restoreWalletBtn,
  );
  const empty = (await wallet.balances()).length === 0;
  const restoreBox = h('details', { open: empty, 'data-testid': 'restore' }, h('summary', {}, empty ? 'A new browser? Restore your wallet from its recovery words' : 'Restore another wallet (in a fresh browser only)'), restoreForm);
  // trusted mints
  const trusted = h('section', { class: 'card', 'data-testid': 'trusted-mints' });
  const trustIn = h('input', { placeholder: 'https://mint.example', 'aria-label': 'mint URL to trust', 'data-testid': 'trust-url-input' }) as HTMLInputElement;
  const trustBtn = h('button', { type: 'submit' }, 'Trust a mint…') as HTMLButtonElement;
  const drawTrusted = async () => {
    const pools = [...new Set(app.markets.map((m) => cashu.normalizeUrl(m.mint_url)))].filter(trust.isPoolMint);
    const list = await trust.list();
    const remove = (url: string) => (e: Event) =>
      void act(e.currentTarget as HTMLButtonElement, async () => {
        const users = [
          ...(await openOffers()).filter((o) => o.satMints.includes(url)).map((o) => `your offer to ${o.side} ${o.amount} ehash (offer ${short(o.d)})`),
          ...(await app.agent.trades()).filter((t) => t.satMint === url && !['settled', 'refunded', 'failed'].includes(t.step)).map((t) => `trade ${short(t.id)}`),
        ];
        await trust.remove(url, users);
        notice(`you no longer trust ${url}`);
        await drawTrusted();
      });
    trusted.replaceChildren(
      h('h2', {}, 'Trusted mints'),
      h('p', { class: 'muted' }, 'The wallet deposits at, receives tokens from and trades against these mints only; any other is shown to you first, and asked nothing until you look it up.'),
      h(
        'ul',
        { class: 'trusted' },
        ...pools.map((u) => h('li', {}, h('code', {}, u), h('span', { class: 'muted' }, ' the pool’s mint of the markets here (always trusted)'))),
        ...list.map((m) =>
          h(
            'li',
            { 'data-mint': m.url },
            h('code', {}, m.url),
            ` ${m.name ?? '(no name)'}; keysets ${m.keysets.map((k) => `${k.id} (${k.unit})`).join(', ') || 'none'}; trusted ${fmtTime(m.at)} `,
            h('button', { type: 'button', class: 'small danger', 'data-testid': 'trusted-remove', onclick: remove(m.url) }, 'Remove'),
          ),
        ),
      ),
      h(
        'form',
        {
          class: 'row',
          onsubmit: (e: Event) => {
            e.preventDefault();
            void act(trustBtn, async () => {
              const url = cashu.normalizeUrl(trustIn.value.trim());
              if (!/^https?:\/\/\S+$/.test(url)) throw new Error('enter the mint’s URL, http://… or https://…');
              if (await trust.isTrusted(url)) throw new Error(`${url} is trusted already`);
              if (await askTrust(url, 'you entered')) {
                trustIn.value = '';
                notice(`you trust ${url} now`);
              }
              await drawTrusted();
            });
          },
        },
        trustIn,
        trustBtn,
      ),
    );
  };
  root.replaceChildren(h('h1', {}, 'Wallet'), bal, h('div', { class: 'grid' }, depForm, recForm, sendForm, wdForm), trusted, h('section', { class: 'card' }, h('h2', {}, 'Backup'), h('p', { class: 'muted', 'data-testid': 'backup-story' }, story), h('div', { class: 'row' }, backupBtn, restoreBtn, showWords), wordsBox, restoreBox), hist);
  await drawBal();
  await fillSend();
  await fillWithdraw();
  await drawTrusted();
  if (root === viewRoot) rerender = () => void drawBal().then(fillSend).then(fillWithdraw);
  keep(root, wallet.onChange(() => redrawSoon()));
}

// ---------------------------------------------------------------- epochs

async function epochsView(root: HTMLElement) {
  await loadMarkets();
  await loadEpochs();
  const fromRelays: nostr.Event[] = await new Promise((ok) => {
    const got: nostr.Event[] = [];
    const pools = [...new Set(app.markets.map((m) => m.pool))];
    if (!pools.length || !app.relays.length) return ok(got);
    const sub = nostr.pool.subscribeMany(app.relays, { kinds: [nostr.KIND_EPOCH, nostr.KIND_MINT], authors: pools }, {
      onevent: (e) => got.push(e),
      oneose: () => (sub.close(), ok(got)),
      maxWait: 4000,
    });
  });
  for (const ev of fromRelays.filter((e) => e.kind === nostr.KIND_EPOCH)) {
    const pool = app.markets.find((m) => m.market === nostr.tag(ev, 'd'))?.pool;
    const c = nostr.checkEpoch(ev, pool);
    const old = app.epochs.get(c.keysetId);
    if (!old || old.event.created_at < ev.created_at) app.epochs.set(c.keysetId, c);
  }
  const mints = fromRelays.filter((e) => e.kind === nostr.KIND_MINT);
  const list = [...app.epochs.values()].sort((a, b) => b.epoch - a.epoch);
  root.replaceChildren(
    h('h1', {}, 'Epoch explorer'),
    h('p', { class: 'muted' }, 'Every epoch is announced by the pool as a signed nostr event (kind 38180) carrying its keyset. This page checks each signature, that the pool the market names signed it, that the keyset id derives from the keys (NUT-02), and that the keyset itself names the signer as its pool (the owner proof, which no copier can make), so ehash can be verified without trusting the exchange.'),
    ...list.map((e) =>
      h(
        'article',
        { class: `card epoch ${e.ok ? 'ok' : 'bad'}`, 'data-testid': `epoch-${e.epoch}` },
        h('h2', {}, `Epoch ${e.epoch} `, h('span', { class: `state ${e.state}` }, e.state), ' ', h('span', { class: e.ok ? 'ok' : 'bad', 'data-testid': 'epoch-verdict' }, e.ok ? '✓ verified' : '✗ does not verify')),
        h(
          'dl',
          { class: 'kv' },
          h('dt', {}, 'keyset'),
          h('dd', {}, h('code', {}, e.keysetId)),
          h('dt', {}, 'unit'),
          h('dd', {}, e.unit),
          h('dt', {}, 'pool key'),
          h('dd', {}, h('code', {}, nostr.npub(e.event.pubkey))),
          h('dt', {}, 'mint'),
          h('dd', {}, e.mint),
          h('dt', {}, 'opened'),
          h('dd', {}, fmtTime(e.start)),
          e.end ? h('dt', {}, 'closed') : null,
          e.end ? h('dd', {}, `${fmtTime(e.end)} (${e.reason ?? ''}${e.block ? ` ${short(e.block)}` : ''})`) : null,
          e.issued !== undefined ? h('dt', {}, 'issued') : null,
          e.issued !== undefined ? h('dd', {}, `${fmt(e.issued)} ehash over ${fmt(e.shares)} shares`) : null,
          e.logRoot ? h('dt', {}, 'share log') : null,
          e.logRoot ? h('dd', {}, h('code', {}, e.logRoot), h('small', { class: 'muted' }, ` (check it: ehash audit ${e.epoch})`)) : null,
          h('dt', {}, 'input fee'),
          h('dd', {}, `${e.fee} ppk`),
        ),
        h('ul', { class: 'checks' }, ...e.checks.map((c) => h('li', { class: c.ok ? 'ok' : 'bad' }, `${c.ok ? '✓' : '✗'} ${c.name}: ${c.detail}`))),
      ),
    ),
    h('h2', {}, 'Mint announcements (NIP-87)'),
    mints.length ? h('ul', {}, ...mints.map((e) => h('li', {}, `${nostr.tag(e, 'u')} by ${short(e.pubkey)}: `, nostrVerified(e)))) : h('p', { class: 'muted' }, 'none seen on the relays'),
  );
}

function nostrVerified(e: nostr.Event): HTMLElement {
  const c = nostr.checkEpoch({ ...e, kind: e.kind }, undefined);
  const sig = c.checks.find((x) => x.name === 'signature');
  return h('span', { class: sig?.ok ? 'ok' : 'bad' }, sig?.ok ? 'signature ✓' : 'signature ✗');
}

// ---------------------------------------------------------------- identity

async function identityView(root: HTMLElement) {
  const id = app.identity;
  const nsecBox = h('div', {});
  const importIn = h('input', { type: 'password', placeholder: 'nsec1…', 'aria-label': 'nsec to import', autocomplete: 'off' }) as HTMLInputElement;
  const importBtn = h('button', { type: 'submit' }, 'Import') as HTMLButtonElement;
  root.replaceChildren(
    h('h1', {}, 'Identity'),
    h('p', {}, 'Your nostr identity signs the wallet backup (NIP-60). Offers and trades use a fresh key per offer, derived from the wallet seed, so they are not linked to this identity.'),
    h('dl', { class: 'kv' }, h('dt', {}, 'public key'), h('dd', {}, h('code', { 'data-testid': 'npub' }, nostr.npub(id.pubkey))), h('dt', {}, 'signer'), h('dd', {}, id.kind === 'nip07' ? 'browser extension (NIP-07)' : 'a key kept in this browser')),
    h(
      'div',
      { class: 'row' },
      id.kind === 'local' ? h('button', { type: 'button', onclick: () => nsecBox.replaceChildren(h('p', { class: 'warn' }, 'This secret key controls your identity; keep it private.'), h('code', { 'data-testid': 'nsec' }, id.nsec ?? '')) }, 'Export nsec') : null,
      window.nostr && id.kind !== 'nip07' ? h('button', { type: 'button', onclick: (e: Event) => void act(e.currentTarget as HTMLButtonElement, async () => (await nostr.useExtension(), location.reload())) }, 'Use browser extension (NIP-07)') : null,
      !window.nostr ? h('span', { class: 'muted' }, 'no NIP-07 extension detected') : null,
    ),
    nsecBox,
    h(
      'form',
      {
        class: 'card',
        onsubmit: (e: Event) => {
          e.preventDefault();
          void act(importBtn, async () => {
            await nostr.importNsec(importIn.value);
            location.reload();
          });
        },
      },
      h('h2', {}, 'Import an nsec'),
      importIn,
      importBtn,
    ),
  );
}

// ---------------------------------------------------------------- start

/** One tab runs the wallet and the trade agent (Web Locks); another tab of the same browser says so. */
async function claimTab(): Promise<void> {
  if (!navigator.locks) {
    // not a secure context (Web Locks need https or localhost): a lease in localStorage instead
    const me = Math.random().toString(36).slice(2);
    const held = JSON.parse(localStorage.getItem('ehash-tab') ?? 'null') as { id: string; t: number } | null;
    if (held && Date.now() - held.t < 6000) throw new Error('ehash is already open in another tab of this browser, and its wallet and trades run there. Use that tab, or close it and reload this one.');
    const beat = () => localStorage.setItem('ehash-tab', JSON.stringify({ id: me, t: Date.now() }));
    beat();
    setInterval(beat, 2000);
    window.addEventListener('pagehide', () => localStorage.removeItem('ehash-tab'));
    return;
  }
  const got = await new Promise<boolean>((ok) => {
    void navigator.locks.request('ehash-wallet', { ifAvailable: true }, (lock) => {
      ok(lock !== null);
      // held for the life of the page
      return lock ? new Promise<void>(() => undefined) : undefined;
    });
  });
  if (!got) throw new Error('ehash is already open in another tab of this browser, and its wallet and trades run there. Use that tab, or close it and reload this one.');
}

async function start() {
  await claimTab();
  const r = await fetch('/config.json').catch(() => null);
  if (r?.ok) app.cfg = { ...app.cfg, ...(await r.json()) };
  const q = new URLSearchParams(location.search);
  if (q.get('exchange')) app.cfg.exchange = q.get('exchange')!;
  if (!app.cfg.exchange) throw new Error('no exchange configured: open this page from `ehash web --exchange URL` or add ?exchange=URL');
  app.api = new ExchangeApi(app.cfg.exchange.replace(/\/+$/, ''));
  app.info = await app.api.info();
  app.relays = app.cfg.relays.length ? app.cfg.relays : app.info.relays;
  app.satMints = app.cfg.sat_mints.map(cashu.normalizeUrl);
  await wallet.ensureIdentity();
  app.identity = await nostr.loadIdentity();
  nostr.pool.automaticallyAuth = () => app.identity.sign;
  wallet.configureBackup(app.identity, app.relays);
  wallet.onBackupStatus(() => redrawSoon());
  await loadMarkets();
  await loadEpochs().catch(() => undefined);
  app.agent = new Agent(app.info, app.relays);
  app.agent.onNotice((text) => notice(text, 'error'));
  await app.agent.start();
  watchMyTrades();
  await wallet.resume();
  wallet.retryEvery(RETRY_MS);
  wallet
    .restorePending()
    .then((n) => n !== null && notice(`restored ${fmt(n)} from the relays' NIP-60 backup; new offers take keys past the ones the relays show`))
    .catch((e) => notice(`restoring the balance from the relays failed: ${errText(e)}; press “Restore from relays” to try again`, 'error'));
  document.getElementById('who')!.textContent = short(nostr.npub(app.identity.pubkey).slice(5));
  const status = document.getElementById('live')!;
  app.api.watch((m) => {
    status.textContent = m.type === 'resync' ? 'reconnecting…' : 'live';
    status.className = m.type === 'resync' ? 'warn' : 'ok';
    if (m.type === 'epoch') void loadEpochs();
    redrawSoon();
  });
  status.textContent = 'live';
  status.className = 'ok';
  // the swap agent runs in this page: warn before closing it mid-trade (it resumes, or refunds
  // after the locktime, when the page is opened again)
  let underway = 0;
  const countBusy = () => void app.agent.busyTrades().then((n) => (underway = n));
  app.agent.onChange(countBusy);
  countBusy();
  window.addEventListener('beforeunload', (e) => {
    if (underway > 0) e.preventDefault();
  });
  window.addEventListener('hashchange', route);
  route();
}

/** Tell the user when a trade of theirs is matched and when it ends, wherever they are in the page. */
function watchMyTrades(): void {
  const seen = new Map<string, string>();
  let first = true;
  const look = async () => {
    for (const t of await app.agent.trades()) {
      const was = seen.get(t.id);
      seen.set(t.id, t.step);
      if (first || was === t.step) continue;
      const what = `${t.role === 'buy' ? 'buying' : 'selling'} ${fmt(t.amount)} ehash for ${fmt(t.sats)} sats`;
      const link = { href: '#/trades', text: 'see it →' };
      if (was === undefined) notice(`trade ${short(t.id)} matched: you are ${what}`, 'ok', link);
      else if (t.step === 'settled') notice(`trade ${short(t.id)} settled: ${t.role === 'buy' ? `you bought ${fmt(t.amount)} ehash for ${fmt(t.sats)} sats` : `you sold ${fmt(t.amount)} ehash for ${fmt(t.sats)} sats`}`, 'ok', link);
      else if (t.step === 'refunded') notice(`trade ${short(t.id)} (${what}) did not settle: your lock came back to you`, 'ok', link);
      else if (t.step === 'failed') notice(`trade ${short(t.id)} (${what}) failed${t.note ? `: ${t.note}` : ''}`, 'error', link);
    }
    first = false;
  };
  void look();
  let pending = false;
  app.agent.onChange(() => {
    if (pending) return;
    pending = true;
    setTimeout(() => void look().finally(() => (pending = false)), 300);
  });
}

start().catch((e) => {
  main().replaceChildren(h('h1', {}, 'Cannot start'), h('p', { class: 'error', role: 'alert' }, errText(e)));
});

// for tests and debugging in the console
(window as unknown as { ehash: unknown }).ehash = { app, store, wallet, trust, cashu };
