// What a subscription's listener receives, over the WebSocket and over SSE:
// record events (or a topic's messages) and nothing else, in the shapes
// web/sdk/pulsebase.d.ts declares: the record on create, update and
// delete, only `{id}` when an update took the record out of view. The
// server ending a subscription goes to `onUnsubscribed` and the
// `unsubscribed` event instead, and a listener may be the only argument
// after the topic.

import { test } from "node:test";
import assert from "node:assert/strict";

import { Server, adminClient, waitFor } from "./harness.mjs";

/** The parts of an event the declarations discriminate on, and its record. */
const shape = (e) => ({ type: e.type, op: e.op, reason: e.reason, record: e.record });

for (const transport of ["ws", "sse"]) {
  test(`${transport}: a collection's listener hears record events only, in their declared shapes`, async (t) => {
    const server = await new Server().start();
    t.after(() => server.stop());
    const pb = await adminClient(server, { transport });
    const bare = await adminClient(server, { transport });
    t.after(() => (pb.realtime.close(), bare.realtime.close()));
    await pb.request("POST", "/api/collections", { name: "notes", fields: { n: { type: "integer" } } });

    const filtered = [];
    const ended = [];
    const heard = [];
    pb.realtime.on("unsubscribed", (notice) => heard.push(notice));
    const sub = pb.collection("notes").subscribe({ filter: "n < 10", onUnsubscribed: (notice) => ended.push(notice) }, (e) => filtered.push(e));
    await sub.ready;
    const all = [];
    await bare.collection("notes").subscribe((e) => all.push(e)).ready;

    const notes = pb.collection("notes");
    const { id } = await notes.create({ n: 1 });
    await notes.update(id, { n: 2 });
    await notes.update(id, { n: 20 }); // out of the filter's view
    await notes.update(id, { n: 3 }); // back in
    await notes.delete(id);
    await waitFor(() => filtered.length === 5 && all.length === 5, "five events each");

    const fields = (e) => (e.record.id === id ? e.record.n : "another record");
    assert.deepEqual(filtered.map((e) => [e.op, e.reason, fields(e)]), [
      ["create", undefined, 1],
      ["update", undefined, 2],
      ["delete", "left", undefined],
      ["create", "entered", 3],
      ["delete", undefined, 3],
    ]);
    // Left: the id alone. A delete: the record as it was.
    assert.deepEqual(shape(filtered[2]), { type: "event", op: "delete", reason: "left", record: { id } });
    assert.equal(filtered[4].record.rev, 4);
    assert.deepEqual(all.map((e) => [e.type, e.op, e.reason, e.record.n]), [
      ["event", "create", undefined, 1],
      ["event", "update", undefined, 2],
      ["event", "update", undefined, 20],
      ["event", "update", undefined, 3],
      ["event", "delete", undefined, 3],
    ]);

    await pb.request("DELETE", "/api/collections/notes");
    await waitFor(() => ended.length === 1 && heard.length === 1, "the end of the subscription");
    assert.deepEqual(ended[0], { type: "unsubscribed", topic: "notes", reason: "collection_dropped" });
    assert.deepEqual(heard[0], ended[0]);
    // Nothing but the five events reached the listeners.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(filtered.length, 5);
    assert.equal(all.length, 5);
  });

  test(`${transport}: a topic's listener hears its messages only; its deletion goes to onUnsubscribed`, async (t) => {
    const server = await new Server().start();
    t.after(() => server.stop());
    const pb = await adminClient(server, { transport });
    t.after(() => pb.realtime.close());
    await pb.topics.create({ name: "chat", history: 0 });
    await pb.topics.create({ name: "alerts", history: 0 });

    const chat = [];
    const ended = [];
    await pb.realtime.subscribe("chat", { onUnsubscribed: (notice) => ended.push(notice) }, (m) => chat.push(m)).ready;
    const alerts = [];
    await pb.realtime.subscribe("alerts", (m) => alerts.push(m)).ready;
    await pb.topics.publish("chat", { text: "hi" });
    await pb.topics.publish("alerts", { level: "crit" });
    await waitFor(() => chat.length === 1 && alerts.length === 1, "one message on each topic");
    assert.deepEqual([chat[0].type, chat[0].topic, chat[0].data], ["message", "chat", { text: "hi" }]);
    assert.deepEqual([alerts[0].type, alerts[0].data], ["message", { level: "crit" }]);

    await pb.topics.delete("chat");
    await waitFor(() => ended.length === 1, "the end of the chat subscription");
    assert.deepEqual(ended[0], { type: "unsubscribed", topic: "chat", reason: "topic_deleted" });
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(chat.length, 1, "the notice is not a message");
  });
}
