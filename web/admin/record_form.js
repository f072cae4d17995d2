// The record editor of the records page: one input per field of the
// collection's schema (text, number, checkbox, a choice for `enum`, a UTC
// date and time, JSON for json and array fields), or the whole record as
// JSON on a second tab. The server validates; its per-field details are
// shown right under the field they name (and, on the JSON tab, listed under
// the text).

import { h, message } from "./ui.js";
import { nameOf } from "./owners.js";

const SYSTEM = ["id", "created", "updated", "owner", "rev"];
/** Nothing to send for this field: it is left out of the record. */
const SKIP = {};

/**
 * The create / edit form for `collection`, writing through `table` (the
 * SDK's collection). Returns `{form, edit(record), changed(record), gone(id)}`.
 */
export function recordEditor(collection, table) {
  const fields = collection.fields || {};
  const title = h("h2", { id: "record-form-title" });
  const about = h("p", { class: "hint", id: "record-about" });
  const save = h("button", { type: "submit", id: "record-save" });
  const foot = h("p", { class: "error", role: "alert", id: "record-error" });
  const details = h("ul", { class: "error-list", id: "record-error-details" });
  const status = h("p", { class: "hint", id: "record-status", role: "status" });
  let editing = null; // the id being edited, or null when creating
  let rev = 0; // the revision shown in the editor

  // ---- the form tab: one control per field ----
  const idInput = h("input", { id: "record-field-id", name: "id", autocomplete: "off", placeholder: "generated when empty" });
  const idBox = box("id", "Id (optional)", idInput, "letters, digits, _ and -; at most 64");
  const controls = Object.entries(fields).map(([name, def]) => ({ name, ...control(name, def) }));
  const other = collection.strict ? null : jsonControl("_other", "{}");
  const formPane = h(
    "div",
    { id: "record-form-fields", class: "record-fields", role: "tabpanel", "aria-labelledby": "record-tab-form" },
    idBox,
    controls.map((c) => c.box),
    other && box("_other", "Other fields (JSON object)", other.el, "fields outside the schema, kept as they are", "wide"),
    controls.length || other ? null : h("p", { class: "hint" }, "This collection defines no fields."),
  );

  // ---- the JSON tab ----
  const textarea = h("textarea", { id: "record-editor", name: "record", rows: 10, spellcheck: "false" });
  const jsonPane = h(
    "div",
    { id: "record-json", role: "tabpanel", "aria-labelledby": "record-tab-json", hidden: true },
    h("label", { for: "record-editor" }, "The record as JSON (id, created, updated, owner and rev are set by the server)"),
    textarea,
  );

  let tab = "form";
  const tabButton = (name, text) =>
    h("button", { type: "button", role: "tab", class: "tab", id: `record-tab-${name}`, "aria-controls": name === "form" ? "record-form-fields" : "record-json", onclick: () => show(name) }, text);
  const tabs = h("div", { class: "tabs", role: "tablist" }, tabButton("form", "Form"), tabButton("json", "JSON"));

  const form = h(
    "form",
    { class: "panel", id: "record-form", novalidate: true },
    title,
    about,
    tabs,
    formPane,
    jsonPane,
    save,
    " ",
    h("button", { type: "button", class: "secondary", id: "record-new", onclick: () => create() }, "New record"),
    foot,
    details,
    status,
  );

  function clear() {
    foot.textContent = status.textContent = "";
    details.replaceChildren();
    for (const slot of formPane.querySelectorAll(".field-error")) slot.textContent = "";
  }

  /** The record the form holds, or the fields whose input cannot be read. */
  function collect() {
    const data = {};
    const bad = {};
    if (!editing && idInput.value.trim()) data.id = idInput.value.trim();
    for (const c of controls) {
      const read = c.read();
      if (read.error) bad[c.name] = read.error;
      else if (read !== SKIP) data[c.name] = read.value;
    }
    if (other) {
      const read = other.read();
      if (read.error) bad._other = read.error;
      else if (read !== SKIP) {
        const extra = read.value;
        if (!extra || typeof extra !== "object" || Array.isArray(extra)) bad._other = "must be a JSON object, e.g. {\"note\": \"x\"}";
        else for (const [k, v] of Object.entries(extra)) if (!(k in data) && !SYSTEM.includes(k)) data[k] = v;
      }
    }
    return { data, bad };
  }

  /** Shows `values` (the record's own fields) in both tabs. */
  function fill(values) {
    for (const c of controls) c.write(values[c.name]);
    if (other) {
      const extra = Object.fromEntries(Object.entries(values).filter(([k]) => !(k in fields) && !SYSTEM.includes(k)));
      other.write(Object.keys(extra).length ? extra : undefined);
    }
    textarea.value = JSON.stringify(values, null, 2);
  }

  /** The record on the JSON tab, or why it is not one. */
  function parseText() {
    try {
      const data = JSON.parse(textarea.value);
      if (!data || typeof data !== "object" || Array.isArray(data)) return { error: "it must be a JSON object" };
      return { data };
    } catch (e) {
      return { error: e.message };
    }
  }

  /** Switches tabs, carrying what was typed over; refuses while it cannot be read. */
  function show(name) {
    if (name === tab) return;
    clear();
    if (name === "json") {
      const { data, bad } = collect();
      if (Object.keys(bad).length) return showDetails(bad, "Fix these fields first");
      textarea.value = JSON.stringify(data, null, 2);
    } else {
      const parsed = parseText();
      if (parsed.error) return void (foot.textContent = `Not a JSON object: ${parsed.error}`);
      const { id, ...rest } = parsed.data;
      if (!editing) idInput.value = typeof id === "string" ? id : "";
      fill(Object.fromEntries(Object.entries(rest).filter(([k]) => !SYSTEM.includes(k))));
    }
    tab = name;
    formPane.hidden = name !== "form";
    jsonPane.hidden = name !== "json";
    for (const b of tabs.children) b.setAttribute("aria-selected", String(b.id === `record-tab-${name}`));
  }

  /**
   * Per-field messages: under the field they name on the form; listed under
   * the text on the JSON tab, and whatever names no field in any case.
   */
  function showDetails(entries, headline) {
    const listed = [];
    for (const [key, value] of Object.entries(entries)) {
      const text = typeof value === "string" ? value : JSON.stringify(value);
      const slot = formPane.querySelector(`.field-error[data-error-for="${CSS.escape(key)}"]`) || (other && !(key in fields) && key !== "id" ? formPane.querySelector('[data-error-for="_other"]') : null);
      if (slot) slot.textContent = slot.dataset.errorFor === key ? text : `${slot.textContent ? `${slot.textContent}; ` : ""}${key}: ${text}`;
      if (!slot || tab === "json") listed.push([key, text]);
    }
    details.replaceChildren(...listed.map(([k, v]) => h("li", { "data-error-for": k }, h("strong", {}, k), `: ${v}`)));
    if (headline) foot.textContent = headline;
    formPane.querySelector(".field-error:not(:empty)")?.closest(".record-field")?.querySelector("input, select, textarea")?.focus();
  }

  function create() {
    editing = null;
    title.textContent = `New record in ${collection.name}`;
    about.textContent = "";
    save.textContent = "Create";
    idBox.hidden = false;
    idInput.value = "";
    fill(template(fields));
    clear();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear();
    let data;
    if (tab === "json") {
      const parsed = parseText();
      if (parsed.error) return void (foot.textContent = `Not a JSON object: ${parsed.error}`);
      data = parsed.data;
    } else {
      const collected = collect();
      if (Object.keys(collected.bad).length) return showDetails(collected.bad, "Some fields cannot be read");
      data = collected.data;
    }
    try {
      // Editing shows every field, so saving replaces (PUT): a field left
      // empty is removed from the record. If-Match: a change made
      // elsewhere since it was loaded is refused, not overwritten.
      const record = editing ? await table.replace(editing, data, { ifMatch: rev }) : await table.create(data);
      if (editing) {
        rev = record.rev;
        fill(ownFields(record));
        describe(record);
        status.textContent = `Saved ${record.id} (rev ${record.rev}).`;
      } else {
        create();
        status.textContent = `Created ${record.id}.`;
      }
    } catch (e) {
      foot.textContent = message(e);
      if (e.details && typeof e.details === "object") showDetails(e.details);
    }
  });

  function describe(record) {
    const owner = record.owner ? nameOf(record.owner) || record.owner : "none";
    about.textContent = `rev ${record.rev} · owner ${owner} · created ${record.created} · updated ${record.updated}`;
  }

  for (const b of tabs.children) b.setAttribute("aria-selected", String(b.id === "record-tab-form"));
  create();
  return {
    form,
    edit(record) {
      editing = record.id;
      rev = record.rev;
      title.textContent = `Edit record ${record.id}`;
      describe(record);
      save.textContent = "Save";
      idBox.hidden = true;
      fill(ownFields(record));
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

/** A new record: each field's default, nothing for the rest. */
function template(fields) {
  return Object.fromEntries(
    Object.entries(fields)
      .filter(([, f]) => f.default !== undefined)
      .map(([name, f]) => [name, f.default]),
  );
}

/** A labelled field with its hint and its own error line right under the input. */
function box(name, label, input, hint, size) {
  return h(
    "div",
    { class: `record-field${size ? ` ${size}` : ""}` },
    h("label", { for: input.id || input.querySelector("input")?.id }, label),
    input,
    h("p", { class: "error field-error", id: `record-field-${name}-error`, "data-error-for": name, role: "alert" }),
    hint ? h("p", { class: "hint field-hint" }, hint) : null,
  );
}

/** What a field's definition allows, in a few words. */
function hintFor(def) {
  const parts = [def.type];
  if (def.required) parts.push("required");
  if (def.min != null) parts.push(`≥ ${def.min}`);
  if (def.max != null) parts.push(`≤ ${def.max}`);
  if (def.max_length != null) parts.push(def.type === "array" ? `at most ${def.max_length} items` : `at most ${def.max_length} characters`);
  if (def.default !== undefined) parts.push(`default ${JSON.stringify(def.default)}`);
  if (def.type === "datetime") parts.push("UTC");
  return parts.join(" · ");
}

/** The input for one field of the schema: `{box, read(), write(value)}`. */
function control(name, def) {
  const id = `record-field-${name}`;
  const label = `${name}${def.required ? " *" : ""}`;
  const made = Array.isArray(def.enum) && def.enum.length ? choice(id, def.enum) : byType(id, def.type, def);
  const size = ["json", "array"].includes(def.type) ? "wide" : def.type === "datetime" ? "double" : null;
  return { box: box(name, label, made.el, hintFor(def), size), read: made.read, write: made.write };
}

/** A closed list of values (`enum`): a select, with "—" for none. */
function choice(id, allowed) {
  const shown = (v) => (typeof v === "string" ? v : JSON.stringify(v));
  const select = h("select", { id, name: id }, h("option", { value: "" }, "—"), allowed.map((v, i) => h("option", { value: String(i) }, shown(v))));
  let stray; // a stored value the list no longer has, kept as its own option
  return {
    el: select,
    read: () => (select.value === "" ? SKIP : { value: select.value === "stray" ? stray : allowed[Number(select.value)] }),
    write(value) {
      select.querySelector('option[value="stray"]')?.remove();
      if (value === undefined || value === null) return void (select.value = "");
      const at = allowed.findIndex((v) => JSON.stringify(v) === JSON.stringify(value));
      if (at >= 0) return void (select.value = String(at));
      stray = value;
      select.append(h("option", { value: "stray" }, `${shown(value)} (not in the list)`));
      select.value = "stray";
    },
  };
}

function byType(id, type, def) {
  switch (type) {
    case "boolean": {
      const box = h("input", { type: "checkbox", id, name: id });
      return { el: h("span", { class: "check" }, box), read: () => ({ value: box.checked }), write: (v) => void (box.checked = v === true) };
    }
    case "number":
    case "integer": {
      const input = h("input", { type: "number", id, name: id, step: type === "integer" ? 1 : "any", min: def.min ?? null, max: def.max ?? null, inputmode: "decimal" });
      return {
        el: input,
        read() {
          if (input.validity.badInput) return { error: "must be a number" };
          return input.value.trim() === "" ? SKIP : { value: Number(input.value) };
        },
        write: (v) => void (input.value = typeof v === "number" ? String(v) : ""),
      };
    }
    case "datetime": {
      // Shown and read in UTC, like the table's times, to the millisecond.
      const input = h("input", { type: "datetime-local", id, name: id, step: "0.001" });
      const now = h("button", { type: "button", class: "secondary inline", onclick: () => (input.value = new Date().toISOString().slice(0, 23)) }, "now");
      return {
        el: h("span", { class: "with-button" }, input, now),
        read() {
          if (!input.value) return input.validity.badInput ? { error: "must be a date and time" } : SKIP;
          const time = new Date(`${input.value}Z`);
          return Number.isNaN(time.getTime()) ? { error: "must be a date and time" } : { value: time.toISOString() };
        },
        write(v) {
          const time = typeof v === "string" ? new Date(v) : null;
          input.value = time && !Number.isNaN(time.getTime()) ? time.toISOString().slice(0, 23) : "";
        },
      };
    }
    case "json":
    case "array":
      return jsonControl(id, type === "array" ? "[]" : "any JSON: {\"a\": 1}, [1, 2], \"text\", 3");
    default: {
      const input = h("input", { id, name: id, autocomplete: "off" });
      return { el: input, read: () => (input.value === "" ? SKIP : { value: input.value }), write: (v) => void (input.value = v == null ? "" : typeof v === "string" ? v : JSON.stringify(v)) };
    }
  }
}

/** A JSON value typed as text; empty is none. */
function jsonControl(name, placeholder) {
  const id = name.startsWith("record-field-") ? name : `record-field-${name}`;
  const area = h("textarea", { id, name: id, rows: 3, spellcheck: "false", placeholder });
  return {
    el: area,
    read() {
      if (!area.value.trim()) return SKIP;
      try {
        return { value: JSON.parse(area.value) };
      } catch (e) {
        return { error: `not valid JSON: ${e.message}` };
      }
    },
    write: (v) => void (area.value = v === undefined || v === null ? "" : JSON.stringify(v, null, 2)),
  };
}
