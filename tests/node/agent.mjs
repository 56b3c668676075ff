// A small tool-using agent on the Vercel AI SDK (`ai` + `@ai-sdk/openai-compatible`), run
// against a real `modelladder serve` by tests/gateway/test_frameworks_node.py.
//
//   node tests/node/agent.mjs BASE_URL '[{"prompt": "...", "mode": "generate"|"stream"}, ...]'
//
// Each prompt runs as one agent loop (generateText or streamText with two tools that really
// execute, ending after at most MAX_STEPS model calls). Printed on stdout, one JSON document:
// per prompt the final text, the steps, every tool execution (input and what the tool
// returned) and every HTTP request the SDK made (status, stream flag, the gateway's
// x-modelladder-run-id), and the SDK's warnings, so the test can match them against the
// trace store. Streaming asks for usage (stream_options.include_usage).
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { createRequire } from "node:module";
import { z } from "zod";

const require = createRequire(import.meta.url);
const versions = Object.fromEntries(
  ["ai", "@ai-sdk/openai-compatible", "zod"].map((p) => [p, require(`${p}/package.json`).version]),
);
// The SDK's warnings (a setting the provider cannot send, ...) go into the output, not stderr.
let warnings = [];
globalThis.AI_SDK_LOG_WARNINGS = ({ warnings: w }) => warnings.push(...w);

const MAX_STEPS = 5;
const [base, spec] = process.argv.slice(2);
if (!base || !spec) {
  console.error("usage: node agent.mjs BASE_URL PROMPTS_JSON");
  process.exit(2);
}

let requests = []; // of the prompt being run
let executed = [];

// The SDK's fetch, wrapped only to record what went over the wire.
async function recordingFetch(url, init) {
  const body = init?.body ? JSON.parse(init.body) : null;
  const res = await fetch(url, init);
  requests.push({
    url: String(url),
    status: res.status,
    stream: body?.stream === true,
    tools: (body?.tools ?? []).map((t) => t.function?.name),
    tool_choice: body?.tool_choice ?? null,
    keys: body ? Object.keys(body).sort() : [],
    run_id: res.headers.get("x-modelladder-run-id"),
    ignored: res.headers.get("x-modelladder-ignored"),
    streamed: res.headers.get("x-modelladder-streamed"), // "live", or buffered then replayed
  });
  return res;
}

const provider = createOpenAICompatible({
  name: "modelladder",
  baseURL: `${base}/v1`,
  apiKey: "unused",
  includeUsage: true, // streaming: stream_options.include_usage, so every step has its usage
  fetch: recordingFetch,
});

const tools = {
  get_weather: tool({
    description: "Current weather for a city.",
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => {
      const output = `Sunny, 22 degrees C in ${city}`;
      executed.push({ name: "get_weather", input: { city }, output });
      return output;
    },
  }),
  add: tool({
    description: "Add two numbers.",
    inputSchema: z.object({ a: z.number(), b: z.number() }),
    execute: async ({ a, b }) => {
      const output = a + b;
      executed.push({ name: "add", input: { a, b }, output });
      return output;
    },
  }),
};

function stepSummary(step) {
  return {
    finish_reason: step.finishReason,
    usage: { input: step.usage?.inputTokens ?? null, output: step.usage?.outputTokens ?? null },
    text: step.text,
    tool_calls: step.toolCalls.map((c) => ({ id: c.toolCallId, name: c.toolName, input: c.input })),
    tool_results: step.toolResults.map((r) => ({ id: r.toolCallId, name: r.toolName, output: r.output })),
    tool_errors: step.content
      .filter((p) => p.type === "tool-error")
      .map((p) => ({ id: p.toolCallId, name: p.toolName, error: String(p.error) })),
  };
}

async function runOne({ prompt, mode }) {
  requests = [];
  executed = [];
  warnings = [];
  const args = {
    model: provider.chatModel("ladder"),
    system: "Answer the user's question; use the tools.",
    prompt,
    tools,
    stopWhen: stepCountIs(MAX_STEPS),
    maxRetries: 0, // a retry would be a second run of the same hop
  };
  const out = { prompt, mode };
  try {
    let result;
    if (mode === "stream") {
      const deltas = [];
      const errors = [];
      result = streamText({ ...args, onError: ({ error }) => errors.push(error) });
      for await (const delta of result.textStream) deltas.push(delta);
      out.text_deltas = deltas.length;
      out.streamed_text = deltas.join("");
      out.text = await result.text;
      out.steps = (await result.steps).map(stepSummary);
      out.finish_reason = await result.finishReason;
      if (errors.length) throw errors[0];
    } else {
      result = await generateText(args);
      out.text = result.text;
      out.steps = result.steps.map(stepSummary);
      out.finish_reason = result.finishReason;
    }
  } catch (error) {
    out.error = {
      name: error?.name,
      message: String(error?.message ?? error),
      status: error?.statusCode ?? null,
      body: error?.responseBody ?? null,
    };
  }
  out.requests = requests;
  out.executed = executed;
  out.warnings = warnings;
  return out;
}

const results = [];
for (const item of JSON.parse(spec)) results.push(await runOne(item));
process.stdout.write(JSON.stringify({ node: process.version, versions, results }, null, 1) + "\n");
