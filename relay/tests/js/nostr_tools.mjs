// An independent client (nostr-tools) against the ehash relay: what a stranger can count, and
// publishing a NIP-70 protected event after AUTH. Prints one JSON line of results.
// Run as a module from web/ui (its node_modules has nostr-tools), the relay in RELAY_URL and Alice's
// secret key (hex) in ALICE_SECRET: node --experimental-websocket --input-type=module -e "$(cat this)"
import { Relay } from 'nostr-tools/relay';
import { finalizeEvent, getPublicKey } from 'nostr-tools/pure';

const url = process.env.RELAY_URL;
const aliceHex = process.env.ALICE_SECRET;
const alice = Uint8Array.from(aliceHex.match(/../g).map((b) => parseInt(b, 16)));
const out = {};
const stranger = await Relay.connect(url);
out.strangerCountByAuthor = await stranger.count([{ authors: [getPublicKey(alice)] }], {});
stranger.close();

const relay = await Relay.connect(url);
await new Promise((r) => setTimeout(r, 300)); // the challenge arrives on connect
try {
  out.auth = await relay.auth(async (t) => finalizeEvent(t, alice));
} catch (e) {
  out.auth = `refused: ${e.message}`;
}
const protectedEvent = finalizeEvent({ kind: 10002, created_at: Math.floor(Date.now() / 1000), tags: [['-']], content: '' }, alice);
try {
  out.publishProtected = await relay.publish(protectedEvent);
} catch (e) {
  out.publishProtected = `refused: ${e.message}`;
}
out.ownerCountByAuthor = await relay.count([{ authors: [getPublicKey(alice)] }], {});
relay.close();
console.log(JSON.stringify(out));
process.exit(0);
