// How @cashu/cashu-ts sees each mint of MINTS (a JSON array of {url, token?}): the NUTs it reads
// as supported in /v1/info, NUT-17's subscriptions, and, given a token of spent proofs, the states
// a `proof_state` subscription over the mint's WebSocket delivers for them. Prints one JSON line.
import { Mint, MintInfo, Wallet, getDecodedToken } from '@cashu/cashu-ts';

if (typeof WebSocket === 'undefined') throw new Error('this node has no WebSocket (node >= 22, or node 20 with --experimental-websocket)');
const LISTED = [4, 5, 7, 8, 9, 10, 11, 12, 14, 15, 17, 19, 20, 29];
const out = [];
for (const { url, token } of JSON.parse(process.env.MINTS)) {
  const mint = new Mint(url);
  const info = new MintInfo(await mint.getInfo());
  const nuts = [0, 1, 2, 3, 6];
  for (const n of LISTED) {
    const s = info.isSupported(n);
    if (n === 4 || n === 5 ? !s.disabled : s.supported) nuts.push(n);
  }
  nuts.sort((a, b) => a - b);
  const websocket = (info.isSupported(17).params ?? []).map((s) => ({ method: s.method, unit: s.unit, commands: s.commands }));
  let states = [];
  if (token) {
    const ids = (await mint.getKeySets()).keysets.map((k) => k.id);
    const t = getDecodedToken(token, ids);
    const wallet = new Wallet(mint, { unit: t.unit });
    states = await new Promise((resolve, reject) => {
      const seen = new Map();
      const timer = setTimeout(() => reject(new Error(`proof_state at ${url}: ${seen.size} of ${t.proofs.length} states after 15 s`)), 15_000);
      const fail = (e) => {
        clearTimeout(timer);
        reject(e);
      };
      wallet.on
        .proofStateUpdates(
          t.proofs,
          (s) => {
            seen.set(s.Y, s.state);
            if (seen.size === t.proofs.length) {
              clearTimeout(timer);
              resolve([...seen.values()]);
            }
          },
          fail,
        )
        .catch(fail);
    });
    mint.disconnectWebSocket();
  }
  out.push({ url, nuts, websocket, states });
}
console.log(JSON.stringify(out));
process.exit(0);
