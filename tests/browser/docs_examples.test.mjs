// The examples of docs/sdk.md run as written, so the docs cannot rot: the
// page near the top (a browser app on another origin importing the client
// from pulsebase, signing in and subscribing with a filter) in a real
// Chromium, and the records, topics, presence and series examples in Node. Only
// the server's address is changed; the docs' placeholders that are not
// runnable (`…`) are in other blocks, not these.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFileSync } from "node:fs";

import { Browser, findChromium } from "./cdp.mjs";
import { startServer } from "./harness.mjs";
import { Pulsebase } from "../../web/sdk/pulsebase.js";

const ADMIN = { PULSEBASE_ADMIN_EMAIL: "admin@docs.test", PULSEBASE_ADMIN_PASSWORD: "docs-admin-password" };
const DOCS_URL = "http://127.0.0.1:7070";
const SDK_DOC = readFileSync(new URL("../../docs/sdk.md", import.meta.url), "utf8");

/** The fenced blocks of docs/sdk.md in `lang`, in order. */
function blocks(lang) {
  const found = [];
  const fence = new RegExp("^```" + lang + "\\n([\\s\\S]*?)^```", "gm");
  for (const match of SDK_DOC.matchAll(fence)) found.push(match[1]);
  return found;
}

/** The block of `lang` that contains `marker`. */
function example(lang, marker) {
  const block = blocks(lang).find((b) => b.includes(marker));
  assert.ok(block, `docs/sdk.md has a ${lang} example with ${marker}`);
  return block;
}

let server;
let admin;
let browser;
let other;

before(async () => {
  server = await startServer({ demo: false, env: ADMIN });
  admin = new Pulsebase(server.url);
  await admin.signIn(ADMIN.PULSEBASE_ADMIN_EMAIL, ADMIN.PULSEBASE_ADMIN_PASSWORD);
  browser = await Browser.launch(findChromium());
});

after(async () => {
  admin?.realtime.close();
  if (browser) await browser.close();
  other?.close();
  if (server) server.child.kill("SIGKILL");
});

test("the page near the top of docs/sdk.md signs in from another origin and logs matching creates", async () => {
  // What the example assumes exists: its collection and its user.
  await admin.request("POST", "/api/collections", {
    name: "readings",
    fields: { temp: { type: "number", required: true } },
    rules: { list: "@user != null", view: "@user != null" },
  });
  await admin.request("POST", "/api/users", { email: "you@example.com", password: "your-password" });

  const snippet = example("html", "sdk/pulsebase.js").replaceAll(DOCS_URL, server.url);
  // Collects what the example logs, before it runs.
  const capture = `<script>window.logged = []; const log = console.log;
    console.log = (...args) => { window.logged.push(args.map((a) => typeof a === "object" ? JSON.stringify(a) : String(a)).join(" ")); log(...args); };</script>`;
  other = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><title>docs example</title>${capture}${snippet}`);
  });
  await new Promise((resolve) => other.listen(0, "127.0.0.1", resolve));
  const page = await browser.page(`http://localhost:${other.address().port}/`);
  await page.waitFor("localStorage.length > 0", { what: "the example to sign in" });
  // The example does not wait for its subscription; the server says when
  // it has it.
  const deadline = Date.now() + 10_000;
  while ((await admin.request("GET", "/api/stats")).subscriptions < 1) {
    assert.ok(Date.now() < deadline, "the example's subscription reached the server");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const readings = admin.collection("readings");
  const hot = await readings.create({ temp: 31 });
  await readings.create({ temp: 20 });
  const hotter = await readings.create({ temp: 35 });
  await page.waitFor("window.logged.length >= 2", { what: "two logged creates" });
  const logged = await page.eval("window.logged");
  assert.equal(logged.length, 2, `only readings above 30: ${logged}`);
  assert.match(logged[0], new RegExp(`^\\d+ create .*"id":"${hot.id}"`));
  assert.match(logged[1], new RegExp(`^\\d+ create .*"id":"${hotter.id}"`));
  assert.deepEqual(page.errors, []);
});

test("the records, topics and presence examples of docs/sdk.md run in Node", async () => {
  await admin.request("POST", "/api/collections", {
    name: "notes",
    fields: { text: { type: "string" }, done: { type: "boolean", default: false } },
  });
  const run = (code) => new Function("pb", `return (async () => {\n${code}\n})()`)(admin);

  await run(example("js", 'pb.collection("notes")'));
  const left = await admin.collection("notes").list();
  assert.deepEqual(left.items, [], "the example deletes the note it made");
  const topics = await admin.request("GET", "/api/topics");
  assert.deepEqual(topics.map((t) => t.name).filter((n) => ["alerts", "lobby"].includes(n)).sort(), ["alerts", "lobby"]);

  // The presence example creates its own lobby.
  await admin.topics.delete("lobby");
  // It logs the room as announced when asked, then as joins come: the
  // admin's own join, within one 100 ms window.
  const said = [];
  const log = console.log;
  console.log = (...args) => said.push(args.join(" "));
  try {
    await run(example("js", "onPresence"));
    const deadline = Date.now() + 5_000;
    while (!said.includes("1 in the lobby") && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    console.log = log;
  }
  assert.equal(said.at(-1), "1 in the lobby", `${said}`);
  assert.ok(said.every((line) => ["0 in the lobby", "1 in the lobby"].includes(line)), `${said}`);
});

test("the series examples of docs/sdk.md run in Node and print what their comments say", async () => {
  // The first test makes `readings` a records collection; the series
  // section means the one of docs/series.md.
  await admin.request("DELETE", "/api/collections/readings").catch((e) => assert.equal(e.code, "not_found"));
  await admin.request("POST", "/api/collections", {
    name: "readings",
    kind: "series",
    series: "device",
    time: "ts",
    fields: { device: { type: "string", required: true }, temp: { type: "number" }, ts: { type: "datetime" } },
  });
  const run = (code) => new Function("pb", `return (async () => {\n${code}\n})()`)(admin);
  const said = [];
  const log = console.log;
  console.log = (...args) => said.push(args.join(" "));
  try {
    const write = example("js", "readings.aggregate(");
    await run(write);
    // The output the example's comments show, line by line.
    const shown = [...write.matchAll(/^\/\/ (\d{4}-.*)$/gm)].map((m) => m[1]);
    assert.equal(shown.length, 2);
    assert.deepEqual(said, shown);
    // Run again, its idempotency key writes nothing a second time.
    const before = (await admin.collection("readings").list()).items.length;
    said.length = 0;
    await run(write.replace(/^await pb\.writeLines\([\s\S]*?\}\);.*$/m, ""));
    assert.equal((await admin.collection("readings").list()).items.length, before);

    said.length = 0;
    const refused = example("js", "e.details");
    await run(refused);
    const comment = refused.match(/console\.log\(e\.code, e\.message\);\s*\/\/ (.*)$/m)[1];
    assert.deepEqual(said, [comment]);
    // The details its comment gives are the server's.
    const lines = JSON.parse(refused.match(/writeLines\("readings", (\[.*?\]), /)[1]);
    const [, line, column] = refused.match(/e\.details \{line: (\d+), column: (\d+)\}/).map(Number);
    await assert.rejects(admin.writeLines("readings", lines, { precision: "ms" }), (e) => {
      assert.deepEqual(e.details, { line, column });
      return true;
    });
  } finally {
    console.log = log;
  }
  const written = (await admin.collection("readings").list()).items;
  assert.equal(written.length, 4, "nothing of the refused batch");
});
