// What every admin page shares: the signed-in client, a tiny element
// builder, and how errors and sizes are shown.

import { Pulsebase, PulsebaseError } from "../sdk/pulsebase.js";

// The same client apps use. Tokens live in localStorage and the API takes
// no cookies, so there is no ambient credential for CSRF to ride on. Every
// request it sends says it comes from the admin UI, so the request log can
// leave the UI's own polling out of an admin's view.
export const pb = new Pulsebase("", { storage: localStorage, storageKey: "pulsebase.admin", fetch: markedFetch });

function markedFetch(url, init = {}) {
  const headers = new Headers(init.headers);
  headers.set("X-Pulsebase-Client", "admin-ui");
  return fetch(url, { ...init, headers });
}

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

// ---- forms ------------------------------------------------------------------

/** "a, b,,c " → ["a", "b", "c"]: roles and groups are typed comma-separated. */
export const names = (text) =>
  text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/** A labelled field with its own error line, `#<id>-error`, for the server's per-field details. */
export function field(id, label, input) {
  return h("div", {}, h("label", { for: id }, label), input, h("p", { class: "error field-error", id: `${id}-error`, role: "alert" }));
}

/**
 * Shows a refused form's `details` under the fields they name
 * (`#<prefix>-<field>-error`); anything without a field goes to `general`.
 */
export function showErrors(form, prefix, error, general, fieldFor = {}) {
  for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
  const details = error && error.details && typeof error.details === "object" ? { ...error.details } : {};
  // Some refusals name no field but clearly belong to one (409: the email is taken).
  if (fieldFor[error && error.code]) details[fieldFor[error.code]] = error.message;
  const rest = [];
  for (const [key, text] of Object.entries(details)) {
    const el = form.querySelector(`#${CSS.escape(`${prefix}-${key}-error`)}`);
    if (el) el.textContent = typeof text === "string" ? text : JSON.stringify(text);
    else if (key !== "position") rest.push(`${key}: ${typeof text === "string" ? text : JSON.stringify(text)}`);
  }
  general.textContent = error ? message(error) + (rest.length ? `: ${rest.join("; ")}` : "") : "";
}

/** An RFC 3339 time as "YYYY-MM-DD HH:MM" (UTC); the full value goes in a title. */
export const when = (iso) => (iso ? iso.slice(0, 16).replace("T", " ") : "");
