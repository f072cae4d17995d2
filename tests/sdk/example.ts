// The client used as docs/sdk.md shows it, type-checked against
// web/sdk/pulsebase.d.ts with `tsc --noEmit --strict` by tests/sdk.rs (it is
// never run). A declaration that disagrees with the docs fails that test.

import Default, {
  Pulsebase,
  PulsebaseError,
  Realtime,
  backoffDelay,
  type AggregateBucket,
  type ConnectionState,
  type PresenceList,
  type PresenceMember,
  type Reading,
  type RecordEvent,
  type ReadingEvent,
  type SeriesBatch,
  type Session,
  type Subscription,
  type TopicMessage,
  type UnsubscribedMessage,
  type User,
} from "../../web/sdk/pulsebase.js";

interface Note {
  text: string;
  done: boolean;
}

interface Climate {
  device: string;
  temp: number;
  ts: string | number;
}

interface Chat {
  text: string;
}

// What a newcomer writes with no narrowing at all: it compiles, and it is
// true, since the fields of a record that left view read as undefined.
export async function newcomer(): Promise<void> {
  type Reading = { sensor: string; value: number };
  const pb = new Pulsebase("http://127.0.0.1:7070");
  await pb.signIn("a@example.com", "pw");
  pb.collection<Reading>("readings").subscribe((e) => {
    console.log(e.op, e.record.sensor, e.record.value);
  });
  pb.collection<Reading>("readings").subscribe((e) => {
    const sensor: string | undefined = e.record.sensor;
    if (e.op !== "delete") {
      const value: number = e.record.value;
      console.log(sensor, value.toFixed(1));
    }
  });
}

export async function example(): Promise<void> {
  const pb = new Pulsebase("http://127.0.0.1:7070", {
    storage: localStorage,
    storageKey: "my-app.session",
    backoff: { initial: 200, max: 10_000 },
    transport: "auto",
  });
  const same: Pulsebase = new Default("");
  const keyed = new Pulsebase("", { apiKey: "pk_example", fetch, WebSocket: null, EventSource: null, transport: "sse" });

  const session: Session = await pb.signIn("you@example.com", "your-password");
  const token: string = session.token;
  const expiresIn: number = session.expires_in;
  await pb.signUp("new@example.com", "a-password", "New");
  await pb.signUp("new2@example.com", "a-password");
  await pb.setup("123456", "admin@example.com", "admin-password", "Admin");
  const refreshed: Session = await pb.refresh();
  const user: User | null = pb.user;
  const current: string | null = pb.token;
  const stop: () => void = pb.onAuthChange((who: User | null) => console.log(who?.email, who?.roles.join(",")));
  stop();

  const notes = pb.collection<Note>("notes");
  const { items, next_cursor } = await notes.list({ filter: "done = false", sort: "-created", limit: 50 });
  const firstText: string | undefined = items[0]?.text;
  const cursor: string | null = next_cursor;
  await notes.list({ cursor: cursor ?? undefined, fields: ["text"] });
  const counted: number | null | undefined = (await notes.list({ limit: 1, total: true })).total;
  void counted;
  await notes.list();
  const note = await notes.create({ text: "hi" });
  const id: string = note.id;
  const again = await notes.get(note.id);
  const done: boolean = again.done;
  await notes.create([{ text: "a" }, { text: "b" }]);
  await notes.update(note.id, { done: true });
  await notes.update(note.id, { done: false }, { ifMatch: 2 });
  await notes.replace(note.id, { text: "whole", done: false }, { ifMatch: "3" });
  await notes.delete(note.id);
  await notes.delete(note.id, { ifMatch: 4 });
  const untyped = await pb.collection("readings").get("01JD");
  const anything: unknown = untyped.temp;

  const readings = pb.collection<Climate, "series">("readings");
  const written: SeriesBatch<Climate> = await readings.create([
    { device: "gw-1", temp: 21.5, ts: "2026-12-03T08:00:10Z" },
    { device: "gw-2", temp: 19, ts: 1796284820000 },
  ]);
  const lastSeq: number = written.last_seq - written.first_seq + written.count;
  const single = await readings.create({ device: "gw-1", temp: 22 }, { idempotencyKey: "gw-1-8813", returnItems: true });
  const stored: Reading<Climate> = single.items[0];
  const storedId: string = stored.id;
  await pb.writeLines("readings", ["env,device=gw-1 temp=22.5 1796284830000"], { precision: "ms" });
  await pb.writeLines("readings", "env,device=gw-2 temp=19.5 1796284830000000000", { idempotencyKey: "gw-2-1" });
  const hour = { from: "2026-12-03T08:00:00Z", to: new Date("2026-12-03T09:00:00Z") };
  const range = await readings.list({ ...hour, sort: "-time", limit: 100 });
  const firstTemp: number | undefined = range.items[0]?.temp;
  await readings.list({ from: 1796284800000, cursor: range.next_cursor ?? undefined });
  const latest = await readings.latest({ filter: "temp > 20" });
  const devices: string[] = latest.items.map((r) => r.device);
  await readings.latest({ fields: ["temp"] });
  const { buckets } = await readings.aggregate({
    ...hour,
    bucket: "1m",
    agg: ["avg(temp)", "max(temp)", "count()"],
    group: "device",
    fill: "null",
  });
  await readings.aggregate({ bucket: "1h", agg: "avg(temp),count()", group: ["device"], filter: "temp > 0", fill: 0 });
  const chart: Array<[string, unknown, number | string | boolean | null]> = buckets.map((b: AggregateBucket) => [b.t, b.group.device, b.values["avg(temp)"]]);
  readings.subscribe({ ops: ["create"] }, (event) => console.log(event.type, event.record.device));
  console.log(lastSeq, storedId, firstTemp, devices, chart);

  await pb.topics.create({ name: "alerts", history: 100 });
  await pb.topics.create({ name: "chat", publish: "@user != null", subscribe: "@user != null" });
  const { seq } = await pb.topics.publish("alerts", { level: "crit" });
  const topics = await pb.topics.list();
  const names: string[] = topics.map((t) => t.name);
  await pb.topics.delete("alerts");

  const backup: Blob = await pb.request<Blob>("GET", "/api/backup", undefined, { as: "blob" });
  const me = await pb.request<{ user: User }>("GET", "/api/auth/me");
  await pb.request("GET", "/api/collections/notes/records", undefined, {
    query: { filter: "done = true", limit: 10, fields: ["text", "done"], cursor: undefined },
    headers: { "X-Request": "1" },
    auth: true,
    retry: false,
  });

  try {
    await notes.create({ text: "" });
  } catch (e) {
    if (e instanceof PulsebaseError) {
      const status: number = e.status;
      const code: string = e.code;
      const message: string = e.message;
      const details: unknown = e.details;
      console.log(status, code, message, details);
    }
  }

  const realtime: Realtime = pb.realtime;
  const sub: Subscription = realtime.subscribe("readings", { ops: ["create"], filter: "temp > 30" }, (event) => {
    // Without a type argument: a collection's events or a topic's messages.
    if (event.type === "event") {
      const op: "create" | "update" | "delete" = event.op;
      console.log(event.seq, op, event.record.id, event.record.temp, event.reason);
    } else {
      const data: unknown = event.data;
      console.log(event.topic, data, event.from);
    }
  });
  const reply = await sub.ready;
  console.log(reply.type, reply.topic, reply.seq, reply.epoch);
  sub.unsubscribe();
  realtime.subscribe("readings/01JD", {}, () => {});
  realtime.subscribe("chat-1", { since: 42 });
  realtime.subscribe<Chat>("chat-1", (m) => console.log(m.seq, m.from, m.data.text.length));
  realtime.subscribe<Chat>("chat-1", { since: 42, onUnsubscribed: (n) => console.log(n.reason) }, (m) => {
    const text: string = m.data.text;
    console.log(text);
  });
  realtime.subscribe("chat-1", (m: TopicMessage<Chat>) => console.log(m.data.text));
  realtime.subscribe("readings", (delivery) => console.log(delivery.topic, delivery.seq));
  const one = notes.subscribe({ record: "01JD", ops: ["update", "delete"] }, (event) => {
    if (event.op !== "delete") {
      const text: string = event.record.text;
      console.log(text);
    } else {
      const gone: string = event.record.id;
      console.log(gone, event.reason === "left" ? "out of view" : event.record.text);
    }
  });
  await one.ready;
  notes.subscribe(null, (event) => console.log(event.topic));
  notes.subscribe((event) => {
    switch (event.op) {
      case "create":
        console.log(event.reason === "entered" ? "into view" : "new", event.record.done);
        break;
      case "update": {
        const why: undefined = event.reason;
        console.log(event.record.rev, event.record.done, why);
        break;
      }
      case "delete":
        // The record as it was, or only its id if it left view.
        if (event.reason !== "left") console.log(event.record.text);
        break;
    }
  });
  const ended = notes.subscribe({ onUnsubscribed: (notice: UnsubscribedMessage) => console.log(notice.reason) });
  ended.unsubscribe();
  readings.subscribe((event: ReadingEvent<Climate>) => {
    const reading: Reading<Climate> = event.record;
    const temp: number = reading.temp;
    console.log(event.op, temp, reading.owner);
  });

  const published: number = await realtime.publish("chat-1", { text: "hi" });
  await pb.topics.create({ name: "room", presence: true });
  realtime.subscribe("room");
  const who: PresenceList = await realtime.presence("room");
  const members: PresenceMember[] = who.members ?? [];
  const labels: string[] = members.map((m) => `${m.connection} ${m.user?.name ?? "anonymous"} since ${m.since}`);
  const stopPresence: () => void = realtime.onPresence("room", {
    join: (m) => console.log(m.type, m.topic, m.connection, m.user?.id),
    leave: (m) => console.log(m.connection),
    count: (n: number, message) => console.log(n, message.topic, who.count),
  });
  stopPresence();
  realtime.on("join", (j) => console.log(j.connection, j.since));
  realtime.on("presence", (c) => console.log(c.count));
  console.log(labels);
  const answer = await realtime.request("ping");
  const offState = realtime.on("state", (s: ConnectionState) => console.log(s));
  realtime.on("error", (e) => console.log(e.message, e instanceof PulsebaseError ? e.code : ""));
  realtime.on("welcome", (w) => console.log(w.connection, w.heartbeat, w.user?.id));
  realtime.on("unsubscribed", (u) => console.log(u.topic, u.reason));
  offState();
  const state: ConnectionState = realtime.state;
  const transport: "ws" | "sse" = realtime.transport;
  realtime.connect();
  realtime.close();

  const wait: number = backoffDelay(3, { initial: 500, max: 30_000 });
  const typed: RecordEvent<Note> | null = null;
  const changed: Session = await pb.changePassword("old-password", "new-password");
  await pb.requestPasswordReset("you@example.com");
  await pb.resetPassword("pr_from_the_link", "new-password");
  await pb.requestVerification();
  const confirmed: boolean = (await pb.verifyEmail("ev_from_the_link")).verified;
  console.log(changed.token, confirmed);
  await pb.signOut();
  console.log(same, keyed, token, expiresIn, refreshed, user, current, firstText, id, done, anything, seq, names);
  console.log(backup, me.user.email, published, answer.id, state, transport, wait, typed);
}

// Declarations that accept anything would let these through.
export function misuse(pb: Pulsebase): void {
  // @ts-expect-error: ops are create, update and delete
  pb.realtime.subscribe("readings", { ops: ["upsert"] });
  // @ts-expect-error: the transport is "auto", "ws" or "sse"
  new Pulsebase("", { transport: "mqtt" });
  // @ts-expect-error: get takes an id
  void pb.collection("notes").get();
  // @ts-expect-error: user is read-only; sign in to change it
  pb.user = null;
  // @ts-expect-error: presence is on or off
  void pb.topics.create({ name: "room", presence: "yes" });
  // @ts-expect-error: a count handler gets the count, a number
  pb.realtime.onPresence("room", { count: (n: string) => console.log(n) });
  // @ts-expect-error: readings are not updated one by one
  void pb.collection<Climate, "series">("readings").update("01JD", { temp: 1 });
  // @ts-expect-error: aggregate is for series collections
  void pb.collection<Note>("notes").aggregate({ bucket: "1m", agg: "count()" });
  // @ts-expect-error: there is no median
  void pb.collection<Climate, "series">("readings").aggregate({ bucket: "1m", agg: ["median(temp)"] });
  // @ts-expect-error: buckets are whole seconds at least (units s, m, h, d)
  void pb.collection<Climate, "series">("readings").aggregate({ bucket: "500ms", agg: "count()" });
  // @ts-expect-error: a batch answer has no items unless asked for
  void pb.collection<Climate, "series">("readings").create([]).then((b) => b.items.length);
  // @ts-expect-error: the precision is ns, us, ms or s
  void pb.writeLines("readings", "env temp=1", { precision: "m" });
  // @ts-expect-error: signing in is pb.signIn; there is no pb.auth
  void pb.auth.signIn("a@example.com", "pw");
  pb.collection<Climate>("readings").subscribe((e) => {
    // @ts-expect-error: a record that left view carries only its id: narrow on op first
    console.log(e.record.temp.toFixed(1));
    if (e.op === "delete" && e.reason === "left") {
      // @ts-expect-error: only the id, whatever the collection holds
      console.log(e.record.device.length);
    }
    // @ts-expect-error: the end of a subscription goes to onUnsubscribed, never to the listener
    if (e.type === "unsubscribed") console.log(e.topic);
    // @ts-expect-error: record events have no data; topic messages do
    console.log(e.data);
  });
  pb.collection<Climate, "series">("readings").subscribe((e) => {
    // @ts-expect-error: readings are only created (dropped ones come as the expired event of realtime.on)
    if (e.op === "delete") console.log(e.seq);
  });
  // @ts-expect-error: a topic message has data, not a record
  pb.realtime.subscribe<Chat>("chat-1", (m) => console.log(m.record));
  // @ts-expect-error: the data is what the type argument says
  pb.realtime.subscribe<Chat>("chat-1", (m) => console.log(m.data.txt));
  // @ts-expect-error: without a type argument a listener hears record events or messages: narrow on type
  pb.realtime.subscribe("chat-1", (m) => console.log(m.data));
}
