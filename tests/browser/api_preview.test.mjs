// The admin UI's API preview (web/admin/pages/api_preview.js) in a real
// headless Chromium against the real `serve --demo` server: reached from
// the collections list, it shows each call for a records collection and
// for the demo's series collection `readings`, with the collection's own
// fields in the example bodies; and the examples it shows are accepted by
// the server as they stand (the client calls of a series collection are
// run as shown).

import { test } from "node:test";
import assert from "node:assert/strict";

import { useDemo, signedInPage, shot } from "./harness.mjs";

const ctx = useDemo();

const NOTES = {
  name: "notes",
  fields: {
    title: { type: "string", required: true, max_length: 80 },
    priority: { type: "integer", min: 1, max: 5 },
    level: { type: "string", enum: ["info", "warn"] },
    done: { type: "boolean", default: false },
    due: { type: "datetime" },
  },
  rules: { list: "@user != null", view: "@user != null", create: "@user != null", update: "owner = @user.id", delete: "owner = @user.id" },
};

/** The text of each section's snippets: `{create: {curl, sdk}, ...}`. */
const snippets = (page) =>
  page.eval(`Object.fromEntries([...document.querySelectorAll('#api-preview .api-call')].map((s) => [
    s.id.replace(/^api-/, ''),
    Object.fromEntries([...s.querySelectorAll('pre')].map((p) => [p.dataset.lang, p.textContent])),
  ]))`);

/** The JSON argument of `name(` in an SDK snippet, up to the matching `)`. */
function argument(sdk, name) {
  const start = sdk.indexOf(`${name}(`) + name.length + 1;
  assert.ok(start > name.length, `no ${name}( in ${sdk}`);
  let depth = 0;
  for (let i = start; i < sdk.length; i++) {
    if (sdk[i] === "[" || sdk[i] === "{") depth++;
    if (sdk[i] === "]" || sdk[i] === "}") depth--;
    if (depth === 0) return JSON.parse(sdk.slice(start, i + 1));
  }
  throw new Error(`unbalanced ${name}( in ${sdk}`);
}

test("the preview of a records collection shows every call with its fields, and its examples work", async () => {
  // useDemo's before hook has signed in by now (hooks of one file may not
  // wait for each other, tests do).
  await ctx.admin.request("POST", "/api/collections", NOTES);
  const page = await signedInPage(ctx);
  await page.goto(`${ctx.url}/admin/#/collections`);
  await page.waitFor("document.querySelector('tr[data-collection=notes] .api-link')", { what: "the API link of notes" });
  await page.eval("document.querySelector('tr[data-collection=notes] .api-link').click(), true");
  await page.waitFor("location.hash === '#/api/notes' && document.querySelector('#api-create pre')", { what: "the preview of notes" });

  const listed = await page.eval("[...document.querySelectorAll('#api-fields tr[data-field]')].map((r) => r.dataset.field)");
  assert.deepEqual(listed.sort(), Object.keys(NOTES.fields).sort());
  const s = await snippets(page);
  assert.deepEqual(Object.keys(s).sort(), ["create", "delete", "get", "list", "realtime", "update"]);
  for (const lang of ["curl", "sdk"]) {
    for (const field of Object.keys(NOTES.fields)) {
      assert.ok(s.create[lang].includes(`"${field}"`), `${lang} create lacks ${field}: ${s.create[lang]}`);
      assert.ok(s.update[lang].includes(`"${field}"`), `${lang} update lacks ${field}`);
    }
  }
  assert.match(s.list.curl, /\/api\/collections\/notes\/records/);
  for (const param of ["filter=", "sort=-created", "limit=50", "cursor="]) assert.ok(s.list.curl.includes(param), `list curl lacks ${param}: ${s.list.curl}`);
  assert.match(s.list.sdk, /next_cursor/);
  assert.match(s.get.sdk, /pb\.collection\("notes"\)\.get\(/);
  assert.match(s.delete.curl, /-X DELETE .*\/api\/collections\/notes\/records\/RECORD_ID/);
  assert.match(s.realtime.curl, /"action":"subscribe","topic":"notes"/);
  assert.match(s.realtime.curl, /\/api\/realtime\/sse\?topic=notes/);
  assert.match(s.realtime.sdk, /pb\.collection\("notes"\)\.subscribe\(/);
  const rules = await page.eval("document.querySelector('#api-update').textContent");
  assert.ok(rules.includes("owner = @user.id"), "the update rule is shown");

  // The example body is one the collection takes, and the filter one it reads.
  const body = argument(s.create.sdk, "create");
  assert.equal(body.level, "info", "an enum field gets one of its values");
  assert.ok(body.priority >= 1 && body.priority <= 5 && Number.isInteger(body.priority), "a bounded integer stays within its bounds");
  const created = await ctx.admin.collection("notes").create(body);
  assert.equal(created.title, body.title);
  const list = argument(s.list.sdk, "list");
  const page1 = await ctx.admin.collection("notes").list(list);
  assert.ok(page1.items.some((r) => r.id === created.id), `the example filter ${list.filter} finds the example record`);

  // The subscription shown runs as it stands: the collection's first field
  // on a create, the id on a delete.
  const logged = [];
  const capture = { log: (...args) => logged.push(args) };
  const sub = await new Function("pb", "console", `return (async () => {\n${s.realtime.sdk}\nreturn sub;\n})()`)(ctx.admin, capture);
  const live = await ctx.admin.collection("notes").create(body);
  await ctx.admin.collection("notes").delete(live.id);
  for (let i = 0; i < 200 && logged.length < 2; i++) await new Promise((r) => setTimeout(r, 25));
  sub.unsubscribe();
  const [first] = Object.keys((await ctx.admin.request("GET", "/api/collections/notes")).fields);
  assert.deepEqual(
    logged.map((args) => args.filter((a) => typeof a !== "number")),
    [["create", body[first]], ["deleted", live.id]],
    s.realtime.sdk,
  );
  await page.screenshot(shot("api-preview-records"));
});

test("the preview of the demo's series collection shows ingest, queries, line protocol and buckets", async () => {
  const page = await signedInPage(ctx);
  await page.goto(`${ctx.url}/admin/#/collections`);
  await page.waitFor("document.querySelector('tr[data-collection=readings] .api-link')", { what: "the API link of readings" });
  await page.eval("document.querySelector('tr[data-collection=readings] .api-link').click(), true");
  await page.waitFor("location.hash === '#/api/readings' && document.querySelector('#api-aggregate pre')", { what: "the preview of readings" });

  const { fields } = await ctx.admin.request("GET", "/api/collections/readings");
  const listed = await page.eval("[...document.querySelectorAll('#api-fields tr[data-field]')].map((r) => r.dataset.field)");
  assert.deepEqual(listed.sort(), Object.keys(fields).sort());
  const s = await snippets(page);
  assert.deepEqual(Object.keys(s).sort(), ["aggregate", "create", "delete-before", "get", "latest", "line-protocol", "list", "realtime"]);
  for (const field of Object.keys(fields)) assert.ok(s.create.curl.includes(`"${field}"`), `create lacks ${field}: ${s.create.curl}`);
  const numbers = Object.keys(fields).filter((f) => fields[f].type === "number");
  assert.ok(s.aggregate.curl.includes(`agg=avg(${numbers[0]}),avg(${numbers[1]}),count()`), s.aggregate.curl);
  assert.match(s.aggregate.curl, /group=device/);
  assert.match(s.latest.curl, /\/api\/collections\/readings\/latest/);
  assert.match(s["line-protocol"].curl, /\/api\/v2\/write\?bucket=readings&precision=ms/);
  const line = s["line-protocol"].curl.match(/--data-binary '([^']+)'/)[1];
  assert.match(line, /^readings,device=gw-1,site=text \S+ \d+$/);
  for (const field of numbers) assert.match(line, new RegExp(`[ ,]${field}=-?\\d`), `line protocol lacks ${field}: ${line}`);
  assert.ok(s.realtime.curl.includes(`"aggregate":{"bucket":"1m","agg":["avg(${numbers[0]})"],"group":["device"]}`), s.realtime.curl);
  assert.match(s["delete-before"].curl, /-X DELETE .*records\?before=/);

  // The client's own calls, not raw requests, for what the client has.
  assert.match(s.latest.sdk, /pb\.collection\("readings"\)\.latest\(/);
  assert.match(s.aggregate.sdk, /pb\.collection\("readings"\)\.aggregate\(/);
  assert.match(s["line-protocol"].sdk, /pb\.writeLines\("readings", /);
  for (const id of ["create", "line-protocol", "list", "latest", "aggregate"]) {
    assert.doesNotMatch(s[id].sdk, /pb\.request\(|fetch\(/, `${id}: ${s[id].sdk}`);
  }
  assert.deepEqual(argument(s.aggregate.sdk, "aggregate").agg, [`avg(${numbers[0]})`, `avg(${numbers[1]})`, "count()"]);

  // The client calls shown run as they stand, and answer as their
  // declarations say.
  const run = (sdk, answer) => new Function("pb", `return (async () => {\n${sdk}\nreturn ${answer};\n})()`)(ctx.admin);
  const written = await run(s.create.sdk, "{ count, first_seq, last_seq }");
  assert.equal(written.count, 2);
  assert.equal(written.last_seq - written.first_seq, 1);
  const again = await run(s.create.sdk, "{ count, first_seq, last_seq }");
  assert.deepEqual(again, written, "the idempotency key shown makes a retry write nothing");
  assert.equal(await run(s["line-protocol"].sdk, "null"), null);
  const latest = await run(s.latest.sdk, "items");
  assert.ok(latest.some((r) => r.device === "gw-2"), "the second device of the example batch has a latest reading");
  assert.deepEqual(latest.map((r) => r.device), [...latest.map((r) => r.device)].sort(), "in source order");
  const buckets = await run(s.aggregate.sdk, "buckets");
  // The demo's devices have written during the hour before the page was drawn.
  assert.ok(buckets.length > 0, "buckets of the last hour");
  for (const b of buckets) {
    assert.deepEqual(Object.keys(b.values).sort(), [`avg(${numbers[0]})`, `avg(${numbers[1]})`, "count()"].sort());
    assert.equal(typeof b.group.device, "string");
  }
  const response = await fetch(`${ctx.url}/api/v2/write?bucket=readings&precision=ms`, {
    method: "POST",
    headers: { Authorization: `Token ${ctx.admin.token}` },
    body: line,
  });
  assert.equal(response.status, 204, await response.text());
  await page.screenshot(shot("api-preview-series"));
});
