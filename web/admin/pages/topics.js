// Custom topics: list, create (rule errors on the form), publish a test message, delete.

import { pb, h, message } from "../ui.js";

export function topics(app) {
  const rows = h("tbody", { id: "topics-rows" });
  const error = h("p", { class: "error", role: "alert", id: "topics-error" });
  const createError = h("p", { class: "error", role: "alert", id: "create-topic-error" });
  const published = h("p", { class: "hint", id: "publish-result" });
  const target = h("select", { id: "test-topic", name: "topic", required: true });
  const load = async () => {
    try {
      const all = await pb.topics.list();
      const custom = all.filter((t) => t.kind === "custom");
      rows.replaceChildren(
        ...all.map((t) =>
          h(
            "tr",
            { "data-topic": t.name },
            h("td", {}, t.name),
            h("td", {}, t.kind),
            h("td", {}, t.kind === "custom" ? String(t.history) : ""),
            h("td", {}, t.subscribe || ""),
            h("td", {}, t.publish || ""),
            h("td", {}, t.kind === "custom" ? h("button", { class: "secondary", onclick: () => remove(t.name) }, "Delete") : ""),
          ),
        ),
      );
      target.replaceChildren(...custom.map((t) => h("option", { value: t.name }, t.name)));
      error.textContent = "";
    } catch (e) {
      error.textContent = message(e);
    }
  };
  const remove = async (name) => {
    if (!confirm(`Delete topic ${name}? Its subscribers are unsubscribed and its history is gone.`)) return;
    try {
      await pb.topics.delete(name);
      await load();
    } catch (e) {
      error.textContent = message(e);
    }
  };
  const create = h(
    "form",
    { class: "panel", id: "create-topic-form" },
    h("h2", {}, "Create a topic"),
    h(
      "div",
      { class: "row" },
      h("div", {}, h("label", { for: "topic-name" }, "Name"), h("input", { id: "topic-name", name: "name", required: true, placeholder: "alerts" })),
      h("div", {}, h("label", { for: "topic-history" }, "Messages kept for resume"), h("input", { id: "topic-history", name: "history", type: "number", min: 0, value: 0 })),
      h("div", {}, h("label", { for: "topic-subscribe" }, "Who may subscribe (rule)"), h("input", { id: "topic-subscribe", name: "subscribe", placeholder: "@user != null" })),
      h("div", {}, h("label", { for: "topic-publish" }, "Who may publish (rule)"), h("input", { id: "topic-publish", name: "publish", placeholder: "@user != null" })),
    ),
    h("button", { type: "submit" }, "Create"),
    createError,
  );
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    createError.textContent = "";
    const topic = { name: create.name.value.trim(), history: Number(create.history.value || 0) };
    if (create.subscribe.value.trim()) topic.subscribe = create.subscribe.value.trim();
    if (create.publish.value.trim()) topic.publish = create.publish.value.trim();
    try {
      await pb.topics.create(topic);
      create.reset();
      await load();
    } catch (e) {
      createError.textContent = message(e, { details: true });
    }
  });
  const test = h(
    "form",
    { class: "panel", id: "test-publish-form" },
    h("h2", {}, "Publish a test message"),
    h("div", { class: "row" }, h("div", {}, h("label", { for: "test-topic" }, "Topic"), target), h("div", {}, h("label", { for: "test-data" }, "Data (JSON)"), h("textarea", { id: "test-data", name: "data" }, '{"text": "test"}'))),
    h("button", { type: "submit" }, "Publish"),
    published,
  );
  test.addEventListener("submit", async (event) => {
    event.preventDefault();
    published.textContent = "";
    try {
      const { seq } = await pb.topics.publish(target.value, JSON.parse(test.data.value || "{}"));
      published.textContent = `published as seq ${seq}`;
    } catch (e) {
      published.textContent = message(e);
    }
  });
  app.append(
    h("h1", {}, "Topics"),
    h(
      "section",
      { class: "panel" },
      h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ["name", "kind", "history", "subscribe rule", "publish rule", ""].map((t) => h("th", {}, t)))), rows)),
      error,
    ),
    create,
    test,
  );
  load();
}
