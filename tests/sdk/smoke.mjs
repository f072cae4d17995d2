// A plain script (no test runner, no Node APIs) that Deno and Bun run:
// sign in, and over each transport the runtime offers get one create live.
// tests/sdk/runtimes.test.mjs starts the server and reads the JSON line
// this prints.

import { Pulsebase } from "../../web/sdk/pulsebase.js";

const env = (key) => (globalThis.Deno ? globalThis.Deno.env.get(key) : globalThis.process.env[key]);
const exit = (code) => (globalThis.Deno ? globalThis.Deno.exit(code) : globalThis.process.exit(code));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const deadline = setTimeout(() => {
  console.error("timed out");
  exit(1);
}, 30_000);

async function once(n, options) {
  const pb = new Pulsebase(env("PB_URL"), options);
  await pb.signIn(env("PB_EMAIL"), env("PB_PASSWORD"));
  const got = [];
  await pb.collection("notes").subscribe({ ops: ["create"] }, (event) => got.push(event.record.n)).ready;
  await pb.collection("notes").create({ n });
  for (let i = 0; i < 400 && got.length === 0; i++) await sleep(25);
  pb.realtime.close();
  return { transport: pb.realtime.transport, got };
}

try {
  // The runtime's own choice, then SSE read with fetch.
  const results = [await once(1, {}), await once(2, { WebSocket: null, EventSource: null })];
  clearTimeout(deadline);
  console.log(JSON.stringify(results));
  exit(0);
} catch (error) {
  console.error(error);
  exit(1);
}
