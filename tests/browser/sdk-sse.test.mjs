// The JavaScript client's SSE fallback, in a real Chromium (the only place
// with a real EventSource): a page without WebSocket gets every change over
// SSE, and after the server is killed with SIGKILL and started again it
// resumes without gaps or repeats.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { rmSync } from "node:fs";

import { Browser, findChromium } from "./cdp.mjs";
import { startServer } from "./harness.mjs";
import { Pulsebase } from "../../web/sdk/pulsebase.js";

const ADMIN = { PULSEBASE_ADMIN_EMAIL: "admin@sse.test", PULSEBASE_ADMIN_PASSWORD: "sse-admin-password" };

let server;
let browser;
let port;

/** A port nobody listens on now, so the restarted server can take it again. */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function kill9() {
  const exited = new Promise((resolve) => server.child.once("exit", resolve));
  server.child.kill("SIGKILL");
  await exited;
}

before(async () => {
  port = await freePort();
  server = await startServer({ demo: false, port, env: ADMIN });
  browser = await Browser.launch(findChromium());
});

after(async () => {
  if (browser) await browser.close();
  if (server) {
    server.child.kill("SIGKILL");
    rmSync(server.dir, { recursive: true, force: true });
  }
});

test("without WebSocket the client uses SSE and resumes after kill -9 without gaps or repeats", async () => {
  const admin = new Pulsebase(server.url);
  await admin.signIn(ADMIN.PULSEBASE_ADMIN_EMAIL, ADMIN.PULSEBASE_ADMIN_PASSWORD);
  await admin.request("POST", "/api/collections", {
    name: "notes",
    fields: { n: { type: "integer", required: true } },
    rules: { list: "@user != null", view: "@user != null", create: "@user != null" },
  });
  await admin.request("POST", "/api/users", { email: "reader@sse.test", password: "reader-password" });

  const page = await browser.page(`${server.url}/admin/`);
  const transport = await page.eval(`(async () => {
    // A browser (or proxy) without WebSocket: "auto" must pick SSE.
    window.WebSocket = undefined;
    const { Pulsebase } = await import("/sdk/pulsebase.js");
    const pb = new Pulsebase(location.origin, { backoff: { initial: 200, max: 1000 } });
    await pb.signIn("reader@sse.test", "reader-password");
    window.seen = [];
    window.states = [];
    pb.realtime.on("state", (s) => window.states.push(s));
    pb.realtime.on("error", (e) => window.states.push("error: " + e.message));
    const sub = pb.collection("notes").subscribe({ ops: ["create"] }, (event) => window.seen.push({ n: event.record.n, seq: event.seq }));
    await sub.ready;
    window.pb = pb;
    return pb.realtime.transport;
  })()`);
  assert.equal(transport, "sse");

  const notes = admin.collection("notes");
  for (let n = 1; n <= 5; n++) await notes.create({ n });
  await page.waitFor("window.seen.length === 5", { what: "the first five creates over SSE" });

  await kill9();
  server = await startServer({ demo: false, port, dir: server.dir, env: ADMIN });
  // Written before the page has reconnected: only a resume can deliver them.
  await admin.signIn(ADMIN.PULSEBASE_ADMIN_EMAIL, ADMIN.PULSEBASE_ADMIN_PASSWORD);
  for (let n = 6; n <= 10; n++) await notes.create({ n });
  await page.waitFor("window.seen.length >= 10", { timeout: 20_000, what: "the creates made while the page was away" });
  for (let n = 11; n <= 12; n++) await notes.create({ n });
  await page.waitFor("window.seen.length >= 12", { what: "creates after the resume" });
  await new Promise((r) => setTimeout(r, 500)); // room for a late repeat to show up

  const seen = await page.eval("window.seen");
  assert.deepEqual(
    seen.map((e) => e.n),
    Array.from({ length: 12 }, (_, i) => i + 1),
    "every create once, in order",
  );
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i].seq > seen[i - 1].seq, "seqs increase");
  const used = await page.eval("performance.getEntriesByType('resource').map((r) => r.name).filter((n) => n.includes('/api/realtime'))");
  assert.ok(used.length > 0 && used.every((name) => name.includes("/api/realtime/sse?")), `only SSE was used: ${used}`);
  assert.equal(await page.eval("window.pb.realtime.state"), "open");
  await page.eval("window.pb.realtime.close(), true");
  assert.deepEqual(page.errors, []);
});
