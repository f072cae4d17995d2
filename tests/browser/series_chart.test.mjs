// The chart of a series collection in a real headless Chromium against the
// real server (run by tests/browser.rs): history drawn from `aggregate`, one
// line per series × field, live buckets moving it on, the dashboard's small
// chart, an empty collection, readings without per-row edit and delete, a
// phone-sized screen.
//
// The server runs without --demo: the demo creates a plain collection named
// `readings`, and this file needs that name for a series collection.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";

import { startServer, signedInPage, shot, sidewaysOverflow } from "./harness.mjs";
import { Browser, findChromium } from "./cdp.mjs";
import { Pulsebase } from "../../web/sdk/pulsebase.js";

const ADMIN = { email: "charts@example.com", password: "charts-admin-password" };
const DEVICES = ["gw-1", "gw-2"];
const FIELDS = ["temp", "humidity"];
// The colour of the first series' lines (web/admin/chart.js), as RGB.
const FIRST_COLOR = [0x3a, 0x66, 0xdb];
const READINGS = {
  name: "readings",
  kind: "series",
  series: "device",
  time: "ts",
  fields: { device: { type: "string", required: true }, temp: { type: "number" }, humidity: { type: "number" }, ts: { type: "datetime" } },
  rules: { list: "@user != null", view: "@user != null" },
};

const ctx = {};
before(async () => {
  ctx.server = await startServer({ demo: false });
  ctx.url = ctx.server.url;
  ctx.admin = new Pulsebase(ctx.url);
  await ctx.admin.setup(ctx.server.setupCode, ADMIN.email, ADMIN.password, "Charts");
  Object.assign(ctx.server, ADMIN);
  ctx.browser = await Browser.launch(findChromium());
  await ctx.admin.request("POST", "/api/collections", READINGS);
  // Five minutes of history, a reading per device every 10 s.
  const now = Date.now();
  const batch = [];
  for (let i = 30; i > 0; i--) {
    for (const [d, device] of DEVICES.entries()) batch.push({ device, temp: 20 + d * 3 + Math.sin(i / 5), humidity: 40 + d * 10 + Math.cos(i / 5), ts: new Date(now - i * 10_000).toISOString() });
  }
  const written = await ctx.admin.request("POST", "/api/collections/readings/records", batch);
  assert.equal(written.count, batch.length);
  assert.ok(written.last_seq - written.first_seq >= 0, JSON.stringify(written));
});
after(async () => {
  ctx.admin?.realtime.close();
  if (ctx.browser) await ctx.browser.close();
  if (ctx.server) {
    ctx.server.child.kill("SIGKILL");
    rmSync(ctx.server.dir, { recursive: true, force: true });
  }
});

/** What the chart element reports about itself: lines drawn, buckets, live buckets applied. */
const plotState = (page, id = "chart") => page.eval(`(() => { const p = document.querySelector('#${id}-plot'); return p && { ...p.dataset, canvas: Boolean(p.querySelector('canvas')), legend: p.querySelectorAll('.u-legend .u-series').length }; })()`);

/** How many pixels of the plot's canvas are painted in `rgb` (within a little antialiasing). */
function pixelsOf(page, rgb, id = "chart") {
  return page.eval(`(() => {
    const canvas = document.querySelector('#${id}-plot canvas');
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] > 200 && Math.abs(data[i] - ${rgb[0]}) < 24 && Math.abs(data[i + 1] - ${rgb[1]}) < 24 && Math.abs(data[i + 2] - ${rgb[2]}) < 24) n++;
    }
    return n;
  })()`);
}

/** Posts a reading per device every 250 ms for `ms`, stamped now. */
async function writeLive(ms) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const ts = new Date().toISOString();
    await ctx.admin.request("POST", "/api/collections/readings/records", DEVICES.map((device) => ({ device, temp: 30, humidity: 70, ts })));
    await new Promise((r) => setTimeout(r, 250));
  }
}

test("the chart draws a line per series and field, then moves with live buckets", async () => {
  const page = await signedInPage(ctx);
  await page.goto(`${ctx.url}/admin/#/chart/readings/fields=temp,humidity&range=15m&bucket=1s`);
  const drawn = await page.waitFor(`(() => { const p = document.querySelector('#chart-plot'); return p && p.querySelector('canvas') && p.dataset.series === '${DEVICES.length * FIELDS.length}' && { ...p.dataset }; })()`, {
    what: "the chart with a line per device and field",
  });
  assert.ok(Number(drawn.buckets) >= 30, `the history's buckets are on the chart: ${JSON.stringify(drawn)}`);
  const state = await plotState(page);
  assert.equal(state.legend, 1 + DEVICES.length * FIELDS.length, "the legend names time and each line");
  assert.ok((await pixelsOf(page, FIRST_COLOR)) > 50, "gw-1's lines are painted on the canvas");
  // The series to choose from come from the server, not from the chart's lines.
  const offered = await page.waitFor(`(() => { const v = [...document.querySelectorAll('#chart-series input')].map((i) => i.value); return v.length >= ${DEVICES.length} && v; })()`, { what: "the series list" });
  assert.deepEqual(offered, DEVICES);
  await page.waitFor("document.querySelector('#chart-live').textContent === 'live'", { what: "the live subscription" });

  const start = await plotState(page);
  const started = Date.now();
  await writeLive(3000);
  const moved = await page.waitFor(`(() => { const p = document.querySelector('#chart-plot').dataset; return Number(p.live) > ${Number(start.live)} && Date.parse(p.lastLive) >= ${Math.floor(started / 1000) * 1000} && { ...p }; })()`, {
    timeout: 15_000,
    what: "a live bucket for the new readings",
  });
  assert.equal(moved.series, String(DEVICES.length * FIELDS.length), "live buckets join the existing lines");
  await page.screenshot(shot("series-chart"));

  // Ticking one series keeps its lines only.
  await page.eval("(() => { const i = document.querySelector('#chart-series input[value=\"gw-2\"]'); i.checked = true; i.dispatchEvent(new Event('change', { bubbles: true })); return true; })()");
  await page.waitFor(`document.querySelector('#chart-plot')?.dataset.series === '${FIELDS.length}'`, { what: "gw-2's lines alone" });
  assert.match(await page.eval("location.hash"), /series=gw-2/, "the choice is kept in the address");
  assert.deepEqual(page.errors, []);
});

test("the dashboard shows the series collection live", async () => {
  const page = await signedInPage(ctx);
  await page.waitFor(`document.querySelector('#dashboard-chart-plot canvas') && document.querySelector('#dashboard-chart-plot').dataset.series === '${DEVICES.length * FIELDS.length}'`, {
    what: "the dashboard's readings chart",
  });
  const start = Number((await plotState(page, "dashboard-chart")).live);
  await writeLive(6000);
  await page.waitFor(`Number(document.querySelector('#dashboard-chart-plot').dataset.live) > ${start}`, { timeout: 15_000, what: "a live bucket on the dashboard" });
  await page.screenshot(shot("dashboard-series"));
  assert.deepEqual(page.errors, []);
});

test("an empty series collection says so instead of drawing nothing", async () => {
  await ctx.admin.request("POST", "/api/collections", { ...READINGS, name: "quiet" });
  const page = await signedInPage(ctx);
  await page.goto(`${ctx.url}/admin/#/chart/quiet/range=1h`);
  const text = await page.waitFor("(() => { const e = document.querySelector('#chart-empty'); return e && !e.hidden && e.textContent; })()", { what: "the empty message" });
  assert.match(text, /no readings/i);
  assert.equal(await page.eval("document.querySelector('#chart-error').textContent"), "");
  assert.deepEqual(page.errors, []);
});

test("readings have no edit or delete buttons; old ones are dropped by time", async () => {
  const page = await signedInPage(ctx);
  await page.goto(`${ctx.url}/admin/#/records/readings`);
  await page.waitFor("document.querySelectorAll('#records-rows tr').length > 0", { what: "the readings" });
  assert.equal(await page.eval("document.querySelectorAll('#records-rows button').length"), 0);
  assert.ok(await page.eval("Boolean(document.querySelector('#records-chart-link'))"), "the records page links to the chart");
  // Later than every reading, in the browser's own zone.
  await page.eval(`(() => { const d = new Date(Date.now() + 3_600_000); const i = document.querySelector('#drop-before');
    i.value = new Date(d - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 19); return true; })()`);
  await page.eval("window.confirm = () => true; document.querySelector('#drop-form').requestSubmit(), true");
  const status = await page.waitFor("document.querySelector('#drop-status').textContent || document.querySelector('#drop-error').textContent", { what: "the drop's outcome" });
  assert.match(status, /^Dropped/);
  await page.waitFor("document.querySelectorAll('#records-rows tr').length === 0", { what: "an empty list" });
  assert.deepEqual(page.errors, []);
});

test("at phone size the chart and its form fit the screen", async () => {
  await writeLive(500);
  const page = await signedInPage(ctx, { width: 390, height: 844, mobile: true });
  await page.goto(`${ctx.url}/admin/#/chart/readings/range=15m`);
  await page.waitFor("document.querySelector('#chart-plot canvas')", { what: "the chart" });
  const width = await page.eval("document.querySelector('#chart-plot canvas').getBoundingClientRect().width");
  assert.ok(width > 200 && width <= 390, `the canvas fits the phone (${width}px)`);
  assert.ok((await sidewaysOverflow(page)) <= 0, "no sideways scrolling");
  await page.screenshot(shot("series-chart-phone"));
  assert.deepEqual(page.errors, []);
});
