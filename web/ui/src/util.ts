// Small helpers shared by every module: hex, hashing, time, DOM building and formatting.
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, hexToBytes, randomBytes } from '@noble/hashes/utils.js';

export { bytesToHex, hexToBytes, randomBytes };

/** sha256 of bytes or of a UTF-8 string, as hex. */
export function sha256Hex(data: Uint8Array | string): string {
  return bytesToHex(sha256(typeof data === 'string' ? new TextEncoder().encode(data) : data));
}

/** sha256 as bytes. */
export function sha256Bytes(data: Uint8Array | string): Uint8Array {
  return sha256(typeof data === 'string' ? new TextEncoder().encode(data) : data);
}

/** Unix seconds now. */
export function now(): number {
  return Math.floor(Date.now() / 1000);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A random id of `n` bytes, hex. */
export function randomId(n = 16): string {
  return bytesToHex(randomBytes(n));
}

/** Whether `s` is lowercase/uppercase hex of exactly `len` characters (any length when omitted). */
export function isHex(s: string, len?: number): boolean {
  return /^[0-9a-fA-F]*$/.test(s) && (len === undefined || s.length === len) && s.length % 2 === 0;
}

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | undefined>;

/** Build an element: `h('button', {onclick: f, class: 'x'}, 'text')`. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v as EventListener);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/** Build an SVG element. */
export function svg(tag: string, attrs: Record<string, string | number> = {}, ...children: (Node | string)[]): SVGElement {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  for (const c of children) e.append(c);
  return e;
}

/** An integer with thin thousands separators. */
export function fmt(n: number | bigint | undefined | null): string {
  if (n === undefined || n === null) return '–';
  return n.toString().replace(/\B(?=(\d{3})+(?!\d))/g, '\u202f');
}

/** A unix time as local date and time. */
export function fmtTime(t: number | undefined): string {
  if (!t) return '–';
  return new Date(t * 1000).toLocaleString();
}

/** "in 42 s" / "3 min ago". */
export function fmtRelative(t: number, from = now()): string {
  const d = t - from;
  const a = Math.abs(d);
  const s = a < 120 ? `${a} s` : a < 7200 ? `${Math.round(a / 60)} min` : `${Math.round(a / 3600)} h`;
  return d >= 0 ? `in ${s}` : `${s} ago`;
}

/** The first 8 characters of an id. */
export function short(id: string): string {
  return id.length > 12 ? `${id.slice(0, 8)}…` : id;
}

/** An error's message. */
export function errText(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
