// Settings: every setting with where its value came from; the runtime ones
// that are not pinned at start can be changed here (PATCH /api/settings).

import { pb, h, message, formatBytes } from "../ui.js";

const shown = (v) => (v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v));

/** Why a setting cannot be changed here. */
function whyReadOnly(s) {
  if (!s.runtime) return "Read at start only: change it by flag, environment or pulsebase.toml and restart.";
  if (s.source === "file") return "Pinned by pulsebase.toml: remove it there to manage it here.";
  if (s.source === "startup") return "Pinned by a flag or environment variable at start: remove it there to manage it here.";
  return "Not editable at runtime.";
}

/** The input for an editable setting, typed after its default (or value). */
function input(name, s) {
  const sample = s.default !== undefined ? s.default : s.value;
  const attrs = { id: `setting-${name}`, name, "data-kind": typeof sample, "aria-describedby": `setting-${name}-error` };
  if (typeof sample === "boolean") return h("input", { ...attrs, type: "checkbox", checked: s.value === true });
  if (typeof sample === "number") return h("input", { ...attrs, type: "number", step: Number.isInteger(sample) ? 1 : "any", value: String(s.value) });
  if (typeof sample === "string") return h("input", { ...attrs, value: s.value ?? "" });
  attrs["data-kind"] = "json";
  return h("textarea", attrs, JSON.stringify(s.value, null, 2));
}

/** The input's value as the JSON the server takes; throws on bad JSON. */
function read(el) {
  switch (el.dataset.kind) {
    case "boolean":
      return el.checked;
    // An empty or non-numeric entry goes as typed, for the server to refuse by name.
    case "number":
      return el.value === "" || Number.isNaN(Number(el.value)) ? el.value : Number(el.value);
    case "string":
      return el.value;
    default:
      return JSON.parse(el.value);
  }
}

export function settings(app) {
  const rows = h("tbody", { id: "settings-rows" });
  const error = h("p", { class: "error", role: "alert", id: "settings-error" });
  const result = h("p", { class: "hint", id: "settings-result", role: "status" });
  let current = {};

  const row = (name, s) => {
    const errorLine = h("p", { class: "error field-error", id: `setting-${name}-error` });
    const value = s.editable ? h("td", { class: "setting-value" }, input(name, s), errorLine) : h("td", { class: "setting-value" }, h("code", {}, shown(s.value)), h("p", { class: "hint" }, whyReadOnly(s)));
    // Reset only means something when a runtime change is in place.
    const reset = s.editable && s.source === "runtime" ? h("button", { type: "button", class: "secondary", "data-reset": name, onclick: () => resetOne(name) }, "Reset to default") : "";
    // data-label names each cell where a phone shows the rows as cards.
    return h(
      "tr",
      { "data-setting": name, class: s.editable ? "editable" : "read-only" },
      h("td", { class: "setting-name" }, h("code", {}, name)),
      value,
      h("td", { class: "meta", "data-label": "default" }, h("code", {}, shown(s.default))),
      h("td", { class: "meta", "data-label": "source" }, s.source || "—"),
      h("td", { class: "meta", "data-label": "runtime" }, s.runtime ? "yes" : "no"),
      h("td", { class: "row-actions" }, reset),
    );
  };
  // What can be changed here first, then the rest; alphabetical within each.
  const order = (all) => Object.keys(all).sort((a, b) => all[b].editable - all[a].editable || a.localeCompare(b));
  const render = (all) => {
    current = all;
    rows.replaceChildren(...order(all).map((name) => row(name, all[name])));
  };
  const clearErrors = () => {
    for (const el of rows.querySelectorAll(".field-error")) el.textContent = "";
    error.textContent = "";
  };
  // Each refused setting's reason goes next to its input; the rest (an
  // unknown name, a network error) to the form's error line.
  const showRefusal = (e) => {
    const rest = [];
    for (const [name, why] of Object.entries((e && e.details) || {})) {
      const el = rows.querySelector(`#${CSS.escape(`setting-${name}-error`)}`);
      if (el) el.textContent = String(why);
      else rest.push(`${name}: ${why}`);
    }
    error.textContent = message(e) + (rest.length ? `: ${rest.join("; ")}` : "");
  };

  const load = async () => {
    try {
      render(await pb.request("GET", "/api/settings"));
    } catch (e) {
      error.textContent = message(e);
    }
  };
  const resetOne = async (name) => {
    clearErrors();
    result.textContent = "";
    try {
      const all = await pb.request("PATCH", "/api/settings", { [name]: null });
      current = all;
      // Only this row: unsaved edits in the others stay.
      rows.querySelector(`tr[data-setting="${CSS.escape(name)}"]`).replaceWith(row(name, all[name]));
      result.textContent = `${name} is back to its default.`;
    } catch (e) {
      showRefusal(e);
    }
  };

  const form = h(
    "form",
    { class: "panel", id: "settings-form" },
    h("p", { class: "hint" }, "Changes apply at once and survive restarts. Saving is all or nothing: if one setting is refused, none changes. Durations: 90s, 15m, 1h, 30d."),
    h("div", { class: "scroll" }, h("table", { id: "settings-table" }, h("thead", {}, h("tr", {}, ["setting", "value", "default", "source", "runtime", ""].map((t) => h("th", {}, t)))), rows)),
    h("button", { type: "submit", id: "settings-save" }, "Save changes"),
    result,
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    result.textContent = "";
    // Only what differs from the server's value, so untouched settings keep their source.
    const change = {};
    let bad = false;
    for (const el of rows.querySelectorAll("[data-kind]")) {
      try {
        const value = read(el);
        if (JSON.stringify(value) !== JSON.stringify(current[el.name].value)) change[el.name] = value;
      } catch {
        rows.querySelector(`#${CSS.escape(`setting-${el.name}-error`)}`).textContent = "not valid JSON";
        bad = true;
      }
    }
    if (bad) return;
    const names = Object.keys(change);
    if (!names.length) {
      result.textContent = "Nothing changed.";
      return;
    }
    try {
      render(await pb.request("PATCH", "/api/settings", change));
      result.textContent = `Saved: ${names.join(", ")}.`;
    } catch (e) {
      showRefusal(e);
    }
  });

  app.append(h("h1", {}, "Settings"), form, backupPanel());
  load();
}

/**
 * Downloads GET /api/backup. A plain link cannot carry the bearer token
 * (the API takes no cookies), so the file is fetched and handed to the
 * browser as a blob: it passes through memory once.
 */
function backupPanel() {
  const status = h("p", { class: "hint", id: "backup-result", role: "status" });
  const button = h("button", { type: "button", id: "backup-download" }, "Download a backup");
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.textContent = "Taking a consistent snapshot…";
    try {
      const blob = await pb.request("GET", "/api/backup", undefined, { as: "blob" });
      const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "Z");
      const link = h("a", { href: URL.createObjectURL(blob), download: `pulsebase-${stamp}.pbbackup` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
      status.textContent = `Downloaded ${formatBytes(blob.size)}. Restore it with: pulsebase restore FILE --data NEW_DIR`;
    } catch (e) {
      status.textContent = message(e);
    } finally {
      button.disabled = false;
    }
  });
  return h(
    "section",
    { class: "panel", id: "backup-panel" },
    h("h2", {}, "Backup"),
    h("p", { class: "hint" }, "A consistent snapshot of every collection, record, user, key and setting, taken while the server runs (writes wait while it is copied to a local file). For scheduled backups use pulsebase backup FILE --url; see docs/operations.md."),
    button,
    status,
  );
}
