// The admin UI's layout at a desktop width and a phone width: the
// dashboard, a records page with more fields than a phone is wide, and the
// request log. For each, a screenshot (test-output/screenshots/layout-*),
// and checks that nothing scrolls the page sideways, that every navigation
// link can be reached (on a phone through the menu button), and that every
// field of a record and of a log entry can be reached (on a phone without
// scrolling sideways at all).

import { test } from "node:test";
import assert from "node:assert/strict";

import { useDemo, signedInPage, shot, sidewaysOverflow } from "./harness.mjs";

const ctx = useDemo();

const FIELDS = Array.from({ length: 8 }, (_, i) => `field_${i}`);

const PAGES = [
  { name: "dashboard", hash: "#/dashboard", ready: "document.querySelector('#stat-writes')" },
  { name: "records", hash: "#/records/wide", ready: "document.querySelector('#records-rows tr')", rows: "#records-rows" },
  { name: "logs", hash: "#/logs", ready: "document.querySelector('#logs-rows tr')", rows: "#logs-rows" },
];

/** In the page: is `el` drawn inside the viewport and inside every ancestor that clips it? */
const IN_VIEW = `(el) => {
  const r = el.getBoundingClientRect();
  const style = getComputedStyle(el);
  if (r.width <= 0 || r.height <= 0 || style.visibility === "hidden") return false;
  if (r.left < -0.5 || r.right > innerWidth + 0.5 || r.top < -0.5 || r.bottom > innerHeight + 0.5) return false;
  for (let up = el.parentElement; up && up !== document.documentElement; up = up.parentElement) {
    const s = getComputedStyle(up);
    if (s.display === "none") return false;
    if (s.overflowX === "visible" && s.overflowY === "visible") continue;
    const c = up.getBoundingClientRect();
    if (r.left < c.left - 0.5 || r.right > c.right + 0.5 || r.top < c.top - 0.5 || r.bottom > c.bottom + 0.5) return false;
  }
  return true;
}`;

/** The nav links not in view, and how tall the header bar is. */
function navState(page) {
  return page.eval(`(() => {
    const inView = ${IN_VIEW};
    const links = [...document.querySelectorAll('#nav a')];
    return {
      links: links.length,
      unseen: links.filter((a) => !inView(a)).map((a) => a.textContent),
      rows: new Set(links.filter(inView).map((a) => Math.round(a.getBoundingClientRect().top))).size,
      header: document.querySelector('header.bar').getBoundingClientRect().height,
      toggle: Boolean(document.querySelector('#nav-toggle')) && inView(document.querySelector('#nav-toggle')),
    };
  })()`);
}

/**
 * The cells of the first row under `rows` that cannot be brought into view
 * (each is scrolled to, as a person would; with `upAndDownOnly`, bringing
 * it into view must not scroll anything sideways), and the cells that do
 * not say which field they are when the header is hidden.
 */
function unreachableCells(page, rows, { upAndDownOnly = false } = {}) {
  return page.eval(`(() => {
    const inView = ${IN_VIEW};
    const row = document.querySelector(${JSON.stringify(rows)} + ' tr');
    const cells = [...row.children].filter((td) => td.textContent.trim() || td.dataset.label);
    const unseen = [];
    const unnamed = [];
    const headerShown = inView(row.closest('table').querySelector('thead th') || document.body) || false;
    const sideways = (el) => {
      let scrolled = window.scrollX;
      for (let up = el.parentElement; up; up = up.parentElement) scrolled += up.scrollLeft;
      return scrolled;
    };
    for (const td of cells) {
      td.scrollIntoView({ block: 'center', inline: 'nearest' });
      if (!inView(td) || (${upAndDownOnly} && sideways(td) > 0)) unseen.push(td.dataset.label || td.cellIndex);
      const label = getComputedStyle(td, '::before').content;
      if (!headerShown && td.dataset.label && !(label && label.includes(td.dataset.label))) unnamed.push(td.dataset.label);
    }
    window.scrollTo(0, 0);
    return { cells: cells.length, unseen, unnamed };
  })()`);
}

test("setup: a collection wider than a phone, and records in it", async () => {
  await ctx.admin.request("POST", "/api/collections", { name: "wide", fields: Object.fromEntries(FIELDS.map((f) => [f, { type: "string" }])) });
  const records = Array.from({ length: 5 }, (_, r) => Object.fromEntries(FIELDS.map((f, i) => [f, `value ${r}-${i} of some length`])));
  await ctx.admin.collection("wide").create(records);
});

for (const width of [1400, 390]) {
  const phone = width < 600;
  test(`at ${width} px nothing overflows, and every link and field can be reached`, async () => {
    const page = await signedInPage(ctx, { width, height: phone ? 844 : 900, mobile: phone });
    for (const { name, hash, ready, rows } of PAGES) {
      await page.goto(`${ctx.url}/admin/${hash}`);
      await page.waitFor(ready, { what: `the ${name} page` });
      await page.eval("window.scrollTo(0, 0), true");
      await page.screenshot(shot(`layout-${name}-${width}`));
      const overflow = await sidewaysOverflow(page);
      assert.ok(overflow <= 0, `${name} at ${width}px scrolls sideways by ${overflow}px`);

      const nav = await navState(page);
      assert.ok(nav.links >= 10, `the nav has its links (${nav.links})`);
      assert.ok(nav.header <= 70, `${name} at ${width}px: the header is one bar, not ${nav.header}px of wrapped links`);
      if (nav.unseen.length) {
        // Only a phone may fold the links away, behind a menu button that shows them all.
        assert.ok(phone && nav.toggle, `${name} at ${width}px: nav links out of reach: ${nav.unseen.join(", ")}`);
        await page.eval("document.querySelector('#nav-toggle').click(), true");
        const open = await navState(page);
        assert.deepEqual(open.unseen, [], `${name} at ${width}px: links the open menu does not show`);
        await page.screenshot(shot(`layout-${name}-${width}-menu`));
        await page.eval("document.querySelector('#nav-toggle').click(), true");
        assert.ok((await navState(page)).unseen.length > 0, "the menu closes again");
      } else {
        assert.equal(nav.rows, 1, `${name} at ${width}px: the nav links wrap onto ${nav.rows} rows`);
      }

      if (rows) {
        const reach = await unreachableCells(page, rows, { upAndDownOnly: phone });
        assert.ok(reach.cells >= (name === "records" ? FIELDS.length + 3 : 5), `${name}: the row has its cells (${reach.cells})`);
        assert.deepEqual(reach.unseen, [], `${name} at ${width}px: fields out of reach${phone ? " without scrolling sideways" : ""}`);
        assert.deepEqual(reach.unnamed, [], `${name} at ${width}px: cells that do not say which field they are`);
        assert.ok((await sidewaysOverflow(page)) <= 0, `${name} at ${width}px: bringing fields into view scrolled the page sideways`);
      }
    }
    assert.deepEqual(page.errors, []);
  });
}
