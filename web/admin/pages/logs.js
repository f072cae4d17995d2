// The request log: the last requests the server answered (it keeps a few
// hundred, in memory only), newest first, filtered by status class and
// path, refreshed every few seconds while the page is open. The admin UI's
// own requests (this page's lookups, the dashboard's polling) are left out
// unless asked for, so an app's requests are not buried under them. An
// error answer shows what the server said; the user or API key that made
// a request shows by email or name. On a narrow screen each entry is a card.

import { pb, h, message } from "../ui.js";
import { lookUp, nameOf } from "../owners.js";

const REFRESH_MS = 3000;
const STATUS_CLASSES = [
  ["", "all"],
  ["error", "errors (4xx and 5xx)"],
  ["2xx", "2xx success"],
  ["3xx", "3xx redirects"],
  ["4xx", "4xx client errors"],
  ["5xx", "5xx server errors"],
];
const COLUMNS = ["time", "method", "path", "status", "ms", "who", "error"];

export function logs(app) {
  const status = h("select", { id: "logs-status", name: "status" }, STATUS_CLASSES.map(([value, text]) => h("option", { value }, text)));
  const prefix = h("input", { id: "logs-prefix", name: "prefix", placeholder: "/api/collections", autocomplete: "off" });
  const auto = h("input", { type: "checkbox", id: "logs-auto", checked: true });
  const own = h("input", { type: "checkbox", id: "logs-own", onchange: () => load() });
  const error = h("p", { class: "error slot", role: "alert", id: "logs-error" });
  const summary = h("p", { class: "list-head", id: "logs-summary", role: "status" });
  const rows = h("tbody", { id: "logs-rows" });
  const empty = h("p", { class: "hint", id: "logs-empty", hidden: true }, "No request matches.");
  const field = (id, text, el) => h("div", {}, h("label", { for: id }, text), el);
  const form = h(
    "form",
    { class: "panel", id: "logs-form" },
    h("div", { class: "row" }, field("logs-status", "Status", status), h("div", { class: "grow" }, h("label", { for: "logs-prefix" }, "Path starts with"), prefix)),
    h("button", { type: "submit", id: "logs-apply" }, "Apply"),
    " ",
    h("button", { type: "button", class: "secondary", id: "logs-refresh", onclick: () => load() }, "Refresh now"),
    " ",
    h("span", { class: "checks inline-checks wrap" }, h("label", { for: "logs-auto" }, auto, "refresh every 3 s"), h("label", { for: "logs-own" }, own, "show the admin UI's own requests")),
    error,
  );
  app.append(
    h("h1", {}, "Request log"),
    h("p", { class: "hint" }, "The most recent HTTP requests, newest first, kept in the server's memory only (a restart empties the log). Tokens, passwords and request bodies are never kept. WebSocket and SSE connections appear once, when they open."),
    form,
    h("section", { class: "panel" }, summary, h("div", { class: "scroll" }, h("table", { id: "logs-table", class: "cards" }, h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", {}, c)))), rows)), empty),
  );

  let query = {};
  let loading = false;
  async function load() {
    if (loading) return;
    loading = true;
    try {
      const page = await pb.request("GET", "/api/logs/requests", undefined, { query: { ...query, admin_ui: own.checked ? null : false } });
      rows.replaceChildren(...page.items.map(row));
      empty.hidden = page.items.length > 0;
      const filtered = query.status || query.prefix;
      const hidden = page.hidden ? ` · ${page.hidden} of the admin UI's own hidden` : "";
      summary.textContent = `${page.items.length} request${page.items.length === 1 ? "" : "s"}${filtered ? " match" : ""}${hidden} · the server keeps the last ${page.capacity}`;
      error.textContent = "";
      if (await lookUp(page.items.map((e) => e.actor))) for (const td of rows.querySelectorAll("td[data-actor]")) td.textContent = nameOf(td.dataset.actor) || td.dataset.actor;
    } catch (e) {
      error.textContent = message(e);
    } finally {
      loading = false;
    }
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    query = { status: status.value || null, prefix: prefix.value.trim() || null };
    load();
  });
  status.addEventListener("change", () => form.requestSubmit());

  load();
  const timer = setInterval(() => auto.checked && !document.hidden && load(), REFRESH_MS);
  return () => clearInterval(timer);
}

function row(entry) {
  const cell = (label, attrs, ...content) => h("td", { "data-label": label, ...attrs }, ...content);
  const time = entry.time || "";
  const failed = entry.status >= 400;
  return h(
    "tr",
    { class: `status-${Math.floor(entry.status / 100)}xx` },
    // "12:32:43.123" (UTC): the full time is in the title.
    cell("time", { title: time, class: "nowrap" }, time.slice(11, 23)),
    cell("method", {}, entry.method),
    cell("path", { class: "log-path", title: entry.path }, entry.path),
    cell("status", { class: "log-status" }, String(entry.status)),
    cell("ms", { class: "num" }, entry.duration_ms < 10 ? entry.duration_ms.toFixed(2) : String(Math.round(entry.duration_ms))),
    entry.actor ? cell("who", { title: entry.actor, "data-actor": entry.actor }, nameOf(entry.actor) || entry.actor) : cell("who", { class: "hint", title: "no user or API key (or refused before one was read)" }, "—"),
    cell("error", { class: failed ? "log-error" : "hint" }, entry.error ? `${entry.error.code}: ${entry.error.message}` : failed ? "" : "—"),
  );
}
