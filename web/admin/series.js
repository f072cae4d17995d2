// Series collections for the charts: which collections and fields can be
// charted, bucket sizes, the aggregate and latest requests, and a live
// stream of closed buckets.

import { pb } from "./ui.js";
import { PulsebaseError, backoffDelay } from "../sdk/pulsebase.js";

const NUMERIC = new Set(["number", "integer"]);

export const isSeries = (collection) => collection && collection.kind === "series";

/** The fields a chart can draw: numbers, never the series or time field. */
export function numericFields(collection) {
  return Object.entries(collection.fields || {})
    .filter(([name, f]) => NUMERIC.has(f && f.type) && name !== collection.series && name !== collection.time)
    .map(([name]) => name);
}

/** The series collections among all definitions. */
export async function seriesCollections() {
  const { items } = await pb.request("GET", "/api/collections");
  return (items || []).filter(isSeries);
}

// ---- buckets ----------------------------------------------------------------

const UNITS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** Sizes a person reads easily; the server takes anything from 1s to 30d. */
export const BUCKETS = ["1s", "2s", "5s", "10s", "15s", "30s", "1m", "2m", "5m", "10m", "15m", "30m", "1h", "2h", "3h", "6h", "12h", "1d", "2d", "7d", "30d"];
const MAX_POINTS = 300;

/** "5m" → 300000 (ms); NaN for anything else. */
export function bucketMs(bucket) {
  const m = /^(\d+)([smhd])$/.exec(String(bucket));
  return m ? Number(m[1]) * UNITS[m[2]] : NaN;
}

/**
 * The smallest listed bucket that keeps a span under MAX_POINTS points:
 * fine enough to show shape, coarse enough to stay cheap to draw
 * (15 min → 5s, 1 h → 15s, 24 h → 5m, 7 d → 1h: 168 to 288 points).
 */
export function autoBucket(spanMs) {
  return BUCKETS.find((b) => spanMs / bucketMs(b) <= MAX_POINTS) || BUCKETS.at(-1);
}

/**
 * How long the server waits after a bucket's end for late readings before
 * closing it. Short buckets get a short wait, or the live edge would lag
 * several buckets behind.
 */
export const graceFor = (bucket) => (bucketMs(bucket) < 10_000 ? "1s" : "2s");

// ---- requests ---------------------------------------------------------------

/** One aggregate expression per field: the chart draws the average of each bucket. */
export const aggsFor = (fields) => fields.map((f) => `avg(${f})`);

/**
 * Buckets in [from, to) grouped by the series field. Empty buckets come back
 * with null values (`fill=null`) so a line breaks where a sensor was silent
 * instead of joining across the gap.
 */
export async function history(collection, { from, to, bucket, fields }) {
  const query = { from: new Date(from), to: new Date(to), bucket, agg: aggsFor(fields), fill: "null" };
  if (collection.series) query.group = collection.series;
  const answer = await pb.collection(collection.name).aggregate(query);
  return (answer && answer.buckets) || [];
}

/** The names of the series that have written at least once (newest reading per series). */
export async function seriesNames(collection) {
  if (!collection.series) return [];
  const answer = await pb.collection(collection.name).latest({ group: collection.series });
  const names = ((answer && answer.items) || []).map((r) => r[collection.series]).filter((v) => v != null);
  return [...new Set(names.map(String))].sort();
}

// ---- live buckets -----------------------------------------------------------

/**
 * Closed buckets of `topic`, live. It has a connection of its own rather
 * than sharing `pb.realtime`: a connection holds one subscription per topic
 * (subscribing again replaces it), so an aggregated subscription there
 * would silently replace, or be replaced by, a plain one to the same
 * collection; and the shared client drops messages whose seq it has seen,
 * which is the wrong test for buckets of several groups closing together.
 *
 * `onOpen` runs after every successful subscribe, the first and each one
 * after a reconnect: buckets that closed while the connection was down are
 * not replayed, so the caller reloads its history there.
 */
export function bucketStream(topic, aggregate, { onBucket, onOpen, onState, onError }) {
  let socket = null;
  let stopped = false;
  let attempt = 0;
  let timer = null;
  let token = null; // the credential the open socket acts with
  const state = (s) => onState && onState(s);
  const refused = (m) => new PulsebaseError(0, m.code || "error", m.message || m.code, m.details);

  function connect() {
    timer = null;
    if (stopped) return;
    state("connecting");
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/realtime`;
    token = pb.token;
    const protocols = token ? ["pulsebase.v1", `bearer.${token}`] : ["pulsebase.v1"];
    const ws = new WebSocket(url, protocols);
    socket = ws;
    ws.onmessage = (event) => {
      let m;
      try {
        m = JSON.parse(event.data);
      } catch {
        return;
      }
      if (m.type === "welcome") {
        ws.send(JSON.stringify({ id: "sub", action: "subscribe", topic, aggregate }));
      } else if (m.type === "ok" && m.id === "sub") {
        attempt = 0;
        state("open");
        if (onOpen) onOpen(m);
      } else if (m.type === "error" && m.id === "sub") {
        // Refused (a bad aggregate, forbidden, no such collection): a
        // reconnect would be refused again.
        stopped = true;
        state("closed");
        onError(refused(m));
        ws.close(1000);
      } else if (m.type === "error" && m.code !== "token_expired") {
        onError(refused(m));
      } else if (m.type === "bucket" && m.topic === topic) {
        onBucket(m);
      } else if (m.type === "unsubscribed" && m.topic === topic) {
        stopped = true;
        state("closed");
        onError(new PulsebaseError(0, m.reason || "unsubscribed", `live updates stopped: ${m.reason || "unsubscribed"}`));
      }
    };
    ws.onclose = async (event) => {
      if (socket !== ws) return;
      socket = null;
      state("closed");
      if (stopped) return;
      // 4001: the token expired or the session changed; a refresh tells
      // which, unless the client has refreshed meanwhile.
      if (event.code === 4001 && pb.token === token) {
        try {
          await pb.refresh();
        } catch (e) {
          stopped = true;
          onError(e);
          return;
        }
      }
      if (!stopped) timer = setTimeout(connect, backoffDelay(attempt++));
    };
  }

  // The client refreshes its token before expiry; hand the new one to the
  // open socket, as the shared connection does, instead of waiting for 4001.
  const offAuth = pb.onAuthChange(() => {
    if (socket && socket.readyState === WebSocket.OPEN && pb.token && pb.token !== token) {
      token = pb.token;
      socket.send(JSON.stringify({ id: "auth", action: "auth", token }));
    }
  });
  connect();
  return {
    stop() {
      stopped = true;
      offAuth();
      clearTimeout(timer);
      if (socket) {
        const ws = socket;
        socket = null;
        ws.close(1000);
      }
    },
  };
}
