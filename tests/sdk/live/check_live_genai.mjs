// @google/genai's Live client (`ai.live.connect`, Node, the `ws` package underneath) through the
// proxy. Run by scripts/sdk-check.sh with LIVE_PROXY_URL (the TLS proxy; NODE_EXTRA_CA_CERTS
// trusts its throw-away CA) and CLIENT_TOKEN set. The JS SDK sends the token as `?key=`.
import { GoogleGenAI, Modality } from "@google/genai";

const ai = new GoogleGenAI({ apiKey: process.env.CLIENT_TOKEN, httpOptions: { baseUrl: process.env.LIVE_PROXY_URL, apiVersion: "v1beta" } });
const MODEL = "gemini-live-2.5-flash";
const PIECES = Number(process.env.LIVE_PIECES || 4);
const DELAY = Number(process.env.LIVE_DELAY_MS || 200);
let passed = 0;
function assert(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}
async function check(name, fn) {
  await fn();
  passed += 1;
  console.log(`ok   genai-live-ts ${name}`);
}

await check("connect, echo in several frames spread over time, usageMetadata", async () => {
  const pieces = [];
  let usage = null;
  let done;
  const finished = new Promise((resolve, reject) => { done = { resolve, reject }; });
  const sent = { at: 0 };
  const session = await ai.live.connect({
    model: MODEL,
    config: { responseModalities: [Modality.TEXT] },
    callbacks: {
      onmessage: (m) => {
        for (const p of m.serverContent?.modelTurn?.parts ?? []) if (p.text) pieces.push([p.text, Date.now() - sent.at]);
        if (m.usageMetadata) usage = m.usageMetadata;
        if (m.serverContent?.turnComplete) done.resolve();
      },
      onerror: (e) => done.reject(new Error(`live error: ${e.message}`)),
      onclose: (e) => { if (e.code !== 1000) done.reject(new Error(`closed ${e.code} ${e.reason}`)); },
    },
  });
  sent.at = Date.now();
  session.sendClientContent({ turns: [{ role: "user", parts: [{ text: "hello from node" }] }], turnComplete: true });
  await finished;
  session.close();
  assert(pieces.map((p) => p[0]).join("") === "hello from node", JSON.stringify(pieces));
  assert(pieces.length === PIECES, JSON.stringify(pieces));
  const spread = pieces[pieces.length - 1][1] - pieces[0][1];
  assert(spread >= (PIECES - 1) * DELAY * 0.7, `pieces came together: ${JSON.stringify(pieces)}`);
  assert(usage && usage.totalTokenCount > 0, JSON.stringify(usage));
  console.log(`     ${pieces.length} frames over ${spread} ms: ${JSON.stringify(pieces.map((p) => p[1]))} ms`);
});

console.log(`${passed} passed, 0 failed`);
