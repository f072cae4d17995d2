// Records of one collection: browse (filter, sort, page), create, edit and
// delete. Rows follow the collection's realtime events in place, so a busy
// collection never re-fetches its page per write. Readings of a series
// collection cannot be edited or deleted one by one (the server answers
// 405), so their rows have no buttons; old ones are dropped by time.

import { pb, h, message, go } from "../ui.js";
import { isSeries } from "../series.js";

const SYSTEM = ["id", "created", "updated", "owner", "rev"];
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
    subscription = pb.realtime.subscribe(name, {}, browser.onEvent);
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
  const columns = ["id", ...Object.keys(collection.fields || {}), "created", "updated"];
  const datetimes = new Set(["created", "updated", ...columns.filter((c) => (collection.fields || {})[c]?.type === "datetime")]);
  const view = { sort: NEWEST_FIRST, filter: "", limit: 50, starts: [null], next: null, pushedOut: 0, unseen: 0 };
  let buffered = null; // events that arrive while a page loads, applied after it
  let loads = 0; // only the latest of overlapping loads may render
  const rows = h("tbody", { id: "records-rows" });
  const empty = h("p", { class: "hint", id: "records-empty", hidden: true }, "No records here.");
  const head = h("tr", {});
  const notice = h("p", { class: "notice", id: "records-notice", hidden: true });
  const pageLabel = h("span", { class: "hint", id: "records-page" });
  const button = (id, text, onclick) => h("button", { type: "button", class: "secondary", id, onclick }, text);
  const first = button("records-first", "First page", () => reload(() => (view.starts = [null])));
  const prev = button("records-prev", "Previous", () => reload(() => view.starts.pop()));
  const next = button("records-next", "Next", async () => {
    const cursor = await cursorAfterShown();
    if (cursor) reload(() => view.starts.push(cursor));
  });

  const filterError = h("p", { class: "error slot", role: "alert", id: "filter-error", "data-error-for": "filter" });
  const filterInput = h("input", { id: "filter-input", name: "filter", placeholder: "temp > 30 && device = 'gw-7'", autocomplete: "off" });
  const sortField = h("select", { id: "sort-field", name: "sort" }, columns.map((c) => h("option", { value: c }, c)));
  const sortDir = h("select", { id: "sort-dir", name: "dir" }, h("option", { value: "asc" }, "ascending"), h("option", { value: "desc" }, "descending"));
  const pageSize = h("select", { id: "page-size", name: "limit" }, PAGE_SIZES.map((n) => h("option", { value: n }, String(n))));
  const field = (id, text, el) => h("div", {}, h("label", { for: id }, text), el);
  const query = h(
    "form",
    { class: "panel", id: "filter-form" },
    h("div", { class: "row top" }, h("div", { class: "grow" }, h("label", { for: "filter-input" }, "Filter"), filterInput, filterError), field("sort-field", "Sort by", sortField), field("sort-dir", "Direction", sortDir), field("page-size", "Per page", pageSize)),
    h("button", { type: "submit", id: "filter-apply" }, "Apply"),
    " ",
    live,
  );
  const showQuery = () => {
    sortField.value = view.sort.replace(/^-/, "");
    sortDir.value = view.sort.startsWith("-") ? "desc" : "asc";
    pageSize.value = String(view.limit);
    filterInput.value = view.filter;
    head.replaceChildren(
      ...columns.map((c) => {
        const mark = view.sort === c ? " ▲" : view.sort === `-${c}` ? " ▼" : "";
        return h("th", {}, h("button", { type: "button", class: "sort", "data-sort": c, title: `sort by ${c}`, onclick: () => sortBy(c) }, c + mark));
      }),
      h("th", {}, ""),
    );
  };
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

  /** Changes the view (query or page) and loads it. */
  function reload(change) {
    change();
    load();
  }

  async function load() {
    showQuery();
    buffered = [];
    const ticket = ++loads;
    try {
      const page = await table.list({ filter: view.filter || undefined, sort: view.sort, limit: view.limit, cursor: view.starts.at(-1) || undefined });
      if (ticket !== loads) return;
      rows.replaceChildren(...page.items.map(row));
      Object.assign(view, { next: page.next_cursor, pushedOut: 0, unseen: 0, failed: false });
      filterError.textContent = "";
    } catch (e) {
      if (ticket !== loads) return;
      // Nearly always the filter (or a sort on a field it cannot order): say so under it.
      rows.replaceChildren();
      Object.assign(view, { next: null, failed: true });
      filterError.textContent = message(e);
    }
    const missed = buffered;
    buffered = null;
    missed.forEach(apply);
    refresh();
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
    empty.hidden = rows.childElementCount > 0 || view.failed;
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
      // Times as "2026-11-22 12:32:43" (UTC) keep a page of them narrow; the title has all of it.
      if (datetimes.has(c) && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/.test(text)) return h("td", { title: text }, `${text.slice(0, 10)} ${text.slice(11, 19)}`);
      return text.length > MAX_CELL ? h("td", { title: text }, `${text.slice(0, MAX_CELL - 1)}…`) : h("td", {}, text);
    });
    if (isSeries(collection)) return h("tr", { "data-id": record.id }, cells, h("td", {}));
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
    if (event.op === "delete") {
      if (existing) existing.remove();
      editor.gone(event.record.id);
    } else if (existing) {
      existing.replaceWith(row(event.record));
      editor.changed(event.record);
    } else if (event.op === "create") {
      // Only the newest-first first page has an obvious place for a new
      // record; anywhere else, say it exists rather than move rows about.
      if (view.starts.length === 1 && view.sort === NEWEST_FIRST && !view.filter) {
        rows.prepend(row(event.record));
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
      apply({ type: "event", op: "delete", record: { id } });
    } catch (e) {
      error.textContent = message(e);
    }
  }

  const editor = recordEditor(collection, table);
  const list = h(
    "section",
    { class: "panel" },
    notice,
    h("div", { class: "scroll" }, h("table", { id: "records-table" }, h("thead", {}, head), rows)),
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

/** The create / edit form: the record's own fields as JSON. */
function recordEditor(collection, table) {
  const fields = collection.fields || {};
  const title = h("h2", { id: "record-form-title" });
  const textarea = h("textarea", { id: "record-editor", name: "record", rows: 10, spellcheck: "false" });
  const save = h("button", { type: "submit", id: "record-save" });
  const foot = h("p", { class: "error", role: "alert", id: "record-error" });
  const details = h("ul", { class: "error-list", id: "record-error-details" });
  const status = h("p", { class: "hint", id: "record-status", role: "status" });
  let editing = null; // the id being edited, or null when creating
  let rev = 0; // the revision shown in the editor

  const form = h(
    "form",
    { class: "panel", id: "record-form" },
    title,
    h("label", { for: "record-editor" }, "Fields (JSON object; id, created, updated, owner and rev are set by the server)"),
    textarea,
    save,
    " ",
    h("button", { type: "button", class: "secondary", id: "record-new", onclick: () => create() }, "New record"),
    foot,
    details,
    status,
  );
  const clear = () => {
    foot.textContent = status.textContent = "";
    details.replaceChildren();
  };
  const create = () => {
    editing = null;
    title.textContent = `New record in ${collection.name}`;
    save.textContent = "Create";
    textarea.value = JSON.stringify(template(fields), null, 2);
    clear();
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear();
    let data;
    try {
      data = JSON.parse(textarea.value);
      if (!data || typeof data !== "object" || Array.isArray(data)) throw new Error("it must be a JSON object");
    } catch (e) {
      foot.textContent = `Not a JSON object: ${e.message}`;
      return;
    }
    try {
      // Editing shows every field, so saving replaces (PUT): a key removed
      // from the text is removed from the record. If-Match: a change made
      // elsewhere since it was loaded is refused, not overwritten.
      const record = editing ? await table.replace(editing, data, { ifMatch: rev }) : await table.create(data);
      if (editing) {
        textarea.value = JSON.stringify(ownFields(record), null, 2);
        rev = record.rev;
      }
      status.textContent = editing ? `Saved ${record.id} (rev ${record.rev}).` : `Created ${record.id}.`;
    } catch (e) {
      foot.textContent = message(e);
      const entries = e.details && typeof e.details === "object" ? Object.entries(e.details) : [];
      details.replaceChildren(...entries.map(([k, v]) => h("li", { "data-error-for": k }, h("strong", {}, k), `: ${typeof v === "string" ? v : JSON.stringify(v)}`)));
    }
  });
  create();
  return {
    form,
    edit(record) {
      editing = record.id;
      rev = record.rev;
      title.textContent = `Edit record ${record.id}`;
      save.textContent = "Save";
      textarea.value = JSON.stringify(ownFields(record), null, 2);
      clear();
      form.scrollIntoView({ block: "nearest" });
    },
    /** A live update: warn when the record being edited moved on elsewhere (saving would overwrite it). */
    changed(record) {
      if (editing !== record.id || !(record.rev > rev)) return;
      status.textContent = `This record was changed elsewhere (now rev ${record.rev}); saving will be refused. Click Edit on its row to load the new version.`;
    },
    /** The record being edited was deleted (here or elsewhere). */
    gone(id) {
      if (editing !== id) return;
      create();
      status.textContent = `Record ${id} was deleted.`;
    },
  };
}

const ownFields = (record) => Object.fromEntries(Object.entries(record).filter(([k]) => !SYSTEM.includes(k)));

/** A starting record: each field's default, first allowed value, or an empty value of its type (numbers: 0 moved into [min, max]). */
function template(fields) {
  const empty = { string: "", number: 0, integer: 0, boolean: false, json: {}, array: [], datetime: null };
  return Object.fromEntries(
    Object.entries(fields).map(([name, f]) => {
      if (f.default !== undefined) return [name, f.default];
      if (Array.isArray(f.enum) && f.enum.length) return [name, f.enum[0]];
      if (f.type === "datetime") return [name, new Date().toISOString()];
      if (f.type === "number" || f.type === "integer") return [name, Math.min(Math.max(0, f.min ?? -Infinity), f.max ?? Infinity)];
      return [name, empty[f.type] ?? null];
    }),
  );
}
