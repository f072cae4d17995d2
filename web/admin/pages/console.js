// Live console: subscribe to any topic with ops and filter and watch its stream.

import { pb, h, message } from "../ui.js";

export function liveConsole(app) {
  const state = h("span", { class: `state ${pb.realtime.state}`, id: "console-state" }, pb.realtime.state);
  const stream = h("div", { class: "stream", id: "console-stream" });
  const error = h("p", { class: "error", role: "alert" });
  const ops = ["create", "update", "delete"].map((op) => h("label", {}, h("input", { type: "checkbox", name: "op", value: op, checked: true }), op));
  let subscription = null;
  const form = h(
    "form",
    { class: "panel", id: "console-form" },
    h("h2", {}, "Subscribe"),
    h(
      "div",
      { class: "row" },
      h("div", {}, h("label", { for: "topic" }, "Topic (collection, collection/ID or custom topic)"), h("input", { id: "topic", name: "topic", required: true, placeholder: "readings" })),
      h("div", {}, h("label", { for: "filter" }, "Filter (optional)"), h("input", { id: "filter", name: "filter", placeholder: "temp > 30" })),
    ),
    h("div", { class: "checks" }, h("span", { class: "hint" }, "Operations:"), ops),
    h("button", { type: "submit", id: "subscribe" }, "Subscribe"),
    " ",
    h("button", { type: "button", class: "secondary", id: "unsubscribe", onclick: () => stop() }, "Unsubscribe"),
    " ",
    state,
  );
  const publish = h(
    "form",
    { class: "panel", id: "publish-form" },
    h("h2", {}, "Publish a test message"),
    h(
      "div",
      { class: "row" },
      h("div", {}, h("label", { for: "publish-topic" }, "Custom topic"), h("input", { id: "publish-topic", name: "topic", required: true })),
      h("div", {}, h("label", { for: "publish-data" }, "Data (JSON)"), h("textarea", { id: "publish-data", name: "data" }, '{"text": "hello"}')),
    ),
    h("button", { type: "submit" }, "Publish"),
  );
  const stop = () => {
    if (subscription) subscription.unsubscribe();
    subscription = null;
  };
  const show = (item) => {
    const line = h("div", {}, JSON.stringify(item));
    stream.prepend(line);
    while (stream.childElementCount > 200) stream.lastChild.remove();
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    stop();
    const chosen = [...form.querySelectorAll("input[name=op]:checked")].map((i) => i.value);
    // The stream shows the end of the subscription too.
    const options = { onUnsubscribed: show };
    if (chosen.length && chosen.length < 3) options.ops = chosen;
    if (form.filter.value.trim()) options.filter = form.filter.value.trim();
    subscription = pb.realtime.subscribe(form.topic.value.trim(), options, show);
    try {
      const reply = await subscription.ready;
      show({ subscribed: form.topic.value.trim(), seq: reply.seq });
    } catch (e) {
      error.textContent = message(e);
      subscription = null;
    }
  });
  publish.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      const data = JSON.parse(publish.data.value || "{}");
      const { seq } = await pb.topics.publish(publish.topic.value.trim(), data);
      show({ published: publish.topic.value.trim(), seq });
    } catch (e) {
      error.textContent = message(e);
    }
  });
  const offState = pb.realtime.on("state", (s) => {
    state.textContent = s;
    state.className = `state ${s}`;
  });
  app.append(h("h1", {}, "Live console"), form, publish, error, h("section", { class: "panel" }, h("h2", {}, "Stream (newest first)"), stream));
  return () => {
    stop();
    offState();
  };
}
