// A chart of a series collection: its history from `aggregate`, then live
// from closed buckets, one line per series × field, drawn with uPlot
// (vendor/, loaded by index.html). Used by the chart page and the dashboard.

import { h, message } from "./ui.js";
import { history, bucketStream, bucketMs, aggsFor, graceFor } from "./series.js";

// Distinct for the first eight series on white; fields of one series share
// its colour and differ by dash, so a series reads as one thing.
const COLORS = ["#3a66db", "#d07a12", "#1f8a4c", "#c2392b", "#7a4fd6", "#0f8b8d", "#b0447c", "#6b7a1f"];
const DASHES = [[], [6, 4], [2, 3], [10, 3, 2, 3]];
// Until the subscription answers, then the history loads anyway: a chart
// without live updates is still a chart.
const SUBSCRIBE_WAIT_MS = 2000;

/** "gw-1" for {device: "gw-1"}; several group fields are joined. */
const groupLabel = (group) => (group && typeof group === "object" ? Object.values(group).map(String).join(" / ") : "");

/** Tick labels in UTC, 24-hour, like the times elsewhere in the admin UI: dates for day steps, seconds below a minute. */
function timeLabels(u, splits, axis, space, incr) {
  return splits.map((s) => {
    const iso = new Date(s * 1000).toISOString();
    if (incr >= 86_400) return iso.slice(5, 10);
    return incr < 60 ? iso.slice(11, 19) : iso.slice(11, 16);
  });
}

/**
 * The values with no neighbour: a line needs two points, so a reading alone
 * between empty buckets (a bucket finer than the sensor's rate) would
 * otherwise not be drawn at all.
 */
function isolated(u, i) {
  const ys = u.data[i];
  const alone = [];
  for (let j = 0; j < ys.length; j++) if (ys[j] != null && ys[j - 1] == null && ys[j + 1] == null) alone.push(j);
  return alone.length ? alone : null;
}

/** A bucket's start in ms: RFC 3339 as the contract says, ms taken too. */
const startOf = (b) => (typeof b.t === "number" ? b.t : Date.parse(b.t));

const fmt = (v) => (v == null || Number.isNaN(v) ? "–" : Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(2).replace(/\.?0+$/, ""));

/**
 * `options`: fields (names to draw), series (labels to keep, or null for
 * all), range ({last: ms} moves live; {from, to} in ms is fixed), bucket,
 * height, compact (a smaller legend, for the dashboard), id (prefix of
 * element ids), onSeries(labels) (each time the set of series seen changes).
 * Returns {element, destroy()}; append the element, then the chart sizes
 * itself to it.
 */
export function seriesChart(collection, options) {
  const { fields, bucket, height = 320, compact = false, id = "chart" } = options;
  const keep = options.series ? new Set(options.series) : null;
  const step = bucketMs(bucket);
  const relative = options.range.last != null;
  const span = relative ? options.range.last : options.range.to - options.range.from;
  const view = { from: relative ? Date.now() - span : options.range.from, to: relative ? Date.now() : options.range.to };

  const state = h("span", { class: "state closed", id: `${id}-live` }, relative ? "connecting" : "fixed range");
  const error = h("p", { class: "error", role: "alert", id: `${id}-error` });
  const empty = h("p", { class: "hint chart-empty", id: `${id}-empty`, hidden: true });
  const plot = h("div", { class: "chart-plot", id: `${id}-plot`, "data-series": "0", "data-buckets": "0", "data-live": "0" });
  const element = h("div", { class: compact ? "chart compact" : "chart" }, h("p", { class: "chart-meta hint" }, `avg per ${bucket}, UTC · `, state), plot, empty, error);

  const times = new Set(); // bucket starts, ms
  const lines = new Map(); // "label\0field" → Map(t → value)
  const labels = new Set(); // every series seen, kept or not
  let uplot = null;
  let shape = ""; // the lines uplot was built with
  let pending = null; // live buckets that arrive while the history loads
  let loads = 0;
  let liveCount = 0;
  let destroyed = false;

  function setState(s) {
    state.className = `state ${s}`;
    state.textContent = s === "open" ? "live" : s;
  }

  /** Adds one bucket's averages; the newest value for a bucket wins (a live close replaces a partial one from history). */
  function put(b) {
    const t = startOf(b);
    if (Number.isNaN(t)) return;
    const label = groupLabel(b.group);
    if (!labels.has(label)) {
      labels.add(label);
      if (options.onSeries) options.onSeries([...labels].sort());
    }
    if (keep && !keep.has(label)) return;
    times.add(t);
    const values = b.values || {};
    aggsFor(fields).forEach((agg, i) => {
      const key = `${label}\0${fields[i]}`;
      if (!lines.has(key)) lines.set(key, new Map());
      const v = values[agg];
      lines.get(key).set(t, typeof v === "number" ? v : null);
    });
  }

  /** A live bucket moves a relative window on: its end becomes the right edge and older buckets fall off the left. */
  function onBucket(b) {
    if (pending) return void pending.push(b);
    put(b);
    liveCount++;
    const t = startOf(b);
    if (relative && t + step > view.to) {
      view.to = t + step;
      view.from = view.to - span;
      for (const old of [...times]) {
        if (old >= view.from) continue;
        times.delete(old);
        for (const m of lines.values()) m.delete(old);
      }
    }
    plot.dataset.lastLive = b.t;
    draw();
  }

  async function load() {
    const ticket = ++loads;
    if (!pending) pending = [];
    if (relative) Object.assign(view, { to: Date.now(), from: Date.now() - span });
    try {
      const buckets = await history(collection, { from: view.from, to: view.to, bucket, fields });
      if (ticket !== loads || destroyed) return;
      times.clear();
      lines.clear();
      buckets.forEach(put);
      error.textContent = "";
    } catch (e) {
      if (ticket !== loads || destroyed) return;
      error.textContent = message(e, { details: true });
    }
    const missed = pending;
    pending = null;
    missed.forEach(onBucket);
    draw();
  }

  function lineKeys() {
    const shown = [...labels].filter((l) => !keep || keep.has(l)).sort();
    return shown.flatMap((label, li) => fields.map((field, fi) => ({ key: `${label}\0${field}`, label, field, li, fi }))).filter((l) => lines.has(l.key));
  }

  function draw() {
    if (destroyed) return;
    const keys = lineKeys();
    const xs = [...times].sort((a, b) => a - b);
    const data = [xs.map((t) => t / 1000), ...keys.map((k) => xs.map((t) => lines.get(k.key).get(t) ?? null))];
    const hasValues = data.slice(1).some((ys) => ys.some((v) => v != null));
    empty.hidden = hasValues || Boolean(error.textContent);
    empty.textContent = keys.length ? "No readings in this range yet." : "No readings in this range.";
    Object.assign(plot.dataset, { series: String(keys.length), buckets: String(xs.length), live: String(liveCount) });
    if (!keys.length) {
      if (uplot) uplot.destroy();
      uplot = null;
      shape = "";
      return;
    }
    const newShape = keys.map((k) => k.key).join("\n");
    if (!uplot || newShape !== shape) build(keys, data);
    else uplot.setData(data);
    shape = newShape;
  }

  function build(keys, data) {
    if (uplot) uplot.destroy();
    uplot = null;
    if (typeof window.uPlot !== "function") {
      error.textContent = "The chart library (vendor/uplot.min.js) did not load.";
      return;
    }
    const uPlot = window.uPlot;
    const scales = { x: { time: true, range: () => [view.from / 1000, view.to / 1000] } };
    for (const f of fields) scales[f] = { auto: true };
    const axes = [{ stroke: "#667085", grid: { stroke: "#e3e6eb" }, ticks: { stroke: "#e3e6eb" }, values: timeLabels }];
    // Two value axes at most, one per side; further fields still have their
    // own scale and show their values in the legend.
    fields.slice(0, 2).forEach((f, i) => {
      axes.push({ scale: f, side: i === 0 ? 3 : 1, label: f, stroke: "#667085", size: 52, grid: i === 0 ? { stroke: "#e3e6eb" } : { show: false }, ticks: { stroke: "#e3e6eb" } });
    });
    const series = [
      {},
      ...keys.map((k) => ({
        label: k.label ? `${k.label} ${k.field}` : k.field,
        scale: k.field,
        stroke: COLORS[k.li % COLORS.length],
        dash: DASHES[k.fi % DASHES.length],
        width: 1.5,
        points: { show: false, filter: isolated, size: 5, fill: COLORS[k.li % COLORS.length] },
        spanGaps: false,
        value: (u, v) => fmt(v),
      })),
    ];
    uplot = new uPlot(
      {
        width: plot.clientWidth || 600,
        height: plotHeight(),
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        scales,
        axes,
        series,
        cursor: { drag: { x: false, y: false } },
        legend: { live: !compact },
      },
      data,
      plot,
    );
  }

  // Phones get a shorter plot so the legend and controls stay in view.
  const plotHeight = () => (window.innerWidth < 600 ? Math.min(height, 220) : height);
  const resized = new ResizeObserver(() => {
    if (uplot && plot.clientWidth) uplot.setSize({ width: plot.clientWidth, height: plotHeight() });
  });
  resized.observe(plot);

  let stream = null;
  let fallback = null;
  if (relative) {
    const aggregate = { bucket, agg: aggsFor(fields), group: collection.series ? [collection.series] : [], grace: graceFor(bucket) };
    pending = [];
    stream = bucketStream(collection.name, aggregate, {
      onBucket,
      onState: setState,
      // Every subscribe, the first and after a reconnect: buckets closed
      // while disconnected are not replayed, so the history is read again.
      onOpen: () => {
        clearTimeout(fallback);
        fallback = null;
        load();
      },
      onError: (e) => {
        error.textContent = `live updates are off: ${message(e, { details: true })}`;
        if (fallback) {
          clearTimeout(fallback);
          fallback = null;
          load();
        }
      },
    });
    fallback = setTimeout(() => {
      fallback = null;
      load();
    }, SUBSCRIBE_WAIT_MS);
  } else {
    load();
  }

  return {
    element,
    destroy() {
      destroyed = true;
      clearTimeout(fallback);
      if (stream) stream.stop();
      resized.disconnect();
      if (uplot) uplot.destroy();
      uplot = null;
    },
  };
}
