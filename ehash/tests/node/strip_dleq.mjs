// TOKEN re-encoded by @cashu/cashu-ts without its DLEQ proofs, as cashu-ts sends a token whose
// proofs already match the amount (and as many wallets always do). Prints the token.
import { Mint, getDecodedToken, getEncodedToken } from '@cashu/cashu-ts';

const token = process.env.TOKEN;
const ids = (await new Mint(process.env.MINT).getKeySets()).keysets.map((k) => k.id);
const t = getDecodedToken(token, ids);
if (!t.proofs.every((p) => p.dleq)) throw new Error('the token given should carry DLEQ proofs');
const stripped = getEncodedToken(t, { removeDleq: true });
if (getDecodedToken(stripped, ids).proofs.some((p) => p.dleq)) throw new Error('cashu-ts kept a DLEQ proof');
console.log(stripped);
