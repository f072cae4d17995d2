// The admin UI: plain modules, no build step, on top of the same client
// apps use (/sdk/pulsebase.js).

import { Pulsebase, PulsebaseError } from "../sdk/pulsebase.js";

const pb = new Pulsebase("", { storage: localStorage, storageKey: "pulsebase.admin" });
const app = document.getElementById("app");
const views = { signin, setup, dashboard, topics, console: liveConsole };
let leaveView = null;

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false && v != null) el.setAttribute(k, v);
  }
  for (const child of children.flat()) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

function message(error) {
  if (error instanceof PulsebaseError) return `${error.message} (${error.code})`;
  return String(error.message || error);
}

function route() {
  if (leaveView) leaveView();
  leaveView = null;
  const name = location.hash.replace(/^#\/?/, "") || "dashboard";
  const signedIn = Boolean(pb.user);
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("signout").hidden = !signedIn;
  document.getElementById("who").textContent = signedIn ? pb.user.email : "";
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.view === name);
  let view = views[name] || dashboard;
  if (!signedIn && view !== setup) view = signin;
  app.replaceChildren();
  leaveView = view() || null;
}

// ---- sign-in and first-admin setup -----------------------------------------

function signin() {
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "panel narrow", id: "signin-form" },
    h("h1", {}, "Sign in"),
    h("label", { for: "email" }, "Email"),
    h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true }),
    h("label", { for: "password" }, "Password"),
    h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true }),
    h("button", { type: "submit" }, "Sign in"),
    error,
    h("p", { class: "hint", id: "setup-hint", hidden: true }, "No admin yet? ", h("a", { href: "#/setup" }, "Create the first one"), " with the setup code the server printed."),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await pb.signIn(form.email.value, form.password.value);
      if (!pb.user.roles.includes("admin")) {
        await pb.signOut();
        throw new Error("this account is not an admin");
      }
      location.hash = "#/dashboard";
      route();
    } catch (e) {
      error.textContent = message(e);
    }
  });
  app.append(form);
  pb.request("GET", "/api/setup")
    .then((state) => {
      form.querySelector("#setup-hint").hidden = !state.needed;
    })
    .catch(() => {});
}

function setup() {
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "panel narrow", id: "setup-form" },
    h("h1", {}, "Create the first admin"),
    h("p", { class: "hint" }, "Use the one-time setup code the server printed when it started."),
    h("label", { for: "code" }, "Setup code"),
    h("input", { id: "code", name: "code", required: true, autocomplete: "off" }),
    h("label", { for: "email" }, "Email"),
    h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true }),
    h("label", { for: "password" }, "Password (8 characters or more)"),
    h("input", { id: "password", name: "password", type: "password", autocomplete: "new-password", minlength: 8, required: true }),
    h("button", { type: "submit" }, "Create admin"),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await pb.setup(form.code.value.trim(), form.email.value, form.password.value);
      location.hash = "#/dashboard";
      route();
    } catch (e) {
      error.textContent = message(e);
    }
  });
  app.append(form);
}

// ---- dashboard ------------------------------------------------------------

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

function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function dashboard() {
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
  const storage = h("div", { class: "value", id: "stat-storage" }, "…");
  const records = h("tbody");
  const error = h("p", { class: "error", role: "alert" });
  app.append(
    h("h1", {}, "Dashboard"),
    h("div", { class: "grid" }, cards, h("section", { class: "panel stat" }, h("h2", {}, "Storage on disk"), storage)),
    h("section", { class: "panel" }, h("h2", {}, "Records per collection"), h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "collection"), h("th", {}, "records"))), records)),
    error,
  );
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
      storage.textContent = formatBytes(stats.storage_bytes);
      records.replaceChildren(
        ...Object.entries(stats.records).map(([name, count]) => h("tr", {}, h("td", {}, name), h("td", {}, count.toLocaleString()))),
      );
      error.textContent = "";
    } catch (e) {
      error.textContent = message(e);
      if (e instanceof PulsebaseError && e.status === 401) route();
    }
  };
  tick();
  const timer = setInterval(() => {
    if (!stopped) tick();
  }, 1000);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

// ---- topics ---------------------------------------------------------------

function topics() {
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
      // Name the field the server objected to, where it has details.
      const details = e.details && typeof e.details === "object" ? Object.entries(e.details).map(([k, v]) => `${k}: ${v}`).join("; ") : "";
      createError.textContent = details ? `${message(e)}: ${details}` : message(e);
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

// ---- live console ---------------------------------------------------------

function liveConsole() {
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
    const options = {};
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

document.getElementById("signout").addEventListener("click", async () => {
  pb.realtime.close();
  await pb.signOut().catch(() => {});
  location.hash = "#/signin";
  route();
});
pb.onAuthChange(() => {
  if (!pb.user) route();
});
window.addEventListener("hashchange", route);
route();
