// The client in Deno and Bun (whichever of PULSEBASE_DENO and PULSEBASE_BUN
// name a binary; tests/sdk.rs installs both from the npm registry): each
// runs tests/sdk/smoke.mjs against a real server, over its WebSocket and
// over SSE read with fetch.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";

import { ADMIN, Server, adminClient, notesCollection } from "./harness.mjs";

const run = promisify(execFile);
const RUNTIMES = [
  ["deno", process.env.PULSEBASE_DENO, ["run", "--allow-net", "--allow-env", "--allow-read", "--no-prompt"]],
  ["bun", process.env.PULSEBASE_BUN, ["run"]],
];

for (const [name, bin, args] of RUNTIMES) {
  test(`${name}: records and realtime over the WebSocket and over fetch SSE`, { skip: !bin && `PULSEBASE_${name.toUpperCase()} is not set`, timeout: 60_000 }, async (t) => {
    const server = await new Server().start();
    t.after(() => server.stop());
    await notesCollection(await adminClient(server));
    const { stdout } = await run(bin, [...args, "tests/sdk/smoke.mjs"], {
      env: { ...process.env, PB_URL: server.url, PB_EMAIL: ADMIN.email, PB_PASSWORD: ADMIN.password, NO_COLOR: "1" },
      timeout: 45_000,
    }).catch((e) => assert.fail(`${name} failed: ${e.stdout}${e.stderr}`));
    const results = JSON.parse(stdout.trim().split("\n").pop());
    assert.deepEqual(results, [
      { transport: "ws", got: [1] },
      { transport: "sse", got: [2] },
    ]);
  });
}
