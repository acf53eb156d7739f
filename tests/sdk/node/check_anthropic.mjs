// The official @anthropic-ai/sdk (TypeScript SDK, run as ESM on Node) against the proxy's
// Anthropic Messages routes. Run by scripts/sdk-check.sh with PROXY_URL and CLIENT_TOKEN set,
// NODE_PATH at the installed SDK; the proxy aliases claude-* to gemini-2.5-flash.
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({ baseURL: process.env.PROXY_URL, apiKey: process.env.CLIENT_TOKEN, maxRetries: 0 });
const MODEL = "claude-haiku-4-5";
const TOOLS = [{ name: "get_weather", description: "The weather of a city",
  input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } }];
let passed = 0;
async function check(name, fn) {
  await fn();
  passed += 1;
  console.log(`ok   anthropic-ts ${name}`);
}
function assert(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}

await check("message", async () => {
  const m = await client.messages.create({ model: MODEL, max_tokens: 128, messages: [{ role: "user", content: "Hello" }] });
  assert(m.type === "message" && m.model === MODEL && m.stop_reason === "end_turn", JSON.stringify(m));
  assert(m.content[0].type === "text" && m.content[0].text.includes("Hello"), JSON.stringify(m.content));
});

await check("stream with finalMessage", async () => {
  const kinds = [];
  const s = client.messages.stream({ model: MODEL, max_tokens: 128, messages: [{ role: "user", content: "Count" }] });
  s.on("streamEvent", (e) => kinds.push(e.type));
  const final = await s.finalMessage();
  assert(kinds[0] === "message_start" && kinds.at(-1) === "message_stop", kinds.join(","));
  assert(final.content[0].text.length > 0 && final.stop_reason === "end_turn", JSON.stringify(final));
});

await check("tool use over two turns", async () => {
  const messages = [{ role: "user", content: "Weather in Paris?" }];
  const first = await client.messages.create({ model: MODEL, max_tokens: 128, tools: TOOLS, messages });
  const call = first.content.find((b) => b.type === "tool_use");
  assert(first.stop_reason === "tool_use" && call && call.input.city === "Paris", JSON.stringify(first));
  messages.push({ role: "assistant", content: first.content });
  messages.push({ role: "user", content: [{ type: "tool_result", tool_use_id: call.id, content: "sunny" }] });
  const second = await client.messages.create({ model: MODEL, max_tokens: 128, tools: TOOLS, messages });
  assert(second.content[0].text.includes("sunny"), JSON.stringify(second));
});

await check("count_tokens", async () => {
  const r = await client.messages.countTokens({ model: MODEL, messages: [{ role: "user", content: "Hello there" }] });
  assert(r.input_tokens > 0, JSON.stringify(r));
});

await check("wrong token -> AuthenticationError", async () => {
  const bad = new Anthropic({ baseURL: process.env.PROXY_URL, apiKey: "wrong", maxRetries: 0 });
  try {
    await bad.messages.create({ model: MODEL, max_tokens: 10, messages: [{ role: "user", content: "x" }] });
  } catch (e) {
    assert(e instanceof Anthropic.AuthenticationError && e.status === 401, String(e));
    return;
  }
  throw new Error("no AuthenticationError");
});

console.log(`${passed} passed, 0 failed`);
