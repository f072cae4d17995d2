// API keys: list, create (the secret is shown once, here), revoke.

import { pb, h, message, field, showErrors, names, when } from "../ui.js";

export function keys(app) {
  const rows = h("tbody", { id: "keys-rows" });
  const listError = h("p", { class: "error", role: "alert", id: "keys-error" });
  // The new key's secret lives only in this box: it is dropped when the page
  // is left, dismissed, or another key is created. The server cannot show it again.
  const secretBox = h("div", { id: "key-secret-box" });

  const row = (key) => {
    const expired = key.expires && Date.parse(key.expires) <= Date.now();
    return h(
      "tr",
      { "data-id": key.id },
      h("td", {}, key.name),
      h("td", {}, key.roles.join(", ")),
      h("td", { title: key.created, class: "nowrap" }, when(key.created)),
      h("td", { title: key.expires || "", class: expired ? "nowrap expired" : "nowrap" }, key.expires ? `${when(key.expires)}${expired ? " (expired)" : ""}` : "never"),
      h("td", { class: "row-actions" }, h("button", { type: "button", class: "secondary", onclick: () => revoke(key) }, "Revoke")),
    );
  };
  const load = async () => {
    try {
      const { items } = await pb.request("GET", "/api/keys");
      rows.replaceChildren(...items.map(row));
      if (!items.length) rows.append(h("tr", {}, h("td", { colspan: 5, class: "hint" }, "No API keys yet.")));
      listError.textContent = "";
    } catch (e) {
      listError.textContent = message(e);
    }
  };
  const revoke = async (key) => {
    if (!confirm(`Revoke API key ${key.name}? Devices and backends using it are refused from their next request.`)) return;
    try {
      await pb.request("DELETE", `/api/keys/${encodeURIComponent(key.id)}`);
      await load();
    } catch (e) {
      listError.textContent = message(e);
    }
  };

  const showSecret = (key) => {
    const secret = h("code", { id: "key-secret" }, key.secret);
    const copied = h("p", { class: "hint", id: "key-copy-result", role: "status" });
    const copy = async () => {
      try {
        await navigator.clipboard.writeText(key.secret);
        copied.textContent = "Copied to the clipboard.";
      } catch {
        // No clipboard (insecure context, headless, denied): select the text for a manual copy.
        const range = document.createRange();
        range.selectNodeContents(secret);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        copied.textContent = "The clipboard is not available here: the secret is selected, copy it now.";
      }
    };
    secretBox.replaceChildren(
      h(
        "section",
        { class: "panel secret-box", role: "alert" },
        h("h2", {}, `Secret of the new key “${key.name}”: copy it now`),
        h("p", {}, "It is shown only this once. The server keeps only a hash of it: if it is lost, revoke the key and create another."),
        secret,
        h("button", { type: "button", id: "key-copy", onclick: copy }, "Copy"),
        " ",
        h("button", { type: "button", class: "secondary", id: "key-secret-done", onclick: () => secretBox.replaceChildren() }, "Done, hide it"),
        copied,
        h("p", { class: "hint" }, "Send it as Authorization: Bearer <secret> or X-Api-Key: <secret>."),
      ),
    );
    secretBox.scrollIntoView({ block: "nearest" });
  };

  const formError = h("p", { class: "error", role: "alert", id: "key-form-error" });
  const form = h(
    "form",
    { class: "panel", id: "key-form" },
    h("h2", {}, "Create an API key"),
    h(
      "div",
      { class: "row" },
      field("key-name", "Name", h("input", { id: "key-name", name: "name", required: true, placeholder: "gateway north-1" })),
      field("key-roles", "Roles", h("input", { id: "key-roles", name: "roles", placeholder: "comma-separated: device" })),
      field("key-expires", "Expires (local time)", h("input", { id: "key-expires", name: "expires", type: "datetime-local" })),
    ),
    h("p", { class: "hint" }, "Leave the expiry empty for a key that never expires."),
    h("button", { type: "submit" }, "Create"),
    formError,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    // A new attempt hides the last secret, so two are never on screen.
    secretBox.replaceChildren();
    const key = { name: form.name.value.trim(), roles: names(form.roles.value) };
    // datetime-local has no zone: read it as local time, send it as RFC 3339 UTC.
    if (form.expires.value) key.expires = new Date(form.expires.value).toISOString();
    try {
      const created = await pb.request("POST", "/api/keys", key);
      form.reset();
      showErrors(form, "key", null, formError);
      showSecret(created);
      await load();
    } catch (e) {
      showErrors(form, "key", e, formError);
    }
  });

  app.append(
    h("h1", {}, "API keys"),
    h("p", { class: "hint" }, "For devices and backends that cannot hold a password. A key acts with its roles and owns the records it creates."),
    secretBox,
    h(
      "section",
      { class: "panel" },
      h("div", { class: "scroll" }, h("table", { id: "keys-table" }, h("thead", {}, h("tr", {}, ["name", "roles", "created (UTC)", "expires (UTC)", ""].map((t) => h("th", {}, t)))), rows)),
      listError,
    ),
    form,
  );
  load();
  // Leaving the page drops the secret from the DOM at once.
  return () => secretBox.replaceChildren();
}
