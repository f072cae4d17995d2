// The client's calls for series collections against the real server:
// batch ingest answers, time-range lists, `latest`, `aggregate`, and
// InfluxDB line protocol with `writeLines`. Each answer is compared with
// what the test itself wrote, computed here on its own.
// Run by tests/sdk.rs, or by hand:
//   PULSEBASE_BIN=target/debug/pulsebase node --experimental-websocket --test tests/sdk/series.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { Pulsebase, PulsebaseError } from "../../web/sdk/pulsebase.js";
import { Server, adminClient } from "./harness.mjs";

const T0 = Date.UTC(2026, 11, 3, 8, 0, 0);
const MINUTE = 60_000;

/** Twelve readings over three minutes, two devices taking turns. */
const READINGS = Array.from({ length: 12 }, (_, i) => ({
  device: i % 2 ? "gw-2" : "gw-1",
  site: i % 2 ? "south" : "north",
  temp: 20 + i * 0.25,
  ts: T0 + i * 15_000,
}));
/** Written last but read 5 s after T0: `latest` must go by time, not by write order. */
const LATE = { device: "gw-1", site: "north", temp: 30, ts: T0 + 5_000 };

const line = (r) => `env,device=${r.device},site=${r.site} temp=${r.temp} ${r.ts}`;

let server;
let admin;
let gateway;

before(async () => {
  server = await new Server().start();
  admin = await adminClient(server);
  await admin.request("POST", "/api/collections", {
    name: "readings",
    kind: "series",
    series: "device",
    time: "ts",
    fields: {
      device: { type: "string", required: true },
      site: { type: "string" },
      temp: { type: "number" },
      ts: { type: "datetime" },
    },
    rules: { list: "@user != null", view: "@user != null", create: "'device' in @user.roles" },
  });
  // Gateways write with an API key, as the series docs set them up.
  const key = await admin.request("POST", "/api/keys", { name: "gw", roles: ["device"] });
  gateway = new Pulsebase(server.url, { apiKey: key.secret });

  // The first eight as one JSON batch, the last four as line protocol.
  const batch = await gateway.collection("readings").create(READINGS.slice(0, 8));
  assert.deepEqual(Object.keys(batch).sort(), ["count", "first_seq", "last_seq"]);
  assert.equal(batch.count, 8);
  assert.equal(batch.last_seq - batch.first_seq, 7);
  const wrote = await gateway.writeLines("readings", READINGS.slice(8).map(line), { precision: "ms" });
  assert.equal(wrote, undefined);
});

after(async () => {
  await server?.stop();
});

/** Every reading the admin may list, all pages. */
async function everything(params = {}) {
  const all = [];
  let cursor;
  do {
    const page = await admin.collection("readings").list({ ...params, cursor, limit: 5 });
    all.push(...page.items);
    cursor = page.next_cursor ?? undefined;
  } while (cursor);
  return all;
}

test("create answers a series batch with its count and seqs, returns items when asked, and an idempotency key makes a retry write nothing", async () => {
  const readings = gateway.collection("readings");
  const first = await readings.create(LATE, { returnItems: true, idempotencyKey: "late-1" });
  assert.equal(first.count, 1);
  assert.equal(first.first_seq, first.last_seq);
  assert.equal(first.items.length, 1);
  assert.equal(first.items[0].ts, new Date(LATE.ts).toISOString());
  assert.equal(first.items[0].id.length, 13);
  const again = await readings.create(LATE, { returnItems: true, idempotencyKey: "late-1" });
  assert.deepEqual([again.first_seq, again.last_seq], [first.first_seq, first.last_seq], "the retry answers as the first did");
  assert.equal((await everything()).length, READINGS.length + 1, "the retry wrote nothing");
});

test("list takes a time range (Date, milliseconds or RFC 3339) and pages with the cursor", async () => {
  const readings = admin.collection("readings");
  const inRange = READINGS.filter((r) => r.ts >= T0 + MINUTE && r.ts < T0 + 2 * MINUTE);
  assert.equal(inRange.length, 4);
  const page = await readings.list({ from: new Date(T0 + MINUTE), to: T0 + 2 * MINUTE, limit: 3 });
  assert.deepEqual(page.items.map((r) => r.temp), inRange.slice(0, 3).map((r) => r.temp));
  assert.ok(page.next_cursor, "a second page");
  const rest = await readings.list({ from: new Date(T0 + MINUTE), to: T0 + 2 * MINUTE, limit: 3, cursor: page.next_cursor });
  assert.deepEqual(rest.items.map((r) => r.temp), inRange.slice(3).map((r) => r.temp));
  assert.equal(rest.next_cursor, null);

  const newest = await readings.list({ from: new Date(T0 + MINUTE).toISOString(), to: new Date(T0 + 2 * MINUTE), sort: "-time" });
  assert.deepEqual(newest.items.map((r) => r.temp), inRange.map((r) => r.temp).reverse());
});

test("aggregate answers what was written, with agg as a list or as a string", async () => {
  const readings = admin.collection("readings");
  const written = [...READINGS, LATE];
  // The same buckets computed here: per device and minute.
  const expected = new Map();
  for (const r of written) {
    const t = new Date(Math.floor(r.ts / MINUTE) * MINUTE).toISOString();
    const key = `${r.device} ${t}`;
    const b = expected.get(key) || { t, group: { device: r.device }, temps: [] };
    b.temps.push(r.temp);
    expected.set(key, b);
  }
  const want = [...expected.values()]
    .map(({ t, group, temps }) => ({
      t,
      group,
      values: { "avg(temp)": temps.reduce((a, b) => a + b, 0) / temps.length, "max(temp)": Math.max(...temps), "count()": temps.length },
    }))
    .sort(byGroupAndTime);
  assert.equal(want.length, 6);

  const range = { from: new Date(T0), to: T0 + 3 * MINUTE, bucket: "1m", group: "device" };
  const listed = await readings.aggregate({ ...range, agg: ["avg(temp)", "max(temp)", "count()"] });
  assert.deepEqual([...listed.buckets].sort(byGroupAndTime), want);
  const joined = await readings.aggregate({ ...range, agg: "avg(temp),max(temp),count()" });
  assert.deepEqual(joined, listed);

  // A filter, no group, and fill: the minutes the filter empties are nulls.
  const cold = written.filter((r) => r.temp < 21);
  assert.ok(cold.every((r) => r.ts < T0 + MINUTE));
  const filled = await readings.aggregate({ from: T0, to: T0 + 3 * MINUTE, bucket: "1m", agg: "max(temp)", filter: "temp < 21", fill: "null" });
  assert.deepEqual(filled.buckets, [
    { t: new Date(T0).toISOString(), group: {}, values: { "max(temp)": Math.max(...cold.map((r) => r.temp)) } },
    { t: new Date(T0 + MINUTE).toISOString(), group: {}, values: { "max(temp)": null } },
    { t: new Date(T0 + 2 * MINUTE).toISOString(), group: {}, values: { "max(temp)": null } },
  ]);
});

test("latest gives the newest reading by time of each device, or the newest that passes the filter", async () => {
  const readings = admin.collection("readings");
  const newest = (device, pass = () => true) =>
    [...READINGS, LATE].filter((r) => r.device === device && pass(r)).reduce((a, b) => (b.ts > a.ts ? b : a));
  const { items } = await readings.latest();
  assert.deepEqual(items.map((r) => [r.device, r.temp, r.ts]), ["gw-1", "gw-2"].map((d) => [d, newest(d).temp, new Date(newest(d).ts).toISOString()]));
  const cool = await readings.latest({ filter: "temp < 22" });
  assert.deepEqual(cool.items.map((r) => [r.device, r.temp]), ["gw-1", "gw-2"].map((d) => [d, newest(d, (r) => r.temp < 22).temp]));
  const picked = await readings.latest({ fields: ["device", "temp"] });
  // `id` comes with any choice of fields, as in lists.
  assert.deepEqual(picked.items.map((r) => Object.keys(r).sort()), [["device", "id", "temp"], ["device", "id", "temp"]]);
});

test("writeLines refuses a batch with a bad line, naming the line, and writes nothing of it", async () => {
  const before = await everything();
  const ts = T0 + 170_000;
  const syntax = gateway.writeLines("readings", [`env,device=gw-1 temp=40 ${ts}`, `env,device=gw-1 temp= ${ts}`], { precision: "ms" });
  await assert.rejects(syntax, (e) => {
    assert.ok(e instanceof PulsebaseError, String(e));
    assert.deepEqual([e.status, e.code, e.details.line], [400, "bad_request", 2]);
    assert.match(e.message, /line 2/);
    return true;
  });
  // One string, lines apart; the third line has a string for a number.
  const invalid = gateway.writeLines("readings", `env,device=gw-2 temp=41 ${ts}\n\nenv,device=gw-2 temp="hot" ${ts}`, { precision: "ms" });
  await assert.rejects(invalid, (e) => {
    assert.deepEqual([e.status, e.code, Object.keys(e.details.lines)], [400, "validation_failed", ["3"]]);
    assert.match(JSON.stringify(e.details.lines["3"]), /temp/);
    return true;
  });
  assert.deepEqual(await everything(), before, "nothing of either batch was written");
  // The precision is the unit of the timestamps: seconds here.
  await gateway.writeLines("readings", `env,device=gw-3 temp=1 ${Math.floor((T0 + 175_000) / 1000)}`, { precision: "s" });
  const [written] = await everything({ filter: "device = 'gw-3'" });
  assert.equal(written.ts, new Date(T0 + 175_000).toISOString());
});

function byGroupAndTime(a, b) {
  return a.group.device === b.group.device ? a.t.localeCompare(b.t) : a.group.device.localeCompare(b.group.device);
}
