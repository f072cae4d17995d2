// The client in Node with no WebSocket and no EventSource (Node 18 and 20
// started without `--experimental-websocket`): realtime runs over SSE read
// from a `fetch` body. tests/sdk.rs runs this file without that flag; on
// Node 22+, which has a WebSocket, `WebSocket: null` takes it away.

import { test } from "node:test";
import assert from "node:assert/strict";

import { Pulsebase, PulsebaseError } from "../../web/sdk/pulsebase.js";
import { ADMIN, Server, adminClient, notesCollection, waitFor } from "./harness.mjs";

const NO_SOCKET = typeof globalThis.WebSocket === "function" ? { WebSocket: null } : {};
// A hang is the failure this file guards against: end it with a clear one.
const LIMIT = { timeout: 60_000 };

test("this Node has neither EventSource nor (without options) a WebSocket for the client", () => {
  assert.equal(typeof globalThis.EventSource, "undefined");
  const major = Number(process.versions.node.split(".")[0]);
  if (major < 22) assert.equal(typeof globalThis.WebSocket, "undefined", "run without --experimental-websocket");
});

test("subscribe over fetch SSE gets creates and resumes after kill -9 without gaps or repeats", LIMIT, async (t) => {
  const server = await new Server().start();
  t.after(() => server.stop());
  const writer = await adminClient(server);
  await notesCollection(writer);
  const pb = await adminClient(server, NO_SOCKET);
  const seen = [];
  const states = [];
  pb.realtime.on("state", (state) => states.push(state));
  const sub = pb.collection("notes").subscribe({ ops: ["create"] }, (event) => seen.push(event));
  const reply = await sub.ready;
  assert.equal(reply.type, "ok");
  assert.equal(pb.realtime.transport, "sse");

  const write = async (from, to) => {
    for (let n = from; n < to; n++) await writer.collection("notes").create({ n });
  };
  await write(0, 5);
  await waitFor(() => seen.length === 5, "the first 5 events over fetch SSE");

  await server.kill();
  await waitFor(() => pb.realtime.state !== "open", "the client to notice the server is gone");
  await server.start();
  // Written before the client is back: only a resume can deliver them.
  await writer.signIn(ADMIN.email, ADMIN.password);
  await write(5, 10);
  await waitFor(() => seen.length >= 10, "the events written around the restart", 20_000);
  await write(10, 15);
  await waitFor(() => seen.length >= 15, "live events after the reconnect");
  await new Promise((r) => setTimeout(r, 300)); // room for a late repeat

  assert.deepEqual(seen.map((e) => e.record.n), Array.from({ length: 15 }, (_, i) => i), "every event once, in order");
  const seqs = seen.map((e) => e.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  assert.ok(states.filter((s) => s === "open").length >= 2, `reconnected: ${states}`);
  pb.realtime.close();
});

test("a subscription cut before its first event gets what was written while it was away", LIMIT, async (t) => {
  const server = await new Server().start();
  t.after(() => server.stop());
  const writer = await adminClient(server);
  await notesCollection(writer);
  await writer.collection("notes").create({ n: -1 }); // before: never delivered
  const pb = await adminClient(server, NO_SOCKET);
  const seen = [];
  await pb.collection("notes").subscribe({ ops: ["create"] }, (event) => seen.push(event.record.n)).ready;
  // No event yet: the stream's opening is the only resume point there is.
  await new Promise((r) => setTimeout(r, 300));
  await server.kill();
  await waitFor(() => pb.realtime.state !== "open", "the client to notice the server is gone");
  await server.start();
  await writer.signIn(ADMIN.email, ADMIN.password);
  await writer.collection("notes").create({ n: 0 });
  await waitFor(() => seen.includes(0), "the create made while the client was away", 20_000);
  assert.deepEqual(seen, [0]);
  pb.realtime.close();
});

test("a subscription the server refuses rejects ready over fetch SSE", LIMIT, async (t) => {
  const server = await new Server().start();
  t.after(() => server.stop());
  const admin = await adminClient(server);
  await admin.topics.create({ name: "chat", history: 0 });
  const anonymous = new Pulsebase(server.url, NO_SOCKET);
  const errors = [];
  anonymous.realtime.on("error", (e) => errors.push(e.code));
  const refused = anonymous.realtime.subscribe("chat", {}, () => {});
  await assert.rejects(refused.ready, (e) => e instanceof PulsebaseError && e.code === "forbidden");
  assert.deepEqual(errors, ["forbidden"]);
  await waitFor(() => anonymous.realtime.state === "closed", "the client to stop");
  anonymous.realtime.close();
});

test("with no usable transport, ready rejects with a clear error instead of hanging", LIMIT, async () => {
  // Nothing listens here: the rejection must come before any connection.
  const url = "http://127.0.0.1:9";
  const ws = new Pulsebase(url, { transport: "ws", WebSocket: null });
  const errors = [];
  ws.realtime.on("error", (e) => errors.push(e));
  await assert.rejects(
    ws.realtime.subscribe("notes", {}, () => {}).ready,
    (e) => e instanceof PulsebaseError && e.code === "transport_unavailable" && /WebSocket/.test(e.message),
  );
  assert.equal(errors.length, 1);
  assert.equal(ws.realtime.state, "closed");

  // A fetch whose bodies cannot be read as a stream (some polyfills).
  const unstreamed = new Pulsebase(url, { WebSocket: null, EventSource: null, fetch: async () => ({ ok: true, status: 200, body: null }) });
  await assert.rejects(
    unstreamed.realtime.subscribe("notes", {}, () => {}).ready,
    (e) => e.code === "transport_unavailable" && /stream/.test(e.message),
  );
  assert.equal(unstreamed.realtime.state, "closed");

  const saved = globalThis.fetch;
  globalThis.fetch = undefined;
  try {
    const none = new Pulsebase(url, { WebSocket: null, EventSource: null });
    await assert.rejects(
      none.realtime.subscribe("notes", {}, () => {}).ready,
      (e) => e.code === "transport_unavailable" && /fetch/.test(e.message),
    );
  } finally {
    globalThis.fetch = saved;
  }
});

test("over fetch SSE a refreshed token reopens the stream before the old one expires", LIMIT, async (t) => {
  const server = await new Server(["--token-ttl", "3s"]).start();
  t.after(() => server.stop());
  await notesCollection(await adminClient(server));
  const pb = await adminClient(server, NO_SOCKET);
  const seen = [];
  const errors = [];
  pb.realtime.on("error", (e) => errors.push(e.code || e.message));
  await pb.collection("notes").subscribe({}, (event) => seen.push(event.record.n)).ready;
  const firstToken = pb.token;
  // Past the first token's expiry: the server ends a stream whose token
  // expired, so events still arriving prove the stream was reopened.
  await new Promise((r) => setTimeout(r, 4500));
  assert.notEqual(pb.token, firstToken, "the token was refreshed");
  const writer = await adminClient(server);
  await writer.collection("notes").create({ n: 7 });
  await waitFor(() => seen.includes(7), "an event after the first token expired");
  assert.deepEqual(errors, []);
  assert.equal(pb.realtime.state, "open");
  pb.realtime.close();
});

test("over fetch SSE a token that expired while the server was down is refreshed on reconnect", LIMIT, async (t) => {
  const server = await new Server(["--token-ttl", "3s"]).start();
  t.after(() => server.stop());
  await notesCollection(await adminClient(server));
  const answers = [];
  const recording = async (url, init) => {
    const response = await fetch(url, init);
    answers.push(`${new URL(url).pathname} ${response.status}`);
    return response;
  };
  const pb = await adminClient(server, { ...NO_SOCKET, fetch: recording, backoff: { initial: 100, max: 500 } });
  const seen = [];
  await pb.collection("notes").subscribe({}, (event) => seen.push(event.record.n)).ready;
  const writer = await adminClient(server);
  await writer.collection("notes").create({ n: 1 });
  await waitFor(() => seen.includes(1), "the first event");
  await server.kill();
  // The refresh due meanwhile fails (nothing listens): the stream comes
  // back with an expired token, is refused with 401, and must refresh.
  await new Promise((r) => setTimeout(r, 4000));
  await server.start();
  await writer.signIn(ADMIN.email, ADMIN.password);
  await writer.collection("notes").create({ n: 9 });
  await waitFor(() => seen.includes(9), "an event after the reconnect", 20_000);
  const refused = answers.indexOf("/api/realtime/sse 401");
  assert.ok(refused >= 0, `the expired token was refused: ${answers}`);
  assert.deepEqual(answers.slice(refused + 1, refused + 3), ["/api/auth/refresh 200", "/api/realtime/sse 200"]);
  pb.realtime.close();
});
