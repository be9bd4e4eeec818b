// The mints this browser's wallet may use. A mint can print the sats it pays with, so the wallet
// deposits at, receives from and settles trades against only mints the user said they trust
// (protocol §10, "Trust"), and the pool mints of the markets the page serves. Nothing here
// contacts a mint except `lookUp`, which the page calls only when the user asks to see one.
import * as cashu from './cashu';
import * as store from './db';
import { now } from './util';

/** A mint the user trusts, with what it said about itself when they agreed. */
export interface TrustedMint {
  url: string;
  /** The name from its `/v1/info`. */
  name?: string;
  keysets: { id: string; unit: string; active: boolean }[];
  at: number;
}

/** An action needs a mint the user has not trusted (the page asks, then tries again). */
export class Untrusted extends Error {
  constructor(
    readonly mint: string,
    /** Which mint this is for the action: "where the deposit would be", … */
    readonly what: string,
  ) {
    super(`the mint ${mint}, ${what}, is not one you trust. A mint can print the sats it pays with: trust only a mint you know (Wallet → Trusted mints).`);
  }
}

const KEY = 'trusted_mints';
const pools = new Set<string>();

/** The pool mints of the markets the page serves (verified announcements): trusted without asking. */
export function setPoolMints(urls: string[]): void {
  pools.clear();
  for (const u of urls) pools.add(cashu.normalizeUrl(u));
}

/** Whether `url` is the pool mint of a market this page serves. */
export function isPoolMint(url: string): boolean {
  return pools.has(cashu.normalizeUrl(url));
}

/** The mints the user trusts (pool mints not included). */
export async function list(): Promise<TrustedMint[]> {
  return (await store.kvGet<TrustedMint[]>(KEY)) ?? [];
}

/** Whether the wallet may use `url`. */
export async function isTrusted(url: string): Promise<boolean> {
  const u = cashu.normalizeUrl(url);
  return pools.has(u) || (await list()).some((m) => m.url === u);
}

/** Throw {@link Untrusted} unless the wallet may use `url` for `what` ("where the deposit goes", …). */
export async function need(url: string, what: string): Promise<void> {
  if (!(await isTrusted(url))) throw new Untrusted(cashu.normalizeUrl(url), what);
}

/** Ask the mint who it is (`/v1/info`) and for its keysets: the one call here that contacts a mint. */
export async function lookUp(url: string): Promise<Omit<TrustedMint, 'at'>> {
  const u = cashu.normalizeUrl(url);
  if (!/^https?:\/\/[^/\s]+/.test(u)) throw new Error(`${url} is not a mint URL (http://… or https://…)`);
  let name: string | undefined;
  try {
    name = (await cashu.mintOf(u).getInfo()).name;
  } catch (e) {
    throw new Error(`the mint ${u} cannot be reached (${(e as Error).message}); the page shows a mint only after it answered`);
  }
  const keysets = (await cashu.keysets(u, true)).map((k) => ({ id: k.id, unit: k.unit, active: k.active }));
  return { url: u, name, keysets };
}

/** Trust a mint from now on (what `lookUp` showed the user). */
export async function add(m: Omit<TrustedMint, 'at'>): Promise<void> {
  const rest = (await list()).filter((x) => x.url !== m.url);
  await store.kvSet(KEY, [...rest, { ...m, at: now() }]);
}

/** Stop trusting a mint; refused while `users` (open offers, unfinished trades) still need it. */
export async function remove(url: string, users: string[]): Promise<void> {
  const u = cashu.normalizeUrl(url);
  if (pools.has(u)) throw new Error(`${u} is the pool's mint of a market here; it is always trusted`);
  if (users.length) throw new Error(`still used by ${users.join('; ')}: cancel the offers and let the trades finish first`);
  await store.kvSet(KEY, (await list()).filter((x) => x.url !== u));
}
