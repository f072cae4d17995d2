// The collections and records pages in a real headless Chromium against the
// real server (run by tests/browser.rs): schema errors shown next to their
// inputs, create and edit through the form, records updating live across two
// tabs, filter, sort and paging, the demo's live readings, phone size.

import { test } from "node:test";
import assert from "node:assert/strict";

import { useDemo, signedInPage, shot, sidewaysOverflow } from "./harness.mjs";

const ctx = useDemo();

/** The input `name` (field-name, field-default, ...) of the n-th field row. */
const fieldInput = (n, name) => `#fields-rows tr:nth-child(${n}) [name=field-${name}]`;

/** Clicks the element matching `selector` (after accepting any confirm()). */
function click(page, selector) {
  return page.eval(`window.confirm = () => true; document.querySelector(${JSON.stringify(selector)}).click(), true`);
}

/**
 * Waits for the error shown for `key` and checks it sits right under
 * `input`: in the same box and within a line of the input's bottom edge.
 */
async function assertErrorNextTo(page, key, input, pattern) {
  const shown = await page.waitFor(
    `(() => {
      const error = document.querySelector('[data-error-for=${JSON.stringify(key)}]');
      const input = document.querySelector(${JSON.stringify(input)});
      if (!error || !input || !error.textContent) return null;
      const gap = error.getBoundingClientRect().top - input.getBoundingClientRect().bottom;
      return { text: error.textContent, sameBox: error.parentElement.contains(input), gap };
    })()`,
    { what: `an error for ${key}` },
  );
  assert.match(shown.text, pattern);
  assert.ok(shown.sameBox, `the ${key} error is in the same box as ${input}`);
  assert.ok(shown.gap >= 0 && shown.gap < 30, `the ${key} error sits right under its input (gap ${shown.gap}px)`);
}

const noErrorsShown = "[...document.querySelectorAll('#collection-form [data-error-for]')].every((e) => !e.textContent) && !document.querySelector('#collection-error').textContent";

async function missing(path) {
  await assert.rejects(ctx.admin.request("GET", path), (e) => e.status === 404);
}

test("collections: refused definitions show each error next to its input; create, list, edit", async () => {
  const page = await signedInPage(ctx);
  await page.goto(`${ctx.url}/admin/#/collections`);
  await page.waitFor("document.querySelector('#collection-form') && document.querySelector('#collections-rows tr[data-collection=readings]')", { what: "the collections page" });
  await page.fill("#collection-name", "sensors");
  await click(page, "#collection-strict");
  await page.fill(fieldInput(1, "name"), "temp");
  await page.fill(fieldInput(1, "type"), "number");
  await page.fill(fieldInput(1, "min"), "-40");
  await page.fill(fieldInput(1, "default"), "abc");
  await click(page, "#add-field");
  await page.fill(fieldInput(2, "name"), "label");
  await click(page, fieldInput(2, "required"));
  await page.fill(fieldInput(2, "max_length"), "20");
  await page.fill("#rule-list", "@user != null");
  await page.fill("#rule-view", "owner = = 1");
  await click(page, "#event-delete");
  await page.fill("#collection-indexes", "label");
  await page.fill("#retention-max-age", "7d");
  await page.fill("#retention-max-records", "500");
  await page.submit("#collection-form");

  await assertErrorNextTo(page, "rules.view", "#rule-view", /position 8/);
  await assertErrorNextTo(page, "fields.temp.default", fieldInput(1, "default"), /number/);
  assert.match(await page.eval("document.querySelector('#collection-error').textContent"), /validation_failed/);
  await missing("/api/collections/sensors");
  await page.screenshot(shot("collections-errors"));

  await page.fill("#rule-view", "owner = @user.id");
  await page.fill(fieldInput(1, "default"), "21.5");
  await page.submit("#collection-form");
  await page.waitFor("document.querySelector('#collections-rows tr[data-collection=sensors]')", { what: "the new collection in the list" });
  assert.ok(await page.eval(noErrorsShown), "the errors are cleared");
  assert.match(await page.eval("document.querySelector('#collection-saved').textContent"), /Created sensors/);
  const created = await ctx.admin.request("GET", "/api/collections/sensors");
  assert.deepEqual(created.fields, {
    temp: { type: "number", required: false, min: -40, default: 21.5 },
    label: { type: "string", required: true, max_length: 20 },
  });
  assert.deepEqual(created.rules, { list: "@user != null", view: "owner = @user.id", create: null, update: null, delete: null });
  assert.deepEqual(created.events, ["create", "update"]);
  assert.deepEqual(created.indexes, ["label"]);
  assert.deepEqual(created.retention, { max_age: "7d", max_records: 500 });
  assert.equal(created.strict, true);
  assert.match(await page.eval("document.querySelector('#collections-rows tr[data-collection=sensors]').textContent"), /2.*list: @user != null.*view: owner = @user\.id.*create, update.*max age 7d, 500 records/);

  // Edit: open it from its row; the form holds what the server has.
  await click(page, "#collections-rows tr[data-collection=sensors] a.edit-link");
  await page.waitFor("location.hash === '#/collections/sensors' && document.querySelector('#collection-name').value === 'sensors' && document.querySelectorAll('#fields-rows tr').length === 2", {
    what: "the edit form",
  });
  assert.equal(await page.eval("document.querySelector('#collection-name').readOnly"), true);
  assert.equal(await page.eval("document.querySelector('#rule-view').value"), "owner = @user.id");
  assert.equal(await page.eval(`document.querySelector(${JSON.stringify(fieldInput(2, "default"))}).value`), "21.5");

  // A required field that an existing record lacks: the error names the
  // record, next to that field's name.
  const record = await ctx.admin.collection("sensors").create({ label: "old" });
  await click(page, "#add-field");
  await page.fill(fieldInput(3, "name"), "site");
  await click(page, fieldInput(3, "required"));
  await page.fill("#rule-update", "((");
  await page.submit("#collection-form");
  await assertErrorNextTo(page, "rules.update", "#rule-update", /position/);
  await page.fill("#rule-update", "owner = @user.id");
  await page.submit("#collection-form");
  await assertErrorNextTo(page, "fields.site", fieldInput(3, "name"), new RegExp(`record ${record.id}: is required`));
  assert.equal(await page.eval("document.querySelector('[data-error-for=\"rules.update\"]').textContent"), "", "the earlier error is cleared");
  assert.equal((await ctx.admin.request("GET", "/api/collections/sensors")).rules.update, null);

  // Fix: a boolean field instead, and drop a rule and the record cap (nulls in the merge patch).
  await page.fill(fieldInput(3, "name"), "ok");
  await page.fill(fieldInput(3, "type"), "boolean");
  await click(page, fieldInput(3, "required"));
  await page.fill(fieldInput(3, "default"), "true");
  await page.fill("#rule-list", "");
  await page.fill("#retention-max-records", "");
  await page.submit("#collection-form");
  await page.waitFor("document.querySelector('#collection-saved').textContent === 'Saved.'", { what: "the edit to be saved" });
  assert.ok(await page.eval(noErrorsShown), "the errors are cleared");
  const edited = await ctx.admin.request("GET", "/api/collections/sensors");
  assert.deepEqual(edited.fields.ok, { type: "boolean", required: false, default: true });
  assert.equal(Object.keys(edited.fields).length, 3);
  assert.deepEqual(edited.rules, { list: null, view: "owner = @user.id", create: null, update: "owner = @user.id", delete: null });
  assert.equal(edited.retention.max_age, "7d");
  assert.equal(edited.retention.max_records ?? null, null);
  await page.screenshot(shot("collections"));

  // Delete from the list.
  await page.goto(`${ctx.url}/admin/#/collections`);
  await page.waitFor("document.querySelector('#collections-rows tr[data-collection=sensors]')");
  await click(page, "#collections-rows tr[data-collection=sensors] button");
  await page.waitFor("!document.querySelector('#collections-rows tr[data-collection=sensors]')", { what: "the row to go" });
  await missing("/api/collections/sensors");
  assert.deepEqual(page.errors, []);
});

/** The rows shown: [{id, values by column}]. */
function shownRows(page) {
  return page.eval(`(() => {
    const columns = [...document.querySelectorAll('#records-table thead th button.sort')].map((b) => b.dataset.sort);
    return [...document.querySelectorAll('#records-rows tr')].map((tr) => {
      const row = { id: tr.dataset.id };
      columns.forEach((c, i) => (row[c] = tr.children[i].title || tr.children[i].textContent)); // title: the full value
      return row;
    });
  })()`);
}

async function openRecords(page, name) {
  await page.goto(`${ctx.url}/admin/#/records/${name}`);
  await page.waitFor("document.querySelector('#records-live')?.textContent === 'live' && document.querySelector('#records-page')?.textContent", {
    what: "the records page, live",
  });
}

test("records: a create, edit and delete in one tab show live in another; filter, sort and paging", async () => {
  await ctx.admin.request("POST", "/api/collections", { name: "gauges", strict: true, fields: { label: { type: "string", required: true, max_length: 20 }, temp: { type: "number" } } });
  const one = await signedInPage(ctx);
  const two = await signedInPage(ctx);
  await openRecords(one, "gauges");
  await openRecords(two, "gauges");
  await two.waitFor("!document.querySelector('#records-empty').hidden", { what: "the empty hint" });
  await two.eval("window.notReloaded = true");
  assert.deepEqual(await one.eval("[...document.querySelectorAll('#record-form-fields input')].map((i) => [i.name, i.type])"), [
    ["id", "text"],
    ["record-field-label", "text"],
    ["record-field-temp", "number"],
  ], "the form follows the schema");

  // Create in tab one (with the form); the row appears in tab two.
  await one.fill("#record-field-label", "first");
  await one.fill("#record-field-temp", "20");
  await one.submit("#record-form");
  const id = await two.waitFor("[...document.querySelectorAll('#records-rows tr')].find((tr) => tr.textContent.includes('first'))?.dataset.id", { what: "the new row in tab two" });
  const stored = (await ctx.admin.collection("gauges").list()).items;
  assert.deepEqual(stored.map((r) => r.id), [id]);
  const row = `#records-rows tr[data-id="${id}"]`;

  // A refused edit shows the server's details; a good one shows in tab two,
  // where the same record is open in the editor and is said to have moved on.
  await click(two, `${row} button.edit`);
  await click(one, `${row} button.edit`);
  await one.waitFor("document.querySelector('#record-field-label').value === 'first'", { what: "the record in the editor" });
  // This time as JSON, on the editor's second tab.
  await click(one, "#record-tab-json");
  await one.waitFor("!document.querySelector('#record-json').hidden && document.querySelector('#record-editor').value.includes('first')", { what: "the JSON tab" });
  await one.fill("#record-editor", JSON.stringify({ label: 123, temp: 21 }));
  await one.submit("#record-form");
  const detail = await one.waitFor("document.querySelector('#record-error-details [data-error-for=label]')?.textContent", { what: "the label error" });
  assert.match(detail, /label: must be of type string/);
  await one.fill("#record-editor", JSON.stringify({ label: "changed", temp: 21 }));
  await one.submit("#record-form");
  await two.waitFor(`document.querySelector('${row}')?.textContent.includes('changed')`, { what: "the edit in tab two" });
  assert.deepEqual(await shownRows(two).then((rows) => rows.map((r) => [r.label, r.temp])), [["changed", "21"]]);
  assert.equal((await ctx.admin.collection("gauges").get(id)).rev, 2);
  assert.match(await two.waitFor("document.querySelector('#record-status').textContent"), /changed elsewhere \(now rev 2\)/);
  // Saving tab two's stale copy is refused (If-Match), not written over tab one's change.
  await two.fill("#record-field-label", "stale");
  await two.submit("#record-form");
  assert.match(await two.waitFor("document.querySelector('#record-error').textContent"), /precondition_failed/);
  const kept = await ctx.admin.collection("gauges").get(id);
  assert.deepEqual([kept.rev, kept.label], [2, "changed"]);

  // Delete in tab one; the row goes from both.
  await click(one, `${row} button.delete`);
  await two.waitFor(`!document.querySelector('${row}')`, { what: "the row to leave tab two" });
  await one.waitFor(`!document.querySelector('${row}')`, { what: "the row to leave tab one" });
  assert.equal(await two.eval("document.querySelector('#record-status').textContent"), `Record ${id} was deleted.`);
  assert.equal(await two.eval("document.querySelector('#record-save').textContent"), "Create", "tab two's editor is back to creating");
  await missing(`/api/collections/gauges/records/${id}`);
  assert.equal(await two.eval("window.notReloaded"), true, "tab two was never reloaded");

  // Twelve more arrive live (one batch); then filter, sort and page them in tab one.
  await ctx.admin.collection("gauges").create(Array.from({ length: 12 }, (_, i) => ({ label: `g${i}`, temp: i * 5 })));
  await two.waitFor("document.querySelectorAll('#records-rows tr').length === 12", { what: "twelve live rows" });
  await one.waitFor("document.querySelectorAll('#records-rows tr').length === 12", { what: "twelve live rows" });
  await one.fill("#filter-input", "temp > 30");
  await one.submit("#filter-form");
  await one.waitFor("document.querySelectorAll('#records-rows tr').length === 5", { what: "the filtered rows" });
  assert.deepEqual((await shownRows(one)).map((r) => Number(r.temp)).sort((a, b) => a - b), [35, 40, 45, 50, 55]);
  await click(one, "#records-table th button[data-sort=temp]");
  await one.waitFor("document.querySelector('#sort-field').value === 'temp' && document.querySelector('#records-rows tr td:nth-child(3)').textContent === '35'", { what: "ascending temps" });
  assert.deepEqual((await shownRows(one)).map((r) => r.temp), ["35", "40", "45", "50", "55"]);
  await click(one, "#records-table th button[data-sort=temp]");
  await one.waitFor("document.querySelector('#records-rows tr td:nth-child(3)').textContent === '55'", { what: "descending temps" });
  assert.deepEqual((await shownRows(one)).map((r) => r.temp), ["55", "50", "45", "40", "35"]);

  await one.fill("#filter-input", "temp > > 1");
  await one.submit("#filter-form");
  await assertErrorNextTo(one, "filter", "#filter-input", /position 7.*bad_request/);
  // The rows of the filter that worked stay, and say so.
  assert.deepEqual((await shownRows(one)).map((r) => r.temp), ["55", "50", "45", "40", "35"]);
  assert.equal(await one.eval("document.querySelector('#filter-kept').textContent"), "The table still shows the previous results.");

  // Pages of 10, ascending by temp.
  await one.fill("#filter-input", "");
  await one.eval("document.querySelector('#sort-dir').value = 'asc'; document.querySelector('#page-size').value = '10', true");
  await one.submit("#filter-form");
  await one.waitFor("document.querySelectorAll('#records-rows tr').length === 10 && !document.querySelector('#filter-error').textContent", { what: "a page of ten" });
  assert.deepEqual((await shownRows(one)).map((r) => r.temp), ["0", "5", "10", "15", "20", "25", "30", "35", "40", "45"]);
  assert.equal(await one.eval("document.querySelector('#records-prev').disabled"), true);
  await one.eval("window.scrollTo(0, 0), true");
  await one.screenshot(shot("records"));
  await click(one, "#records-next");
  await one.waitFor("document.querySelector('#records-page').textContent === 'page 2'", { what: "page 2" });
  assert.deepEqual((await shownRows(one)).map((r) => r.temp), ["50", "55"]);
  assert.equal(await one.eval("document.querySelector('#records-next').disabled"), true);

  // Off the newest-first first page, a new record is announced, not inserted.
  await ctx.admin.collection("gauges").create({ label: "late", temp: 99 });
  await one.waitFor("!document.querySelector('#records-notice').hidden", { what: "the new-record notice" });
  assert.match(await one.eval("document.querySelector('#records-notice').textContent"), /1 new record /);
  assert.equal(await one.eval("document.querySelectorAll('#records-rows tr').length"), 2);
  await click(one, "#records-prev");
  await one.waitFor("document.querySelector('#records-page').textContent === 'page 1'");
  assert.equal((await shownRows(one)).length, 10);
  await two.waitFor("[...document.querySelectorAll('#records-rows tr')][0]?.textContent.includes('late')", { what: "the late record on top in tab two" });
  assert.deepEqual(one.errors, []);
  assert.deepEqual(two.errors, []);
});

test("the demo's readings arrive live on its records page", async () => {
  const page = await signedInPage(ctx);
  await openRecords(page, "readings");
  const top = await page.waitFor("document.querySelector('#records-rows tr')?.dataset.id", { what: "the first readings" });
  await page.eval("window.notReloaded = true");
  const newer = await page.waitFor(`document.querySelector('#records-rows tr').dataset.id !== ${JSON.stringify(top)} && document.querySelector('#records-rows tr').dataset.id`, {
    timeout: 10_000,
    what: "a newer reading on top",
  });
  assert.ok(newer > top, "the new top row is newer (ULIDs sort by time)");
  assert.equal((await ctx.admin.collection("readings").get(newer)).id, newer);
  await new Promise((r) => setTimeout(r, 1500));
  const rows = await shownRows(page);
  assert.ok(rows.length > 0 && rows.length <= 50, `at most a page of rows (${rows.length})`);
  const created = rows.map((r) => r.created);
  assert.deepEqual(created, [...created].sort().reverse(), "newest first, live rows included");
  assert.equal(await page.eval("window.notReloaded"), true);

  // Pages of 10: live readings push rows off the bottom of page 1, and Next
  // must go on from the last row shown, not from where page 1 first ended.
  await page.eval("document.querySelector('#page-size').value = '10'; document.querySelector('#page-size').dispatchEvent(new Event('change')), true");
  await page.waitFor("document.querySelectorAll('#records-rows tr').length === 10", { what: "a page of ten" });
  const firstTop = await page.eval("document.querySelector('#records-rows tr').dataset.id");
  await page.waitFor(`document.querySelector('#records-rows tr').dataset.id !== ${JSON.stringify(firstTop)}`, { timeout: 10_000, what: "readings pushing rows off" });
  assert.equal(await page.eval("document.querySelectorAll('#records-rows tr').length"), 10, "the page stays at ten rows");
  // The demo writes in bursts, once a second: let this one settle, so no
  // write lands between reading the last row and the click.
  await new Promise((r) => setTimeout(r, 200));
  const lastShown = await page.eval("(() => { const last = document.querySelector('#records-rows tr:last-child').dataset.id; document.querySelector('#records-next').click(); return last; })()");
  await page.waitFor("document.querySelector('#records-page').textContent === 'page 2' && document.querySelectorAll('#records-rows tr').length === 10", { what: "page 2" });
  const following = (await ctx.admin.collection("readings").list({ filter: `id < '${lastShown}'`, sort: "-id", limit: 1 })).items[0].id;
  assert.equal(await page.eval("document.querySelector('#records-rows tr').dataset.id"), following, "page 2 starts right after the last row page 1 showed");
  assert.deepEqual(page.errors, []);
});

test("the collections and records pages fit a phone-sized screen", async () => {
  const page = await signedInPage(ctx, { width: 390, height: 844, mobile: true });
  await page.goto(`${ctx.url}/admin/#/collections`);
  await page.waitFor("document.querySelector('#collections-rows tr[data-collection=readings]')");
  assert.ok((await sidewaysOverflow(page)) <= 0, "the collections page scrolls sideways");
  await page.screenshot(shot("collections-phone"));
  await page.goto(`${ctx.url}/admin/#/collections/readings`);
  await page.waitFor("document.querySelectorAll('#fields-rows tr').length === 5");
  assert.ok((await sidewaysOverflow(page)) <= 0, "the edit form scrolls sideways");
  await openRecords(page, "readings");
  await page.waitFor("document.querySelector('#records-rows tr')");
  assert.ok((await sidewaysOverflow(page)) <= 0, "the records page scrolls sideways");
  await page.screenshot(shot("records-phone"));
  assert.deepEqual(page.errors, []);
});
