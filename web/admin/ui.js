// What every admin page shares: the signed-in client, a tiny element
// builder, and how errors and sizes are shown.

import { Pulsebase, PulsebaseError } from "../sdk/pulsebase.js";

// The same client apps use. Tokens live in localStorage and the API takes
// no cookies, so there is no ambient credential for CSRF to ride on.
export const pb = new Pulsebase("", { storage: localStorage, storageKey: "pulsebase.admin" });

/** `h("tr", {class: "x", onclick: f}, child, [more])`: attributes, listeners, children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false && v != null) el.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/**
 * An error as one line. With `{details: true}` the server's per-field
 * details follow, so a refused form says which part was wrong.
 */
export function message(error, { details = false } = {}) {
  if (!(error instanceof PulsebaseError)) return String(error.message || error);
  const head = `${error.message} (${error.code})`;
  if (!details || !error.details || typeof error.details !== "object") return head;
  const parts = Object.entries(error.details).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`);
  return parts.length ? `${head}: ${parts.join("; ")}` : head;
}

export function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** Render the current route again (after sign-in, or when auth was lost). */
export function rerender() {
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}

/** Go to `hash`, rendering even when it is already the current one. */
export function go(hash) {
  if (location.hash === hash) rerender();
  else location.hash = hash;
}
