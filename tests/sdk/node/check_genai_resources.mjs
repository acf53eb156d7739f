// @google/genai (Node) through the proxy (issue 12): interactions over several turns (with the
// SDK's automatic continuation hops), a streamed interaction, a background one polled later,
// batches, file search stores and files listed across the pool's projects. The mock upstream
// keeps every resource in the project of the key that made it and refuses other projects' keys,
// so every success proves the call landed in the right project. Run by scripts/sdk-check.sh.
import { GoogleGenAI } from "@google/genai";

const PROXY = process.env.PROXY_URL;
const TOKEN = process.env.CLIENT_TOKEN;
const MODEL = "gemini-2.5-flash";
const HOPS = Number(process.env.INTERACTION_HOPS || "2");
let passed = 0;
let failed = 0;

function assert(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}

async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   genai-ts ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAILED genai-ts ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

const client = (apiVersion = "v1beta") => new GoogleGenAI({ apiKey: TOKEN, httpOptions: { baseUrl: PROXY, apiVersion } });
const textOf = (i) => JSON.stringify(i.steps ?? i.outputs ?? i);

for (const version of ["v1beta", "v1"]) {
  await check(`interactions: continuation hops, three turns, get (${version})`, async () => {
    const ai = client(version);
    let turn = await ai.interactions.create({ model: MODEL, input: "Say hello" });
    assert(turn.status === "completed", `status ${turn.status}`);
    assert((turn.continuation_ids ?? []).length === HOPS || HOPS === 1, `continuation ids ${JSON.stringify(turn.continuation_ids)}`);
    for (const n of [2, 3]) {
      turn = await ai.interactions.create({ model: MODEL, input: `turn ${n}`, previous_interaction_id: turn.id });
      assert(textOf(turn).includes(`(turn ${n})`), textOf(turn));
    }
    const got = await ai.interactions.get(turn.id);
    assert(got.id === turn.id && got.status === "completed", JSON.stringify(got));
  });
}

await check("interactions stream, then a turn on its id", async () => {
  const ai = client();
  const stream = await ai.interactions.create({ model: MODEL, input: "Stream it", stream: true });
  const kinds = [];
  let id = null;
  for await (const event of stream) {
    kinds.push(event.event_type);
    if (event.event_type === "interaction.created" && !id) id = event.interaction.id;
  }
  assert(kinds[0] === "interaction.created" && kinds.at(-1) === "interaction.completed", kinds.join(","));
  const next = await ai.interactions.create({ model: MODEL, input: "and now?", previous_interaction_id: id });
  assert(textOf(next).includes("(turn 2)"), textOf(next));
});

await check("interactions background, polled", async () => {
  const ai = client();
  const i = await ai.interactions.create({ model: MODEL, input: "Later", background: true });
  assert(i.status === "in_progress", i.status);
  const done = await ai.interactions.get(i.id);
  assert(done.status === "completed" && done.usage.total_tokens > 0, JSON.stringify(done));
});

await check("batches create/get, inline results", async () => {
  const ai = client();
  const job = await ai.batches.create({ model: MODEL, src: [{ contents: [{ role: "user", parts: [{ text: "one" }] }] }] });
  assert(job.name.startsWith("batches/"), job.name);
  const got = await ai.batches.get({ name: job.name });
  assert(got.state === "JOB_STATE_SUCCEEDED", got.state);
});

await check("file search store create, upload, grounding", async () => {
  const ai = client();
  const store = await ai.fileSearchStores.create({ config: { displayName: "Docs" } });
  assert(store.name.startsWith("fileSearchStores/"), store.name);
  const op = await ai.fileSearchStores.uploadToFileSearchStore({
    fileSearchStoreName: store.name, file: new Blob(["some text"], { type: "text/plain" }), config: { mimeType: "text/plain" },
  });
  assert(op.done, JSON.stringify(op));
  for (let n = 0; n < 3; n++) {
    const r = await ai.models.generateContent({
      model: MODEL, contents: "What do the docs say?", config: { tools: [{ fileSearch: { fileSearchStoreNames: [store.name] } }] },
    });
    assert(r.text.includes(store.name), r.text);
  }
});

await check("files of every project listed, each served by its project", async () => {
  const ai = client();
  const made = [];
  for (let n = 0; n < 4; n++) {
    const f = await ai.files.upload({ file: new Blob([`file ${n}`], { type: "text/plain" }), config: { mimeType: "text/plain" } });
    made.push(f.name);
  }
  for (const name of made) assert((await ai.files.get({ name })).name === name, name);
  const listed = [];
  for await (const f of await ai.files.list({ config: { pageSize: 1 } })) listed.push(f.name);
  for (const name of made) assert(listed.includes(name), `${name} in ${listed}`);
  assert(new Set(listed).size === listed.length, `each once: ${listed}`);
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
