// Records of one collection: browse (filter, sort, page, with the total
// count and each record's owner), create, edit (a form per field type, or
// JSON: record_form.js) and delete. Rows follow the collection's realtime
// events in place, so a busy collection never re-fetches its page per
// write. Readings of a series collection cannot be edited or deleted one by
// one (the server answers 405), so their rows have no buttons; old ones are
// dropped by time. On a narrow screen each row is a card (admin.css).

import { pb, h, message, go } from "../ui.js";
import { isSeries } from "../series.js";
import { recordEditor } from "../record_form.js";
import { lookUp, nameOf } from "../owners.js";

const PAGE_SIZES = [10, 25, 50, 100, 200];
const NEWEST_FIRST = "-created"; // the default view, where new records appear on top
const MAX_CELL = 40; // characters shown in a cell; the full text is its title

export function records(app, name) {
  const picker = h("select", { id: "records-collection", "aria-label": "collection", onchange: () => go(`#/records/${encodeURIComponent(picker.value)}`) });
  const error = h("p", { class: "error", role: "alert", id: "records-error" });
  app.append(h("h1", {}, "Records ", picker), error);
  pb.request("GET", "/api/collections").then(({ items }) => {
    picker.replaceChildren(h("option", { value: "", disabled: true, selected: !name }, "choose a collection"), ...items.map((c) => h("option", { value: c.name, selected: c.name === name }, c.name)));
    if (!name) error.replaceChildren(h("span", { class: "hint" }, items.length ? "Choose a collection to browse its records." : "There are no collections yet."));
  }, (e) => (error.textContent = message(e)));
  if (!name) return;

  let left = false;
  let subscription = null;
  const live = h("span", { class: `state ${pb.realtime.state}`, id: "records-live" }, pb.realtime.state === "open" ? "live" : pb.realtime.state);
  const offState = pb.realtime.on("state", (s) => {
    live.textContent = s === "open" ? "live" : s;
    live.className = `state ${s}`;
  });
  pb.request("GET", `/api/collections/${encodeURIComponent(name)}`).then((collection) => {
    if (left) return;
    const browser = recordBrowser(collection, error, live);
    app.append(...browser.elements);
    // The end of the subscription (a dropped collection) is shown as the events are.
    subscription = pb.realtime.subscribe(name, { onUnsubscribed: browser.onEvent }, browser.onEvent);
    subscription.ready.catch((e) => (error.textContent = `live updates are off: ${message(e)}`));
    // Load once subscribed (or after 2 s without an answer), so no write
    // falls between the page's read and the first live event.
    Promise.race([subscription.ready.catch(() => {}), new Promise((r) => setTimeout(r, 2000))]).then(() => left || browser.load());
  }, (e) => (error.textContent = message(e)));
  return () => {
    left = true;
    offState();
    if (subscription) subscription.unsubscribe();
  };
}

function recordBrowser(collection, error, live) {
  const table = pb.collection(collection.name);
  const columns = ["id", ...Object.keys(collection.fields || {}), "owner", "created", "updated"];
  const datetimes = new Set(["created", "updated", ...columns.filter((c) => (collection.fields || {})[c]?.type === "datetime")]);
  // `total`: how many match, all pages together (null: the server did not count).
  const view = { sort: NEWEST_FIRST, filter: "", limit: 50, starts: [null], next: null, pushedOut: 0, unseen: 0, total: null };
  let buffered = null; // events that arrive while a page loads, applied after it
  let loads = 0; // only the latest of overlapping loads may render
  const rows = h("tbody", { id: "records-rows" });
  const empty = h("p", { class: "hint", id: "records-empty", hidden: true }, "No records here.");
  const head = h("tr", {});
  const notice = h("p", { class: "notice", id: "records-notice", hidden: true });
  const pageLabel = h("span", { class: "hint", id: "records-page" });
  const totalLabel = h("p", { class: "list-head", id: "records-total", role: "status" });
  const button = (id, text, onclick) => h("button", { type: "button", class: "secondary", id, onclick }, text);
  const first = button("records-first", "First page", () => reload(() => (view.starts = [null])));
  const prev = button("records-prev", "Previous", () => reload(() => view.starts.pop()));
  const next = button("records-next", "Next", async () => {
    const cursor = await cursorAfterShown();
    if (cursor) reload(() => view.starts.push(cursor));
  });

  const filterError = h("p", { class: "error slot", role: "alert", id: "filter-error", "data-error-for": "filter" });
  // Where a refused filter went wrong, and that the rows shown are the previous ones.
  const filterCaret = h("pre", { class: "filter-caret", id: "filter-caret", hidden: true });
  const filterKept = h("p", { class: "hint slot", id: "filter-kept", hidden: true });
  const filterInput = h("input", { id: "filter-input", name: "filter", placeholder: "temp > 30 && device = 'gw-7'", autocomplete: "off" });
  const sortField = h("select", { id: "sort-field", name: "sort" }, columns.map((c) => h("option", { value: c }, c)));
  const sortDir = h("select", { id: "sort-dir", name: "dir" }, h("option", { value: "asc" }, "ascending"), h("option", { value: "desc" }, "descending"));
  const pageSize = h("select", { id: "page-size", name: "limit" }, PAGE_SIZES.map((n) => h("option", { value: n }, String(n))));
  const field = (id, text, el) => h("div", {}, h("label", { for: id }, text), el);
  const query = h(
    "form",
    { class: "panel", id: "filter-form" },
    h("div", { class: "row top" }, h("div", { class: "grow" }, h("label", { for: "filter-input" }, "Filter"), filterInput, filterError, filterCaret, filterKept), field("sort-field", "Sort by", sortField), field("sort-dir", "Direction", sortDir), field("page-size", "Per page", pageSize)),
    h("button", { type: "submit", id: "filter-apply" }, "Apply"),
    " ",
    live,
  );
  const showQuery = () => {
    sortField.value = view.sort.replace(/^-/, "");
    sortDir.value = view.sort.startsWith("-") ? "desc" : "asc";
    pageSize.value = String(view.limit);
    filterInput.value = view.filter;
    showHead();
  };
  const showHead = () =>
    head.replaceChildren(
      ...columns.map((c) => {
        const mark = view.sort === c ? " ▲" : view.sort === `-${c}` ? " ▼" : "";
        return h("th", {}, h("button", { type: "button", class: "sort", "data-sort": c, title: `sort by ${c}`, onclick: () => sortBy(c) }, c + mark));
      }),
      h("th", {}, ""),
    );
  // A header click sorts by that column, and a second click reverses it.
  const sortBy = (c) => reload(() => (view.sort = view.sort === c ? `-${c}` : c));
  query.addEventListener("submit", (event) => {
    event.preventDefault();
    reload(() => {
      view.filter = filterInput.value.trim();
      view.sort = (sortDir.value === "desc" ? "-" : "") + sortField.value;
      view.limit = Number(pageSize.value);
      view.starts = [null];
    });
  });
  for (const el of [sortField, sortDir, pageSize]) el.addEventListener("change", () => query.requestSubmit());

  /**
   * Changes the view (query or page) and loads it. A change the server
   * refuses is undone, so paging and live rows go on with the view shown.
   */
  function reload(change) {
    const before = { ...view, starts: [...view.starts] };
    change();
    load(before);
  }

  async function load(before = null) {
    showQuery();
    buffered = [];
    const ticket = ++loads;
    try {
      const page = await table.list({ filter: view.filter || undefined, sort: view.sort, limit: view.limit, cursor: view.starts.at(-1) || undefined, total: true });
      if (ticket !== loads) return;
      rows.replaceChildren(...page.items.map(row));
      Object.assign(view, { next: page.next_cursor, pushedOut: 0, unseen: 0, total: page.total ?? null, counted: view.filter });
      showFilterError(null);
      nameOwners();
    } catch (e) {
      if (ticket !== loads) return;
      // Nearly always the filter (or a sort on a field it cannot order):
      // say so under it, and keep the rows of the view that worked.
      if (before) Object.assign(view, before);
      showHead();
      showFilterError(e);
    }
    const missed = buffered;
    buffered = null;
    missed.forEach(apply);
    refresh();
  }

  function showFilterError(e) {
    filterError.textContent = e ? message(e) : "";
    const position = e?.details?.position;
    const text = filterInput.value.trim();
    filterCaret.hidden = !(e && Number.isInteger(position) && position <= text.length);
    filterCaret.textContent = filterCaret.hidden ? "" : `${text}\n${" ".repeat(position)}^`;
    filterKept.hidden = !e;
    filterKept.textContent = rows.childElementCount ? "The table still shows the previous results." : "No records are shown.";
  }

  /** Owner ids become emails and key names once known (the id stays in the title). */
  async function nameOwners() {
    const cells = () => [...rows.querySelectorAll("td[data-owner]")];
    if (await lookUp(cells().map((td) => td.dataset.owner))) for (const td of cells()) td.textContent = nameOf(td.dataset.owner) || td.dataset.owner;
  }

  /**
   * The cursor after the last row shown. Live inserts push rows off the
   * bottom of the first page; the page's own cursor would skip those, so
   * the listing is asked for again (ids only) to end exactly at the last
   * row shown. Writes not shown yet (committed, their event still on its
   * way) shift its position, so the position is looked up first and the
   * answer checked.
   */
  async function cursorAfterShown() {
    if (!view.pushedOut) return view.next;
    const lastShown = rows.lastElementChild?.dataset.id;
    const query = { filter: view.filter || undefined, sort: view.sort, fields: "id" };
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        const around = await table.list({ ...query, limit: rows.childElementCount + 100 });
        const at = around.items.findIndex((r) => r.id === lastShown);
        if (at < 0) break;
        const upto = await table.list({ ...query, limit: at + 1 });
        if (upto.items.at(-1)?.id === lastShown) return upto.next_cursor;
      }
      filterError.textContent = "the listing moved too fast to page from here: use First page";
    } catch (e) {
      filterError.textContent = message(e);
    }
    return null;
  }

  function refresh() {
    empty.hidden = rows.childElementCount > 0;
    const n = view.total;
    const noun = isSeries(collection) ? "reading" : "record";
    totalLabel.textContent =
      n === null
        ? view.counted
          ? `Matching ${noun}s: not counted (counting a filtered series would read every ${noun}).`
          : ""
        : `${n.toLocaleString("en")} ${noun}${n === 1 ? "" : "s"}${view.counted ? " match the filter" : " in total"}`;
    prev.disabled = first.disabled = view.starts.length === 1;
    next.disabled = !view.next && !view.pushedOut;
    pageLabel.textContent = `page ${view.starts.length}`;
    notice.hidden = !view.unseen;
    notice.replaceChildren(`${view.unseen} new record${view.unseen === 1 ? "" : "s"} not shown in this view. `, h("button", { type: "button", class: "secondary", id: "records-show-new", onclick: () => reload(() => (view.starts = [null])) }, "Refresh"));
  }

  function row(record) {
    const cells = columns.map((c) => {
      const v = record[c];
      const text = v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v);
      const cell = (attrs, shown) => h("td", { "data-label": c, ...attrs }, shown);
      if (c === "owner") return v ? cell({ title: v, "data-owner": v }, nameOf(v) || v) : cell({ class: "hint" }, "none");
      // Times as "2026-11-22 12:32:43" (UTC) keep a page of them narrow; the title has all of it.
      if (datetimes.has(c) && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/.test(text)) return cell({ title: text }, `${text.slice(0, 10)} ${text.slice(11, 19)}`);
      return text.length > MAX_CELL ? cell({ title: text }, `${text.slice(0, MAX_CELL - 1)}…`) : cell({}, text);
    });
    if (isSeries(collection)) return h("tr", { "data-id": record.id }, cells, h("td", { class: "actions" }));
    const actions = h("td", { class: "actions" }, h("button", { type: "button", class: "secondary edit", onclick: () => editor.edit(record) }, "Edit"), h("button", { type: "button", class: "secondary delete", onclick: () => remove(record.id) }, "Delete"));
    return h("tr", { "data-id": record.id }, cells, actions);
  }

  const rowFor = (id) => [...rows.children].find((tr) => tr.dataset.id === id);

  /** One realtime event: change, remove or add the row it is about. */
  function apply(event) {
    if (event.type === "unsubscribed") {
      error.textContent = `live updates stopped: ${event.reason || "unsubscribed"}`;
      return;
    }
    if (event.type !== "event" || !event.record) return;
    const existing = rowFor(event.record.id);
    // Without a filter every change the page hears is one of the records counted.
    const counting = view.total !== null && !view.counted;
    if (event.op === "delete") {
      if (existing) existing.remove();
      if (counting) view.total = Math.max(0, view.total - 1);
      editor.gone(event.record.id);
    } else if (existing) {
      existing.replaceWith(row(event.record));
      editor.changed(event.record);
      nameOwners();
    } else if (event.op === "create") {
      if (counting) view.total++;
      // Only the newest-first first page has an obvious place for a new
      // record; anywhere else, say it exists rather than move rows about.
      if (view.starts.length === 1 && view.sort === NEWEST_FIRST && !view.filter) {
        rows.prepend(row(event.record));
        nameOwners();
        for (; rows.childElementCount > view.limit; view.pushedOut++) rows.lastElementChild.remove();
      } else {
        view.unseen++;
      }
    }
    refresh();
  }

  async function remove(id) {
    if (!confirm(`Delete record ${id}?`)) return;
    try {
      await table.delete(id);
      // The row goes now; the count when the event comes (it is counted once).
      rowFor(id)?.remove();
      editor.gone(id);
      refresh();
    } catch (e) {
      error.textContent = message(e);
    }
  }

  const editor = recordEditor(collection, table);
  const list = h(
    "section",
    { class: "panel" },
    totalLabel,
    notice,
    h("div", { class: "scroll" }, h("table", { id: "records-table", class: "cards" }, h("thead", {}, head), rows)),
    empty,
    h("div", { class: "pager" }, first, prev, next, pageLabel),
  );
  const tools = isSeries(collection) ? [dropOldReadings(collection, () => reload(() => (view.starts = [null])))] : [];
  return { elements: [query, list, editor.form, ...tools], onEvent: (event) => (buffered ? buffered.push(event) : apply(event)), load };
}

/** `DELETE …/records?before=TIME`: the one way to remove readings from a series collection. */
function dropOldReadings(collection, reload) {
  const before = h("input", { type: "datetime-local", id: "drop-before", name: "before", step: 1, required: true });
  const result = h("p", { class: "hint", id: "drop-status", role: "status" });
  const failure = h("p", { class: "error", role: "alert", id: "drop-error" });
  const form = h(
    "form",
    { class: "panel", id: "drop-form" },
    h("h2", {}, "Drop old readings"),
    h("p", { class: "hint" }, "Readings cannot be changed or deleted one by one; every reading older than this time (yours, not UTC) is removed, for good. ", h("a", { href: `#/chart/${encodeURIComponent(collection.name)}`, id: "records-chart-link" }, "Chart these readings")),
    h("div", { class: "row" }, h("div", {}, h("label", { for: "drop-before" }, "Older than"), before)),
    h("button", { type: "submit", class: "secondary", id: "drop-submit" }, "Drop readings"),
    failure,
    result,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    failure.textContent = result.textContent = "";
    const time = new Date(before.value);
    if (Number.isNaN(time.getTime())) return void (failure.textContent = "Choose a time.");
    if (!confirm(`Drop every reading in ${collection.name} older than ${time.toISOString()}?`)) return;
    try {
      await pb.request("DELETE", `/api/collections/${encodeURIComponent(collection.name)}/records`, undefined, { query: { before: time.toISOString() } });
      result.textContent = `Dropped the readings older than ${time.toISOString()}.`;
      reload();
    } catch (e) {
      failure.textContent = message(e, { details: true });
    }
  });
  return form;
}
