// The browser's durable store (IndexedDB): wallet proofs, pending mint operations, offers,
// trades, the outbox of settlement messages and settings. Every write that moves value is
// committed before the network call that depends on it.

const DB_NAME = 'ehash';
const VERSION = 1;
export const STORES = ['kv', 'proofs', 'ops', 'offers', 'trades', 'outbox', 'history'] as const;
export type StoreName = (typeof STORES)[number];
const KEYS: Record<StoreName, string> = {
  kv: 'k',
  proofs: 'secret',
  ops: 'id',
  offers: 'd',
  trades: 'id',
  outbox: 'id',
  history: 'id',
};

let opened: Promise<IDBDatabase> | null = null;

function req<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((ok, fail) => {
    r.onsuccess = () => ok(r.result);
    r.onerror = () => fail(r.error);
  });
}

/** Open (and create) the database. */
export function db(): Promise<IDBDatabase> {
  if (!opened) {
    opened = new Promise((ok, fail) => {
      const r = indexedDB.open(DB_NAME, VERSION);
      r.onupgradeneeded = () => {
        for (const s of STORES) if (!r.result.objectStoreNames.contains(s)) r.result.createObjectStore(s, { keyPath: KEYS[s] });
      };
      r.onsuccess = () => ok(r.result);
      r.onerror = () => fail(new Error(`cannot open the browser database (IndexedDB): ${r.error?.message}; is private browsing blocking storage?`));
    });
  }
  return opened;
}

/** Every record of a store. */
export async function all<T>(store: StoreName): Promise<T[]> {
  const d = await db();
  return req(d.transaction(store).objectStore(store).getAll()) as Promise<T[]>;
}

/** One record. */
export async function get<T>(store: StoreName, key: string): Promise<T | undefined> {
  const d = await db();
  return req(d.transaction(store).objectStore(store).get(key)) as Promise<T | undefined>;
}

/** A batch of writes and deletes, committed together (or not at all). */
export interface Batch {
  put(store: StoreName, value: unknown): void;
  del(store: StoreName, key: string): void;
}

/** Run `f` in one read-write transaction over every store; resolves once it is committed. */
export async function write(f: (b: Batch) => void): Promise<void> {
  const d = await db();
  const tx = d.transaction([...STORES], 'readwrite', { durability: 'strict' });
  f({
    put: (s, v) => tx.objectStore(s).put(v),
    del: (s, k) => tx.objectStore(s).delete(k),
  });
  await new Promise<void>((ok, fail) => {
    tx.oncomplete = () => ok();
    tx.onerror = () => fail(tx.error);
    tx.onabort = () => fail(tx.error ?? new Error('transaction aborted'));
  });
}

/** A setting or small value. */
export async function kvGet<T>(k: string): Promise<T | undefined> {
  const r = await get<{ k: string; v: T }>('kv', k);
  return r?.v;
}

export async function kvSet(k: string, v: unknown): Promise<void> {
  await write((b) => b.put('kv', { k, v }));
}

/** Forget everything (the "reset" button). */
export async function wipe(): Promise<void> {
  const d = await db();
  const tx = d.transaction([...STORES], 'readwrite');
  for (const s of STORES) tx.objectStore(s).clear();
  await new Promise<void>((ok, fail) => {
    tx.oncomplete = () => ok();
    tx.onerror = () => fail(tx.error);
  });
}
