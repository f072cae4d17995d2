// The records page for newcomers, in a real headless Chromium against the
// real server (run by tests/browser.rs): the record form (an input per
// field type, the server's errors under the fields they name, a JSON tab),
// the owner column and the total count, a refused filter that says why and
// keeps the rows, and the request log page (which leaves the admin UI's
// own requests out unless asked).

import { test } from "node:test";
import assert from "node:assert/strict";

import { useDemo, signedInPage, shot } from "./harness.mjs";
import { Pulsebase } from "../../web/sdk/pulsebase.js";

const ctx = useDemo();

/** Clicks the element matching `selector` (after accepting any confirm()). */
function click(page, selector) {
  return page.eval(`window.confirm = () => true; document.querySelector(${JSON.stringify(selector)}).click(), true`);
}

/** Sets a select or checkbox the way a person would (change event included). */
function choose(page, selector, value) {
  return page.eval(`(() => { const el = document.querySelector(${JSON.stringify(selector)});
    if (el.type === "checkbox") el.checked = ${JSON.stringify(value)}; else el.value = ${JSON.stringify(value)};
    el.dispatchEvent(new Event("change", { bubbles: true })); return true; })()`);
}

/**
 * Waits for the error in `slot` and checks it sits right under `input`:
 * in the same field box, within a line of the input's bottom edge.
 */
async function assertErrorUnder(page, slot, input, pattern) {
  const shown = await page.waitFor(
    `(() => {
      const error = document.querySelector(${JSON.stringify(slot)});
      const input = document.querySelector(${JSON.stringify(input)});
      if (!error || !input || !error.textContent) return null;
      const gap = error.getBoundingClientRect().top - input.getBoundingClientRect().bottom;
      return { text: error.textContent, sameBox: error.parentElement.contains(input), gap, visible: error.getBoundingClientRect().height > 0 };
    })()`,
    { what: `an error in ${slot}` },
  );
  assert.match(shown.text, pattern);
  assert.ok(shown.sameBox && shown.visible, `the error ${slot} is shown in the same box as ${input}`);
  assert.ok(shown.gap >= 0 && shown.gap < 30, `the error ${slot} sits right under ${input} (gap ${shown.gap}px)`);
}

async function openRecords(page, name) {
  await page.goto(`${ctx.url}/admin/#/records/${name}`);
  await page.waitFor("document.querySelector('#records-live')?.textContent === 'live' && document.querySelector('#records-page')?.textContent", {
    what: "the records page, live",
  });
}

const rowCount = (page) => page.eval("document.querySelectorAll('#records-rows tr').length");

test("the record form: an input per field type, create, edit one field, the server's errors under their fields", async () => {
  await ctx.admin.request("POST", "/api/collections", {
    name: "devices",
    strict: true,
    fields: {
      name: { type: "string", required: true, max_length: 10 },
      temp: { type: "number", min: -40, max: 85 },
      count: { type: "integer" },
      active: { type: "boolean", default: true },
      level: { type: "string", enum: ["info", "warn", "crit"] },
      seen: { type: "datetime" },
      meta: { type: "json" },
      tags: { type: "array", max_length: 3 },
    },
  });
  const page = await signedInPage(ctx);
  await openRecords(page, "devices");
  const kinds = await page.eval(`Object.fromEntries(["name", "temp", "count", "active", "level", "seen", "meta", "tags"].map((f) => {
    const el = document.querySelector('#record-field-' + f);
    return [f, el.tagName === "INPUT" ? el.type : el.tagName.toLowerCase()];
  }))`);
  assert.deepEqual(kinds, { name: "text", temp: "number", count: "number", active: "checkbox", level: "select", seen: "datetime-local", meta: "textarea", tags: "textarea" });
  assert.equal(await page.eval("document.querySelector('#record-field-active').checked"), true, "the default is filled in");
  assert.deepEqual(await page.eval("[...document.querySelectorAll('#record-field-level option')].map((o) => o.textContent)"), ["—", "info", "warn", "crit"]);

  // Create with the form.
  await page.fill("#record-field-name", "gw-1");
  await page.fill("#record-field-temp", "21.5");
  await page.fill("#record-field-count", "3");
  await choose(page, "#record-field-level", "1");
  await page.fill("#record-field-seen", "2026-01-02T03:04:05.000");
  await page.fill("#record-field-meta", '{"site": "roof"}');
  await page.fill("#record-field-tags", '["a", "b"]');
  await page.submit("#record-form");
  const id = await page.waitFor("document.querySelector('#record-status').textContent.match(/^Created (\\S+)\\.$/)?.[1]", { what: "the record to be created" });
  const created = await ctx.admin.collection("devices").get(id);
  const own = ({ id: _i, created: _c, updated: _u, owner: _o, rev: _r, ...fields }) => fields;
  assert.deepEqual(own(created), { name: "gw-1", temp: 21.5, count: 3, active: true, level: "warn", seen: "2026-01-02T03:04:05.000Z", meta: { site: "roof" }, tags: ["a", "b"] });
  assert.equal(await page.eval("document.querySelector('#record-field-name').value"), "", "the form is ready for the next record");
  const row = `#records-rows tr[data-id="${id}"]`;
  await page.waitFor(`document.querySelector('${row}')`, { what: "the new row" });

  // Edit one field: the others are kept as they were.
  await click(page, `${row} button.edit`);
  await page.waitFor("document.querySelector('#record-field-name').value === 'gw-1' && document.querySelector('#record-save').textContent === 'Save'", { what: "the record in the form" });
  assert.equal(await page.eval("document.querySelector('#record-field-seen').value"), "2026-01-02T03:04:05", "shown in UTC");
  await page.fill("#record-field-temp", "22");
  await page.submit("#record-form");
  await page.waitFor("document.querySelector('#record-status').textContent.startsWith('Saved')", { what: "the edit to be saved" });
  const edited = await ctx.admin.collection("devices").get(id);
  assert.deepEqual(own(edited), { ...own(created), temp: 22 });
  assert.equal(edited.rev, 2);

  // Bad input: the server's reasons, each under its field; nothing written.
  await page.fill("#record-field-temp", "500");
  await page.fill("#record-field-name", "much-too-long");
  await page.submit("#record-form");
  await assertErrorUnder(page, "#record-field-temp-error", "#record-field-temp", /must be at most 85/);
  await assertErrorUnder(page, "#record-field-name-error", "#record-field-name", /must be at most 10 characters/);
  assert.match(await page.eval("document.querySelector('#record-error').textContent"), /validation_failed/);
  assert.equal((await ctx.admin.collection("devices").get(id)).rev, 2);
  await page.screenshot(shot("record-form-errors"));

  // A new record without its required field; JSON that does not parse is caught before sending.
  await click(page, "#record-new");
  await page.fill("#record-field-meta", "{oops");
  await page.submit("#record-form");
  await assertErrorUnder(page, "#record-field-meta-error", "#record-field-meta", /not valid JSON/);
  await page.fill("#record-field-meta", "");
  await page.submit("#record-form");
  await assertErrorUnder(page, "#record-field-name-error", "#record-field-name", /is required/);
  assert.equal(await page.eval("document.querySelector('#record-field-meta-error').textContent"), "", "the earlier error is cleared");

  // The JSON tab carries what the form holds, and back.
  await page.fill("#record-field-name", "gw-2");
  await click(page, "#record-tab-json");
  await page.waitFor("!document.querySelector('#record-json').hidden");
  assert.deepEqual(JSON.parse(await page.eval("document.querySelector('#record-editor').value")), { name: "gw-2", active: true });
  await page.fill("#record-editor", JSON.stringify({ name: "gw-3", temp: 5, level: "crit" }));
  await click(page, "#record-tab-form");
  await page.waitFor("!document.querySelector('#record-form-fields').hidden");
  assert.deepEqual(await page.eval("['name', 'temp', 'level'].map((f) => document.querySelector('#record-field-' + f).value)"), ["gw-3", "5", "2"]);
  assert.equal(await page.eval("document.querySelector('#record-field-active').checked"), false, "what the JSON left out is not set");
  assert.deepEqual(page.errors, []);
});

test("records show their owner and the total; a refused filter says why and keeps the rows", async () => {
  await ctx.admin.request("POST", "/api/collections", {
    name: "tasks",
    fields: { title: { type: "string" }, n: { type: "integer" } },
    rules: { create: "'writer' in @user.roles", list: "@user != null", view: "@user != null" },
  });
  const key = await ctx.admin.request("POST", "/api/keys", { name: "gateway-1", roles: ["writer"] });
  const device = new Pulsebase(ctx.url, { apiKey: key.secret });
  const tasks = ctx.admin.collection("tasks");
  await tasks.create([1, 2, 3].map((n) => ({ title: `admin ${n}`, n })));
  await device.collection("tasks").create([4, 5].map((n) => ({ title: `device ${n}`, n })));

  const page = await signedInPage(ctx);
  await openRecords(page, "tasks");
  await page.waitFor("document.querySelector('#records-total').textContent === '5 records in total'", { what: "the total" });
  const owners = await page.waitFor(
    `(() => {
      const cells = [...document.querySelectorAll('#records-rows td[data-label=owner]')];
      const shown = cells.map((td) => [td.textContent, td.title]);
      return shown.every(([text, id]) => text !== id) && shown;
    })()`,
    { what: "owners by email and key name" },
  );
  const me = (await ctx.admin.request("GET", "/api/auth/me")).id;
  assert.deepEqual(owners, [
    ["key: gateway-1", key.id],
    ["key: gateway-1", key.id],
    [ctx.server.email, me],
    [ctx.server.email, me],
    [ctx.server.email, me],
  ]);
  assert.equal(await page.eval("document.querySelector('#records-table thead').textContent.includes('owner')"), true);

  // The total follows live writes, and a filter counts its matches over every page.
  await tasks.create({ title: "admin 6", n: 6 });
  await page.waitFor("document.querySelector('#records-total').textContent === '6 records in total'", { what: "the total to follow a write" });
  await page.fill("#filter-input", `owner = '${key.id}' || n >= 5`);
  await choose(page, "#page-size", "10");
  await page.waitFor("document.querySelector('#records-total').textContent === '3 records match the filter'", { what: "the filtered total" });
  assert.equal(await rowCount(page), 3);
  await page.screenshot(shot("records-owner-total"));

  // A filter the server refuses: its message under the input, where it
  // went wrong, and the rows of the filter that worked stay.
  await page.fill("#filter-input", "n >= = 5");
  await page.submit("#filter-form");
  await assertErrorUnder(page, "#filter-error", "#filter-input", /filter: .*position 5.*\(bad_request\)/);
  assert.equal(await page.eval("document.querySelector('#filter-caret').textContent"), "n >= = 5\n     ^");
  assert.equal(await page.eval("document.querySelector('#filter-kept').textContent"), "The table still shows the previous results.");
  assert.equal(await rowCount(page), 3);
  assert.equal(await page.eval("document.querySelector('#records-total').textContent"), "3 records match the filter");
  assert.equal(await page.eval("document.querySelector('#filter-input').value"), "n >= = 5", "the text stays to be fixed");
  await page.screenshot(shot("records-filter-error"));
  // Fixed: the error goes.
  await page.fill("#filter-input", "n >= 5");
  await page.submit("#filter-form");
  await page.waitFor("document.querySelector('#records-total').textContent === '2 records match the filter' && !document.querySelector('#filter-error').textContent", { what: "the fixed filter" });
  assert.equal(await page.eval("document.querySelector('#filter-kept').hidden && document.querySelector('#filter-caret').hidden"), true);

  // A series collection (the demo's readings) counts its readings too.
  await openRecords(page, "readings");
  const readings = await page.waitFor("document.querySelector('#records-total').textContent.match(/^([\\d,]+) readings in total$/)?.[1]", { what: "the readings total" });
  assert.ok(Number(readings.replace(/,/g, "")) > 0);
  assert.equal(await page.eval("document.querySelectorAll('#records-rows button').length"), 0, "readings have no edit or delete buttons");
  device.realtime.close();
  assert.deepEqual(page.errors, []);
});

test("the request log page: errors with their message, filters, and no token", async () => {
  const secret = "not-a-token-but-kept-secret";
  await fetch(`${ctx.url}/api/realtime/sse?topic=readings&token=${secret}`);
  await fetch(`${ctx.url}/api/collections/nope/records`, { headers: { Authorization: `Bearer ${ctx.admin.token}` } });
  const page = await signedInPage(ctx);
  await page.goto(`${ctx.url}/admin/#/logs`);
  await page.waitFor("document.querySelector('#logs-rows tr')", { what: "the log" });
  await choose(page, "#logs-status", "4xx");
  const rows = await page.waitFor(
    `(() => {
      const rows = [...document.querySelectorAll('#logs-rows tr')].map((tr) => Object.fromEntries([...tr.children].map((td) => [td.dataset.label, td.textContent])));
      return rows.length && rows.every((r) => r.status.startsWith('4')) && rows.some((r) => r.path === '/api/collections/nope/records') && rows;
    })()`,
    { what: "the 4xx requests" },
  );
  const missing = rows.find((r) => r.path === "/api/collections/nope/records");
  assert.deepEqual([missing.method, missing.status, missing.who, missing.error], ["GET", "404", ctx.server.email, "not_found: collection nope not found"]);
  const refused = rows.find((r) => r.path.startsWith("/api/realtime/sse"));
  assert.equal(refused.path, "/api/realtime/sse?topic=readings&token=[redacted]");
  assert.equal(refused.status, "401");
  assert.ok(!(await page.eval("document.body.textContent")).includes(secret), "the token is not on the page");
  await page.fill("#logs-prefix", "/api/realtime");
  await page.submit("#logs-form");
  await page.waitFor("[...document.querySelectorAll('#logs-rows tr')].every((tr) => tr.querySelector('[data-label=path]').textContent.startsWith('/api/realtime'))", { what: "only realtime paths" });
  await page.screenshot(shot("logs"));
  assert.deepEqual(page.errors, []);
});

test("the request log page leaves the admin UI's own requests out unless asked", async () => {
  const page = await signedInPage(ctx);
  // Counts the requests the page sends, whatever client sends them.
  await page.eval("window.sent = []; const send = window.fetch; window.fetch = (url, init) => (window.sent.push(String(url)), send(url, init)); true");
  const polls = (path) => `window.sent.filter((url) => new URL(url, location.href).pathname === ${JSON.stringify(path)}).length`;
  // The dashboard polls /api/stats every second: the UI's own traffic.
  await page.waitFor(`${polls("/api/stats")} >= 3`, { what: "the dashboard's polls" });
  await page.eval("location.hash = '#/logs', true");
  // An app's failed request, sent like curl: no admin UI header.
  const lost = "/api/collections/from-my-app/records";
  const response = await fetch(`${ctx.url}${lost}`, { headers: { Authorization: `Bearer ${ctx.admin.token}` } });
  assert.equal(response.status, 404);
  await page.waitFor(`${polls("/api/logs/requests")} >= 3`, { what: "the log page's polls", timeout: 15_000 });
  const shownPaths = "[...document.querySelectorAll('#logs-rows [data-label=path]')].map((td) => td.textContent)";
  const shown = await page.waitFor(`(() => { const paths = ${shownPaths}; return paths.includes(${JSON.stringify(lost)}) && paths; })()`, { what: "the app's failed request" });
  assert.deepEqual(
    shown.filter((path) => ["/api/stats", "/api/logs/requests", "/admin/"].some((own) => path.startsWith(own))),
    [],
    "the admin UI's own requests are left out by default",
  );
  assert.equal(await page.eval("document.querySelector('#logs-own').checked"), false);
  const summary = await page.eval("document.querySelector('#logs-summary').textContent");
  assert.match(summary, /^\d+ requests? · \d+ of the admin UI's own hidden · the server keeps the last 500$/);
  await page.screenshot(shot("logs-own-hidden"));

  // Asked for, they are there; the log's own reads are never kept.
  await choose(page, "#logs-own", true);
  const all = await page.waitFor(`(() => { const paths = ${shownPaths}; return paths.includes("/api/stats") && paths.includes("/admin/pages/logs.js") && paths; })()`, { what: "the admin UI's requests and files" });
  assert.ok(all.includes(lost));
  assert.ok(!all.some((path) => path.startsWith("/api/logs/requests")), "reads of the log are not kept");
  assert.doesNotMatch(await page.eval("document.querySelector('#logs-summary').textContent"), /hidden/);
  assert.deepEqual(page.errors, []);
});
