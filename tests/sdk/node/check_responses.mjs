// The official openai Node SDK's Responses API against the proxy. Run by scripts/sdk-check.sh
// with PROXY_URL and CLIENT_TOKEN set; the proxy aliases gpt-* to gemini-2.5-flash.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: `${process.env.PROXY_URL}/v1`, apiKey: process.env.CLIENT_TOKEN, maxRetries: 0 });
const MODEL = "gpt-5-mini";
const TOOLS = [{ type: "function", name: "get_weather", description: "The weather of a city", strict: true,
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false } }];
let passed = 0;
async function check(name, fn) {
  await fn();
  passed += 1;
  console.log(`ok   responses-ts ${name}`);
}
function assert(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}

await check("responses.create", async () => {
  const r = await client.responses.create({ model: MODEL, input: "Hello" });
  assert(r.status === "completed" && r.model === MODEL && r.output_text.includes("Hello"), JSON.stringify(r));
});

await check("responses.stream with finalResponse", async () => {
  const kinds = [];
  const s = client.responses.stream({ model: MODEL, input: "Count" });
  s.on("event", (e) => kinds.push(e.type));
  const final = await s.finalResponse();
  assert(kinds[0] === "response.created" && kinds.at(-1) === "response.completed", kinds.join(","));
  assert(final.output_text.length > 0, JSON.stringify(final));
});

await check("tool call over two turns", async () => {
  const input = [{ role: "user", content: "Weather in Paris?" }];
  const first = await client.responses.create({ model: MODEL, input, tools: TOOLS, store: false });
  const call = first.output.find((i) => i.type === "function_call");
  assert(call && JSON.parse(call.arguments).city === "Paris", JSON.stringify(first));
  input.push(...first.output, { type: "function_call_output", call_id: call.call_id, output: "sunny" });
  const second = await client.responses.create({ model: MODEL, input, tools: TOOLS, store: false });
  assert(second.output_text.includes("sunny"), JSON.stringify(second));
});

await check("previous_response_id", async () => {
  const first = await client.responses.create({ model: MODEL, input: "Weather in Paris?", tools: TOOLS });
  const call = first.output.find((i) => i.type === "function_call");
  const second = await client.responses.create({ model: MODEL, previous_response_id: first.id, tools: TOOLS,
    input: [{ type: "function_call_output", call_id: call.call_id, output: "rain" }] });
  assert(second.output_text.includes("rain"), JSON.stringify(second));
  assert((await client.responses.retrieve(first.id)).id === first.id, "retrieve");
});

await check("wrong token -> AuthenticationError", async () => {
  const bad = new OpenAI({ baseURL: `${process.env.PROXY_URL}/v1`, apiKey: "wrong", maxRetries: 0 });
  try {
    await bad.responses.create({ model: MODEL, input: "x" });
  } catch (e) {
    assert(e instanceof OpenAI.AuthenticationError && e.status === 401, String(e));
    return;
  }
  throw new Error("no AuthenticationError");
});

console.log(`${passed} passed, 0 failed`);
