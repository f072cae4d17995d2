// Live figures from /api/stats, polled every second, charted over the last
// minute; and, when there is a series collection, its readings live.

import { pb, h, message, formatBytes, rerender } from "../ui.js";
import { PulsebaseError } from "../../sdk/pulsebase.js";
import { seriesCollections, numericFields, autoBucket } from "../series.js";
import { seriesChart } from "../chart.js";

const SERIES_SPAN = 15 * 60_000;

const HISTORY = 60;

function chart(canvas, points, color) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth * ratio;
  const height = canvas.clientHeight * ratio;
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  if (points.length < 2) return;
  const max = Math.max(1, ...points);
  ctx.strokeStyle = color;
  ctx.lineWidth = 2 * ratio;
  ctx.beginPath();
  points.forEach((value, i) => {
    // Right-aligned: the newest point is always at the right edge.
    const x = ((HISTORY - points.length + i) / (HISTORY - 1)) * width;
    const y = height - (value / max) * (height - 4 * ratio) - 2 * ratio;
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

export function dashboard(app) {
  const series = {
    connections: { label: "Live connections", color: "#3a66db", points: [] },
    subscriptions: { label: "Subscriptions", color: "#7a4fd6", points: [] },
    events: { label: "Events/s delivered", color: "#1f8a4c", points: [] },
    writes: { label: "Writes/s", color: "#d07a12", points: [] },
  };
  const cards = Object.entries(series).map(([key, s]) => {
    s.value = h("div", { class: "value", id: `stat-${key}` }, "…");
    s.canvas = h("canvas", { "aria-label": `${s.label} over the last minute`, id: `chart-${key}` });
    return h("section", { class: "panel stat" }, h("h2", {}, s.label), s.value, s.canvas);
  });
  // Which transports the live connections use: devices on MQTT beside
  // browsers on WebSocket and SSE.
  const transports = h("p", { class: "hint", id: "stat-transports" });
  cards[0].querySelector("h2").after(transports);
  const storage = h("div", { class: "value", id: "stat-storage" }, "…");
  const records = h("tbody");
  const error = h("p", { class: "error", role: "alert" });
  app.append(
    h("h1", {}, "Dashboard"),
    h("div", { class: "grid" }, cards, h("section", { class: "panel stat" }, h("h2", {}, "Storage on disk"), storage)),
    h("section", { class: "panel" }, h("h2", {}, "Records per collection"), h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "collection"), h("th", {}, "records"))), records)),
    error,
  );
  const readings = seriesPanel(error);
  let previous = null;
  let stopped = false;
  const tick = async () => {
    try {
      const stats = await pb.request("GET", "/api/stats");
      const now = performance.now();
      const rates = previous
        ? {
            events: ((stats.events_delivered - previous.stats.events_delivered) * 1000) / (now - previous.at),
            writes: ((stats.seq - previous.stats.seq) * 1000) / (now - previous.at),
          }
        : { events: 0, writes: 0 };
      previous = { stats, at: now };
      const values = { connections: stats.connections, subscriptions: stats.subscriptions, ...rates };
      for (const [key, s] of Object.entries(series)) {
        s.points.push(values[key]);
        if (s.points.length > HISTORY) s.points.shift();
        s.value.textContent = Math.round(values[key]).toLocaleString();
        chart(s.canvas, s.points, s.color);
      }
      const by = stats.transports || {};
      transports.textContent = `WebSocket ${(by.websocket ?? 0).toLocaleString()} · SSE ${(by.sse ?? 0).toLocaleString()} · MQTT ${(by.mqtt ?? 0).toLocaleString()}`;
      storage.textContent = formatBytes(stats.storage_bytes);
      records.replaceChildren(
        ...Object.entries(stats.records).map(([name, count]) => h("tr", {}, h("td", {}, name), h("td", {}, count.toLocaleString()))),
      );
      error.textContent = "";
    } catch (e) {
      error.textContent = message(e);
      if (e instanceof PulsebaseError && e.status === 401) rerender();
    }
  };
  tick();
  const timer = setInterval(() => {
    if (!stopped) tick();
  }, 1000);
  return () => {
    stopped = true;
    clearInterval(timer);
    readings.stop();
  };
}

/**
 * The first series collection's first two number fields per series (in the
 * demo: temperature and humidity per gateway), over the last 15 minutes and
 * then live. Placed above the error line; nothing when there is none.
 */
function seriesPanel(error) {
  let chart = null;
  let stopped = false;
  seriesCollections().then((list) => {
    const collection = list.find((c) => numericFields(c).length);
    if (stopped || !collection) return;
    const path = encodeURIComponent(collection.name);
    const fields = numericFields(collection).slice(0, 2);
    chart = seriesChart(collection, { fields, range: { last: SERIES_SPAN }, bucket: autoBucket(SERIES_SPAN), height: 200, compact: true, id: "dashboard-chart" });
    const link = h("a", { href: `#/chart/${path}/${new URLSearchParams({ fields: fields.join(","), range: "15m" }).toString().replace(/%2C/g, ",")}`, id: "dashboard-chart-link" }, "open chart");
    const title = h("h2", {}, `${collection.name}: ${fields.join(" and ")}, last 15 minutes`, link);
    error.before(h("section", { class: "panel", id: "dashboard-series" }, title, chart.element));
  }, (e) => (error.textContent = message(e)));
  return {
    stop() {
      stopped = true;
      if (chart) chart.destroy();
    },
  };
}
