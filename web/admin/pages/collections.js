// Collections: list, create, edit (schema, rules, events, retention) and delete.
// `#/collections` lists them under a create form; `#/collections/<name>` edits
// one. A refused definition shows each of the server's `details` next to the
// input it is about, and the whole message at the form's foot.

import { pb, h, message, go } from "../ui.js";

const TYPES = ["string", "number", "integer", "boolean", "json", "array", "datetime"];
const RULES = ["list", "view", "create", "update", "delete"];
const EVENTS = ["create", "update", "delete"];
const NUMBER_OPTIONS = ["min", "max", "max_length"];

export function collections(app, editing) {
  const rows = h("tbody", { id: "collections-rows" });
  const listError = h("p", { class: "error", role: "alert", id: "collections-error" });
  const form = collectionForm(editing, () => load());

  const load = async () => {
    try {
      const { items } = await pb.request("GET", "/api/collections");
      rows.replaceChildren(...items.map((c) => listRow(c, remove)));
      if (!items.length) rows.append(h("tr", {}, h("td", { colspan: 6, class: "hint" }, "No collections yet.")));
      listError.textContent = "";
    } catch (e) {
      listError.textContent = message(e);
    }
  };
  const remove = async (name) => {
    if (!confirm(`Delete collection ${name}? All of its records are removed.`)) return;
    try {
      await pb.request("DELETE", `/api/collections/${encodeURIComponent(name)}`);
      if (editing === name) go("#/collections");
      else await load();
    } catch (e) {
      listError.textContent = message(e);
    }
  };

  const heads = ["name", "fields", "rules", "events", "retention", ""].map((t) => h("th", {}, t));
  const list = h("section", { class: "panel" }, h("div", { class: "scroll" }, h("table", { id: "collections-table" }, h("thead", {}, h("tr", {}, heads)), rows)), listError);
  // Editing puts the form first: it is what the user came for.
  app.append(h("h1", {}, "Collections"), ...(editing ? [form, list] : [list, form]));
  load();
}

function listRow(c, remove) {
  const path = encodeURIComponent(c.name);
  const retention = c.retention ? [c.retention.max_age && `max age ${c.retention.max_age}`, c.retention.max_records && `${c.retention.max_records} records`].filter(Boolean).join(", ") : "";
  return h(
    "tr",
    { "data-collection": c.name },
    h("td", {}, h("a", { href: `#/collections/${path}` }, c.name)),
    h("td", {}, String(Object.keys(c.fields || {}).length)),
    h("td", { class: "rules-summary" }, rulesSummary(c.rules || {})),
    h("td", {}, (c.events || []).join(", ") || "none"),
    h("td", {}, retention || "none"),
    h(
      "td",
      { class: "actions" },
      h("a", { href: `#/collections/${path}`, class: "edit-link" }, "Edit"),
      h("a", { href: `#/records/${path}`, class: "records-link" }, "Records"),
      c.kind === "series" ? h("a", { href: `#/chart/${path}`, class: "chart-link" }, "Chart") : null,
      h("a", { href: `#/api/${path}`, class: "api-link" }, "API"),
      h("button", { type: "button", class: "secondary", onclick: () => remove(c.name) }, "Delete"),
    ),
  );
}

/** One line per distinct rule, e.g. "list, view: @user != null", "create, update, delete: admins only". */
function rulesSummary(rules) {
  const groups = new Map();
  for (const op of RULES) {
    const rule = rules[op] || "admins only";
    groups.set(rule, [...(groups.get(rule) || []), op]);
  }
  return [...groups].map(([rule, ops]) => h("div", { title: rule }, h("span", { class: "hint" }, `${ops.join(", ")}: `), rule.length > 60 ? `${rule.slice(0, 59)}…` : rule));
}

// ---- the create / edit form ------------------------------------------------

/** A `<p class="error">` that the server's detail with this key is shown in. */
const slot = (key) => h("p", { class: "error slot", "data-error-for": key });

function labelled(id, text, input, key, hint) {
  return h("div", {}, h("label", { for: id }, text), input, hint ? h("p", { class: "hint" }, hint) : null, slot(key));
}

function collectionForm(editing, reloadList) {
  const fieldRows = h("tbody", { id: "fields-rows" });
  const foot = h("p", { class: "error", role: "alert", id: "collection-error" });
  const saved = h("p", { class: "hint", id: "collection-saved", role: "status" });
  const input = (id, attrs = {}) => h("input", { id, name: id, ...attrs });
  const ruleInputs = RULES.map((op) => labelled(`rule-${op}`, `${op} rule`, input(`rule-${op}`, { placeholder: "empty: admins only", autocomplete: "off" }), `rules.${op}`));
  const eventBoxes = EVENTS.map((op) => h("label", {}, h("input", { type: "checkbox", id: `event-${op}`, name: "event", value: op, checked: true }), op));
  let snapshot = null; // the definition as loaded, to send only what changed

  const form = h(
    "form",
    { class: "panel", id: "collection-form" },
    h("h2", { id: "collection-form-title" }, editing ? `Edit collection ${editing}` : "Create a collection"),
    h("div", { class: "name-cell" }, labelled("collection-name", "Name", input("collection-name", { required: true, placeholder: "sensors", readonly: Boolean(editing), value: editing || "" }), "name", editing ? "A collection cannot be renamed." : null)),
    h("h3", {}, "Fields"),
    h("div", { class: "scroll" }, h("table", { class: "fields-table" }, h("thead", {}, h("tr", {}, ["name", "type", "required", "min", "max", "max length", "default (JSON)", "enum (JSON list)", ""].map((t) => h("th", {}, t)))), fieldRows)),
    h(
      "div",
      { class: "checks" },
      h("button", { type: "button", class: "secondary", id: "add-field", onclick: () => fieldRows.append(fieldRow()) }, "Add field"),
      h("label", { class: "strict" }, h("input", { type: "checkbox", id: "collection-strict", name: "strict" }), "strict: refuse fields not listed"),
    ),
    h("h3", {}, "Rules"),
    h("p", { class: "hint" }, "Expressions such as @user != null or owner = @user.id. An empty rule means admins only."),
    h("div", { class: "row top" }, ruleInputs),
    h("h3", {}, "Events, protected fields, indexes, retention"),
    h("div", { class: "checks" }, h("span", { class: "hint" }, "Realtime events for:"), eventBoxes),
    slot("events"),
    h(
      "div",
      { class: "row top" },
      labelled("collection-protected", "Protected fields (admins only)", input("collection-protected", { placeholder: "secret_note, other" }), "protected"),
      labelled("collection-indexes", "Indexes", input("collection-indexes", { placeholder: "device, site" }), "indexes"),
      labelled("retention-max-age", "Keep for at most", input("retention-max-age", { placeholder: "7d (30s, 15m, 12h)" }), "retention.max_age"),
      labelled("retention-max-records", "Keep at most (records)", input("retention-max-records", { type: "number", min: 1, step: 1 }), "retention.max_records"),
    ),
    slot("retention"),
    h("button", { type: "submit", id: "collection-submit" }, editing ? "Save changes" : "Create"),
    editing ? h("span", { class: "form-links" }, h("a", { href: "#/collections", id: "collection-cancel" }, "Back to the list"), h("a", { href: `#/records/${encodeURIComponent(editing)}` }, "Its records")) : null,
    foot,
    saved,
  );

  const fill = (c) => {
    form.querySelector("#collection-name").value = c.name;
    form.querySelector("#collection-strict").checked = Boolean(c.strict);
    fieldRows.replaceChildren(...Object.entries(c.fields || {}).map(([name, spec]) => fieldRow(name, spec)));
    for (const op of RULES) form.querySelector(`#rule-${op}`).value = (c.rules && c.rules[op]) || "";
    for (const op of EVENTS) form.querySelector(`#event-${op}`).checked = (c.events || EVENTS).includes(op);
    form.querySelector("#collection-protected").value = (c.protected || []).join(", ");
    form.querySelector("#collection-indexes").value = (c.indexes || []).join(", ");
    form.querySelector("#retention-max-age").value = (c.retention && c.retention.max_age) || "";
    form.querySelector("#retention-max-records").value = (c.retention && c.retention.max_records) || "";
    snapshot = readDefinition(form).definition;
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const el of form.querySelectorAll("[data-error-for]")) el.textContent = "";
    foot.textContent = saved.textContent = "";
    const { definition, problems } = readDefinition(form);
    if (Object.keys(problems).length) {
      showDetails(form, problems);
      foot.textContent = "Please correct the marked inputs.";
      return;
    }
    try {
      if (editing) {
        const patch = mergePatch(snapshot, definition);
        fill(await pb.request("PATCH", `/api/collections/${encodeURIComponent(editing)}`, patch));
        saved.textContent = Object.keys(patch).length ? "Saved." : "Nothing changed.";
      } else {
        await pb.request("POST", "/api/collections", definition);
        form.reset();
        fieldRows.replaceChildren(fieldRow());
        saved.textContent = `Created ${definition.name}.`;
      }
      reloadList();
    } catch (e) {
      showDetails(form, e.details);
      foot.textContent = message(e, { details: true });
    }
  });

  if (editing) {
    pb.request("GET", `/api/collections/${encodeURIComponent(editing)}`).then(fill, (e) => (foot.textContent = message(e)));
  } else {
    fieldRows.append(fieldRow());
  }
  return form;
}

/** One editable field. Its error slots are keyed by the name typed in it. */
function fieldRow(name = "", spec = { type: "string" }) {
  const cell = (el, key) => h("td", { "data-key": key }, el, h("p", { class: "error slot" }));
  const text = (n, value, attrs = {}) => h("input", { name: `field-${n}`, "aria-label": n, value: value ?? "", autocomplete: "off", ...attrs });
  const json = (value) => (value === undefined ? "" : JSON.stringify(value));
  const row = h(
    "tr",
    { class: "field-row" },
    cell(text("name", name, { placeholder: "temp", class: "field-name" }), ""),
    cell(h("select", { name: "field-type", "aria-label": "type" }, TYPES.map((t) => h("option", { value: t, selected: t === spec.type }, t))), "type"),
    cell(h("input", { type: "checkbox", name: "field-required", "aria-label": "required", checked: Boolean(spec.required) }), "required"),
    NUMBER_OPTIONS.map((n) => cell(text(n, spec[n], { type: "number", step: "any", class: "field-number" }), n)),
    cell(text("default", json(spec.default), { placeholder: '"text", 0, true' }), "default"),
    cell(text("enum", json(spec.enum), { placeholder: '["a", "b"]' }), "enum"),
    h("td", {}, h("button", { type: "button", class: "secondary remove-field", "aria-label": "remove field", onclick: () => row.remove() }, "Remove")),
  );
  return row;
}

/** JSON if it parses, else the text itself: `abc` as a default means "abc". */
function loose(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

const list = (text) => text.split(/[\s,]+/).filter(Boolean);

/**
 * The definition the form describes, and the problems found before asking
 * the server (ones it would refuse without saying which input is wrong).
 */
function readDefinition(form) {
  const problems = {};
  const fields = {};
  for (const row of form.querySelectorAll(".field-row")) {
    const value = (n) => row.querySelector(`[name=field-${n}]`).value.trim();
    const name = value("name");
    // Key the row's error slots by its current name: `fields.temp.default`.
    for (const td of row.querySelectorAll("td[data-key]")) td.lastChild.dataset.errorFor = ["fields", name, td.dataset.key].filter(Boolean).join(".");
    if (!name) continue; // a blank row is just unused
    if (fields[name]) problems[`fields.${name}`] = "is defined twice";
    const spec = { type: value("type"), required: row.querySelector("[name=field-required]").checked };
    for (const n of NUMBER_OPTIONS) if (value(n) !== "") spec[n] = Number(value(n));
    if (value("default") !== "") spec.default = loose(value("default"));
    if (value("enum") !== "") {
      spec.enum = loose(value("enum"));
      if (!Array.isArray(spec.enum)) problems[`fields.${name}.enum`] = 'must be a JSON list, e.g. ["a", "b"]';
    }
    fields[name] = spec;
  }
  const text = (id) => form.querySelector(`#${id}`).value.trim();
  const rules = {};
  for (const op of RULES) if (text(`rule-${op}`)) rules[op] = text(`rule-${op}`);
  const definition = {
    name: text("collection-name"),
    strict: form.querySelector("#collection-strict").checked,
    fields,
    rules,
    events: EVENTS.filter((op) => form.querySelector(`#event-${op}`).checked),
    protected: list(text("collection-protected")),
    indexes: list(text("collection-indexes")),
  };
  const retention = {};
  if (text("retention-max-age")) retention.max_age = text("retention-max-age");
  if (text("retention-max-records")) retention.max_records = Number(text("retention-max-records"));
  if (Object.keys(retention).length) definition.retention = retention;
  return { definition, problems };
}

/**
 * Puts each detail in the slot with its key, or the nearest one above it
 * (`indexes.x` → `indexes`). `records.<id>.<field>` (an existing record the
 * new schema would break) goes next to that field.
 */
function showDetails(form, details) {
  if (!details || typeof details !== "object") return;
  const slots = [...form.querySelectorAll("[data-error-for]")];
  for (const [key, text] of Object.entries(details)) {
    const broken = key.match(/^records\.([^.]+)\.(.+)$/);
    const parts = (broken ? `fields.${broken[2]}` : key).split(".");
    const line = broken ? `record ${broken[1]}: ${text}` : String(text);
    for (; parts.length; parts.pop()) {
      const el = slots.find((s) => s.dataset.errorFor === parts.join("."));
      if (el) {
        el.textContent = el.textContent ? `${el.textContent}; ${line}` : line;
        break;
      }
    }
  }
}

/** The JSON merge patch (RFC 7396) that turns `before` into `after`: removed keys become null. */
function mergePatch(before, after) {
  const patch = {};
  const isObject = (v) => v && typeof v === "object" && !Array.isArray(v);
  for (const key of Object.keys(before)) if (!(key in after)) patch[key] = null;
  for (const [key, value] of Object.entries(after)) {
    if (isObject(value) && isObject(before[key])) {
      const inner = mergePatch(before[key], value);
      if (Object.keys(inner).length) patch[key] = inner;
    } else if (JSON.stringify(value) !== JSON.stringify(before[key])) {
      patch[key] = value;
    }
  }
  return patch;
}
