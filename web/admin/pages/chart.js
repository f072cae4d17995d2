// Charts of a series collection: pick fields, series, a time range and a
// bucket size; the history is drawn and then follows live buckets. The
// choices live in the route (`#/chart/<collection>/fields=temp,humidity&range=1h`),
// so a chart can be bookmarked or linked to.

import { pb, h, message, go } from "../ui.js";
import { isSeries, numericFields, seriesNames, autoBucket, BUCKETS, bucketMs } from "../series.js";
import { seriesChart } from "../chart.js";

const RANGES = { "15m": ["last 15 minutes", 15 * 60_000], "1h": ["last hour", 3_600_000], "24h": ["last 24 hours", 86_400_000], "7d": ["last 7 days", 7 * 86_400_000], custom: ["custom", null] };
const MAX_BUCKETS = 5000; // a bucket that would draw more is refused here, before the server is asked

export function chart(app, name) {
  const picker = h("select", { id: "chart-collection", "aria-label": "series collection", onchange: () => go(`#/chart/${encodeURIComponent(picker.value)}`) });
  const error = h("p", { class: "error", role: "alert", id: "chart-page-error" });
  app.append(h("h1", {}, "Chart ", picker), error);
  let left = false;
  let leave = () => {};
  pb.request("GET", "/api/collections").then(({ items }) => {
    if (left) return;
    const series = (items || []).filter(isSeries);
    picker.replaceChildren(h("option", { value: "", disabled: true, selected: !name }, "choose a series collection"), ...series.map((c) => h("option", { value: c.name, selected: c.name === name }, c.name)));
    if (!series.length) {
      error.replaceChildren(h("span", { class: "hint" }, 'There are no series collections yet. A collection with "kind": "series" holds readings that can be charted here.'));
      return;
    }
    if (!name) return go(`#/chart/${encodeURIComponent(series[0].name)}`);
    const collection = (items || []).find((c) => c.name === name);
    if (!collection) return void (error.textContent = `There is no collection ${name}.`);
    if (!isSeries(collection)) {
      error.replaceChildren(h("span", { class: "hint" }, `${name} is not a series collection: its records are on the `, h("a", { href: `#/records/${encodeURIComponent(name)}` }, "Records"), " page."));
      return;
    }
    // Read from the raw hash: the router has decoded its parts once, which
    // would turn an escaped "&" in a series name into a separator.
    leave = chartView(app, collection, new URLSearchParams(location.hash.split("/").slice(3).join("/")));
  }, (e) => (error.textContent = message(e)));
  return () => {
    left = true;
    leave();
  };
}

function chartView(app, collection, params) {
  const numeric = numericFields(collection);
  if (!numeric.length) {
    app.append(h("p", { class: "hint" }, `${collection.name} has no number fields to chart.`));
    return () => {};
  }
  const listed = (key) => (params.get(key) || "").split(",").filter(Boolean);
  const choice = {
    fields: listed("fields").filter((f) => numeric.includes(f)),
    series: listed("series"),
    range: RANGES[params.get("range")] ? params.get("range") : "1h",
    bucket: BUCKETS.includes(params.get("bucket")) ? params.get("bucket") : "auto",
    from: params.get("from") || "",
    to: params.get("to") || "",
  };
  if (!choice.fields.length) choice.fields = numeric.slice(0, 2);

  const check = (group, value, checked) => h("label", {}, h("input", { type: "checkbox", name: group, value, checked }), value);
  const fieldBox = h("div", { class: "checks wrap", id: "chart-fields" }, numeric.map((f) => check("field", f, choice.fields.includes(f))));
  const seriesBox = h("div", { class: "checks wrap pick-list", id: "chart-series" });
  const range = h("select", { id: "chart-range", name: "range" }, Object.entries(RANGES).map(([k, [text]]) => h("option", { value: k, selected: k === choice.range }, text)));
  const bucket = h("select", { id: "chart-bucket", name: "bucket" });
  const from = h("input", { type: "datetime-local", id: "chart-from", name: "from", step: 1, value: localInput(choice.from) });
  const to = h("input", { type: "datetime-local", id: "chart-to", name: "to", step: 1, value: localInput(choice.to) });
  const custom = h("div", { class: "row", id: "chart-custom" }, h("div", {}, h("label", { for: "chart-from" }, "From (your time)"), from), h("div", {}, h("label", { for: "chart-to" }, "To (your time)"), to));
  const formError = h("p", { class: "error slot", role: "alert", id: "chart-form-error" });
  const field = (id, text, el) => h("div", {}, h("label", { for: id }, text), el);
  const form = h(
    "form",
    { class: "panel", id: "chart-form" },
    h("div", { class: "row top" }, h("div", { class: "grow" }, h("span", { class: "label" }, "Fields"), fieldBox), field("chart-range", "Time range", range), field("chart-bucket", "Bucket", bucket)),
    custom,
    h("div", {}, h("span", { class: "label" }, `Series (${collection.series || "one"}; none ticked: all)`), seriesBox),
    formError,
    h("p", {}, h("a", { href: `#/records/${encodeURIComponent(collection.name)}`, id: "chart-records-link" }, "Its readings")),
  );
  const panel = h("section", { class: "panel", id: "chart-panel" });
  app.append(form, panel);

  /** The range in ms: {last} for the presets, {from, to} for custom; null with a message when custom is incomplete. */
  function currentRange() {
    if (choice.range !== "custom") return { last: RANGES[choice.range][1] };
    const a = Date.parse(choice.from);
    const b = Date.parse(choice.to);
    if (Number.isNaN(a) || Number.isNaN(b)) return { invalid: "Choose both ends of the custom range." };
    if (a >= b) return { invalid: "The range must end after it starts." };
    return { from: a, to: b };
  }
  const spanOf = (r) => (r.last != null ? r.last : r.to - r.from);

  function showBuckets(r) {
    const auto = r.invalid ? null : autoBucket(spanOf(r));
    bucket.replaceChildren(h("option", { value: "auto", selected: choice.bucket === "auto" }, auto ? `auto (${auto})` : "auto"), ...BUCKETS.map((b) => h("option", { value: b, selected: b === choice.bucket }, b)));
    return auto;
  }

  const seen = new Set(choice.series);
  function showSeries(names) {
    for (const n of names) seen.add(n);
    const ticked = new Set(choice.series);
    seriesBox.replaceChildren(...[...seen].sort().map((n) => check("series", n, ticked.has(n))));
    if (!seen.size) seriesBox.append(h("span", { class: "hint" }, "none has written yet"));
  }
  showSeries([]);
  seriesNames(collection).then(showSeries, (e) => (formError.textContent = `the list of series: ${message(e)}`));

  let current = null;
  function render() {
    if (current) current.destroy();
    current = null;
    panel.replaceChildren();
    formError.textContent = "";
    custom.hidden = choice.range !== "custom";
    const r = currentRange();
    const auto = showBuckets(r);
    remember();
    if (r.invalid) return void panel.append(h("p", { class: "hint", id: "chart-empty" }, r.invalid));
    if (!choice.fields.length) return void panel.append(h("p", { class: "hint", id: "chart-empty" }, "Tick at least one field."));
    const size = choice.bucket === "auto" ? auto : choice.bucket;
    if (spanOf(r) / bucketMs(size) > MAX_BUCKETS) {
      formError.textContent = `A ${size} bucket gives over ${MAX_BUCKETS} points for this range: choose a larger one.`;
      return;
    }
    current = seriesChart(collection, { fields: choice.fields, series: choice.series.length ? choice.series : null, range: r, bucket: size, onSeries: showSeries });
    panel.append(current.element);
  }

  /** Keeps the route in step with the form without rendering the page again. */
  function remember() {
    const q = new URLSearchParams({ fields: choice.fields.join(","), range: choice.range, bucket: choice.bucket });
    if (choice.series.length) q.set("series", choice.series.join(","));
    if (choice.range === "custom") {
      q.set("from", choice.from);
      q.set("to", choice.to);
    }
    history.replaceState(null, "", `#/chart/${encodeURIComponent(collection.name)}/${q.toString().replace(/%2C/g, ",")}`);
  }

  form.addEventListener("submit", (e) => e.preventDefault());
  form.addEventListener("change", (e) => {
    const ticked = (group) => [...form.querySelectorAll(`input[name=${group}]:checked`)].map((i) => i.value);
    choice.fields = ticked("field");
    choice.series = ticked("series");
    choice.range = range.value;
    choice.bucket = e.target === range ? "auto" : bucket.value;
    if (choice.range === "custom" && (e.target === range || !from.value || !to.value)) {
      // Start a custom range from the preset shown last, so both ends are filled.
      const end = to.value ? new Date(to.value) : new Date();
      if (!to.value) to.value = localInput(end.toISOString());
      if (!from.value) from.value = localInput(new Date(end - 3_600_000).toISOString());
    }
    choice.from = from.value ? new Date(from.value).toISOString() : "";
    choice.to = to.value ? new Date(to.value).toISOString() : "";
    render();
  });
  render();
  return () => {
    if (current) current.destroy();
  };
}

/** An RFC 3339 time as a datetime-local value in the browser's zone ("" for none). */
function localInput(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "";
  const d = new Date(t - new Date(t).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 19);
}
