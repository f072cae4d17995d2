// Tests of web/sdk/pulsebase.js in Node against the real server binary.
// Run by tests/sdk.rs (cargo test), or by hand:
//   PULSEBASE_BIN=target/debug/pulsebase node --experimental-websocket --test tests/sdk/
// (Node 22+ has WebSocket without the flag.)

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { Pulsebase, PulsebaseError, backoffDelay } from "../../web/sdk/pulsebase.js";
import { ADMIN, Server, adminClient, notesCollection, waitFor } from "./harness.mjs";

test("the TypeScript declarations declare exactly what the module exports", async () => {
  const module = await import("../../web/sdk/pulsebase.js");
  const types = readFileSync(new URL("../../web/sdk/pulsebase.d.ts", import.meta.url), "utf8");
  const declared = [...types.matchAll(/^export (?:declare )?(?:class|function|const) (\w+)/gm)].map((m) => m[1]);
  if (/^export default /m.test(types)) declared.push("default");
  assert.deepEqual(declared.sort(), Object.keys(module).sort());
});

test("backoff delays grow exponentially, stay under the cap and are jittered", () => {
  const backoff = { initial: 100, max: 2000 };
  for (let attempt = 0; attempt < 12; attempt++) {
    const ceiling = Math.min(2000, 100 * 2 ** attempt);
    const delays = Array.from({ length: 200 }, () => backoffDelay(attempt, backoff));
    assert.ok(delays.every((d) => d >= 0 && d < ceiling), `attempt ${attempt}: ${Math.max(...delays)}`);
    if (attempt >= 2) assert.ok(new Set(delays).size > 10, "delays are jittered");
  }
});

test("records, topics and errors over HTTP", async (t) => {
  const server = await new Server().start();
  t.after(() => server.stop());
  const pb = await adminClient(server);
  assert.equal(pb.user.email, ADMIN.email);
  await notesCollection(pb);
  const notes = pb.collection("notes");
  const created = await notes.create({ n: 1 });
  assert.equal((await notes.get(created.id)).n, 1);
  await notes.update(created.id, { n: 2 });
  const batch = await notes.create([{ n: 3 }, { n: 4 }]);
  assert.equal(batch.items?.length ?? batch.length, 2);
  const page = await notes.list({ filter: "n >= 2", sort: "n" });
  assert.deepEqual(page.items.map((r) => r.n), [2, 3, 4]);
  assert.equal(page.total, undefined, "no total unless asked");
  const counted = await notes.list({ filter: "n >= 2", limit: 1, total: true });
  assert.deepEqual([counted.items.length, counted.total], [1, 3]);
  await notes.delete(created.id);
  await assert.rejects(notes.get(created.id), (e) => e instanceof PulsebaseError && e.status === 404 && e.code === "not_found");
  await assert.rejects(notes.create({ n: "x" }), (e) => e.code === "validation_failed");

  await pb.topics.create({ name: "alerts", history: 10 });
  assert.ok((await pb.topics.list()).some((topic) => topic.name === "alerts"));
  const { seq } = await pb.topics.publish("alerts", { level: "crit" });
  assert.ok(seq > 0);

  // Refresh rotates the pair; the old refresh token is refused.
  const before = pb.session.refresh_token;
  await pb.refresh();
  assert.notEqual(pb.session.refresh_token, before);
  const last = pb.session.refresh_token;
  await pb.signOut();
  assert.equal(pb.user, null);
  assert.equal(pb.token, null);
  // Signed out = anonymous: the list rule filters every record away.
  assert.deepEqual((await notes.list()).items, []);
  // The signed-out refresh token is dead on the server too.
  await assert.rejects(
    pb.request("POST", "/api/auth/refresh", { refresh_token: last }, { auth: false }),
    (e) => e instanceof PulsebaseError && e.status === 401,
  );
});

test("realtime resumes across a server kill -9 and restart with no gap and no duplicate", async (t) => {
  const server = await new Server().start();
  t.after(() => server.stop());
  const writer = await adminClient(server);
  await notesCollection(writer);
  const pb = await adminClient(server);
  const seen = [];
  const states = [];
  pb.realtime.on("state", (state) => states.push(state));
  const sub = pb.realtime.subscribe("notes", { ops: ["create"] }, (event) => seen.push(event));
  await sub.ready;

  const write = async (from, to) => {
    for (let n = from; n < to; n++) await writer.collection("notes").create({ n });
  };
  await write(0, 5);
  await waitFor(() => seen.length === 5, "the first 5 events");

  await server.kill();
  await waitFor(() => pb.realtime.state !== "open", "the client to notice the server is gone");
  await server.start();
  // Written while the client is still reconnecting: these come from the
  // change log on resume, not live.
  await write(5, 10);
  await waitFor(() => seen.length >= 10, "the events written around the restart");
  await write(10, 15);
  await waitFor(() => seen.length >= 15, "live events after the reconnect");
  await new Promise((r) => setTimeout(r, 200));

  assert.deepEqual(seen.map((e) => e.record.n), Array.from({ length: 15 }, (_, i) => i), "every event once, in order");
  const seqs = seen.map((e) => e.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  assert.ok(states.filter((s) => s === "open").length >= 2, `reconnected: ${states}`);
  pb.realtime.close();
});

test("realtime survives several restarts in a row while writes go on", async (t) => {
  const server = await new Server().start();
  t.after(() => server.stop());
  const admin = await adminClient(server);
  await notesCollection(admin);
  const pb = await adminClient(server);
  const seen = new Map();
  let duplicates = 0;
  await pb.realtime.subscribe("notes", {}, (event) => {
    if (seen.has(event.record.n)) duplicates++;
    seen.set(event.record.n, event.seq);
  }).ready;
  let n = 0;
  for (let round = 0; round < 3; round++) {
    const writer = await adminClient(server);
    for (let i = 0; i < 5; i++) await writer.collection("notes").create({ n: n++ });
    await server.kill();
    await server.start();
  }
  const writer = await adminClient(server);
  for (let i = 0; i < 5; i++) await writer.collection("notes").create({ n: n++ });
  await waitFor(() => seen.size === n, `all ${n} events`, 20_000);
  assert.equal(duplicates, 0);
  pb.realtime.close();
});

test("the token is refreshed before it expires and handed to the open socket", async (t) => {
  const server = await new Server(["--token-ttl", "3s"]).start();
  t.after(() => server.stop());
  const admin = await adminClient(server);
  await notesCollection(admin);
  const pb = await adminClient(server);
  const welcomes = [];
  pb.realtime.on("welcome", (w) => welcomes.push(w.connection));
  const seen = [];
  await pb.realtime.subscribe("notes", {}, (event) => seen.push(event.record.n)).ready;
  const firstToken = pb.token;
  // Well past the first token's expiry: without the refresh + auth the
  // server would have closed the socket with 4001.
  await new Promise((r) => setTimeout(r, 4500));
  assert.notEqual(pb.token, firstToken, "the token was refreshed");
  const writer = await adminClient(server);
  await writer.collection("notes").create({ n: 7 });
  await waitFor(() => seen.includes(7), "an event after the first token expired");
  assert.equal(welcomes.length, 1, `one connection throughout: ${welcomes}`);
  pb.realtime.close();
});

test("a custom topic over the socket: publish and receive, and a refused subscribe", async (t) => {
  const server = await new Server().start();
  t.after(() => server.stop());
  const pb = await adminClient(server);
  await pb.topics.create({ name: "chat", history: 0 });
  const got = [];
  await pb.realtime.subscribe("chat", {}, (m) => got.push(m.data.text)).ready;
  const seq = await pb.realtime.publish("chat", { text: "hi" });
  assert.ok(seq > 0);
  await waitFor(() => got.length === 1, "the published message");
  assert.deepEqual(got, ["hi"]);

  const anonymous = new Pulsebase(server.url);
  const refused = anonymous.realtime.subscribe("chat", {}, () => {});
  await assert.rejects(refused.ready, (e) => e instanceof PulsebaseError && e.code === "forbidden");
  anonymous.realtime.close();
  pb.realtime.close();
});

test("presence: the list, joins and leaves with who, and counts past presence_max", async (t) => {
  const server = await new Server().start();
  t.after(() => server.stop());
  const a = await adminClient(server);
  t.after(() => a.realtime.close());
  const created = await a.topics.create({ name: "room", presence: true, subscribe: "true" });
  assert.equal(created.presence, true);
  const joins = [];
  const leaves = [];
  const counts = [];
  const stop = a.realtime.onPresence("room", {
    join: (m) => joins.push(m),
    leave: (m) => leaves.push(m),
    count: (n, message) => counts.push([n, message.type]),
  });
  await a.realtime.subscribe("room").ready;
  const aConn = a.realtime.connection;
  await waitFor(() => joins.length === 1, "the own join");
  assert.deepEqual([joins[0].connection, joins[0].user.email, joins[0].user.id], [aConn, undefined, a.user.id]);

  // An anonymous member over the socket, and one over SSE.
  const b = new Pulsebase(server.url);
  t.after(() => b.realtime.close());
  await b.realtime.subscribe("room").ready;
  const bConn = b.realtime.connection;
  const s = new Pulsebase(server.url, { transport: "sse" });
  t.after(() => s.realtime.close());
  const sseJoins = [];
  s.realtime.onPresence("room", { join: (m) => sseJoins.push(m) });
  await s.realtime.subscribe("room").ready;
  await waitFor(() => joins.length === 3, "three joins");
  // The SSE member hears its own join (and b's, if b joined in the same
  // window).
  const sConn = joins[2].connection;
  await waitFor(() => sseJoins.some((m) => m.connection === sConn), "the SSE member's own join");
  assert.equal(joins[1].connection, bConn);
  assert.equal(joins[1].user, null);
  const list = await a.realtime.presence("room");
  assert.equal(list.count, 3);
  assert.deepEqual(list.members.map((m) => m.connection), joins.map((m) => m.connection));
  await assert.rejects(s.realtime.presence("room"), /WebSocket/);

  b.realtime.close();
  await waitFor(() => leaves.length === 1, "b's leave");
  assert.equal(leaves[0].connection, bConn);

  // Past presence_max only the count comes, and the list is not given.
  await a.request("PATCH", "/api/settings", { presence_max: 1 });
  s.realtime.close();
  await waitFor(() => counts.length === 1, "a count");
  assert.deepEqual(counts[0], [1, "presence"]);
  const c = new Pulsebase(server.url);
  t.after(() => c.realtime.close());
  await c.realtime.subscribe("room").ready;
  await waitFor(() => counts.length === 2, "a second count");
  assert.deepEqual(counts[1], [2, "presence"]);
  assert.deepEqual(await a.realtime.presence("room"), { members: null, count: 2 });
  assert.equal(leaves.length, 1, "no leave one by one past presence_max");
  stop();
});
