// A browser app on its own origin, in a real Chromium: a page served by a
// second server (another port, so another origin) imports the JavaScript
// client from pulsebase, signs in, lists, and gets live changes over
// WebSocket and over SSE. And an app served by pulsebase itself from
// `public` with `public_spa`, opened at a deep link.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { Browser, findChromium } from "./cdp.mjs";
import { startServer } from "./harness.mjs";
import { Pulsebase } from "../../web/sdk/pulsebase.js";

const ADMIN = { PULSEBASE_ADMIN_EMAIL: "admin@cors.test", PULSEBASE_ADMIN_PASSWORD: "cors-admin-password" };
const USER = { email: "reader@cors.test", password: "reader-password" };

let server;
let browser;
let other;
let otherUrl;
let dir;

// The app pulsebase serves itself: it imports the client from its own
// origin and shows who it is and where the browser put it.
const SPA = `<!doctype html><html><body><p id="out">loading</p><script type="module">
  const { Pulsebase } = await import("/sdk/pulsebase.js");
  const pb = new Pulsebase();
  const health = await pb.request("GET", "/api/health");
  document.getElementById("out").textContent = health.status + " at " + location.pathname;
</script></body></html>`;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "pulsebase-cors-"));
  mkdirSync(join(dir, "public"));
  writeFileSync(join(dir, "public", "index.html"), SPA);
  server = await startServer({
    demo: false,
    dir,
    env: { ...ADMIN, PULSEBASE_PUBLIC: join(dir, "public"), PULSEBASE_PUBLIC_SPA: "true" },
  });
  // The second origin: a blank page, nothing from pulsebase's origin.
  other = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end("<!doctype html><title>another origin</title><p>app</p>");
  });
  await new Promise((resolve) => other.listen(0, "127.0.0.1", resolve));
  otherUrl = `http://localhost:${other.address().port}`;
  browser = await Browser.launch(findChromium());

  const admin = new Pulsebase(server.url);
  await admin.signIn(ADMIN.PULSEBASE_ADMIN_EMAIL, ADMIN.PULSEBASE_ADMIN_PASSWORD);
  await admin.request("POST", "/api/collections", {
    name: "notes",
    fields: { n: { type: "integer", required: true } },
    rules: { list: "@user != null", view: "@user != null", create: "@user != null" },
  });
  await admin.request("POST", "/api/users", USER);
  await admin.collection("notes").create({ n: 0 });
});

after(async () => {
  if (browser) await browser.close();
  other?.close();
  if (server) server.child.kill("SIGKILL");
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("a page of another origin signs in, lists and subscribes over WebSocket and SSE", async () => {
  const page = await browser.page(`${otherUrl}/`);
  assert.equal(await page.eval("location.origin"), otherUrl);
  const listed = await page.eval(`(async () => {
    const { Pulsebase } = await import(${JSON.stringify(server.url + "/sdk/pulsebase.js")});
    const connect = async (transport) => {
      const pb = new Pulsebase(${JSON.stringify(server.url)}, { transport });
      await pb.signIn(${JSON.stringify(USER.email)}, ${JSON.stringify(USER.password)});
      return pb;
    };
    const ws = await connect("ws");
    const sse = await connect("sse");
    window.seen = { ws: [], sse: [] };
    for (const [name, pb] of [["ws", ws], ["sse", sse]]) {
      const sub = pb.collection("notes").subscribe({ ops: ["create"] }, (e) => window.seen[name].push(e.record.n));
      await sub.ready;
    }
    window.clients = [ws, sse];
    const page = await ws.collection("notes").list();
    return page.items.map((r) => r.n);
  })()`);
  assert.deepEqual(listed, [0]);

  const admin = new Pulsebase(server.url);
  await admin.signIn(ADMIN.PULSEBASE_ADMIN_EMAIL, ADMIN.PULSEBASE_ADMIN_PASSWORD);
  for (let n = 1; n <= 3; n++) await admin.collection("notes").create({ n });
  await page.waitFor("window.seen.ws.length === 3 && window.seen.sse.length === 3", {
    what: "three creates over WebSocket and SSE",
  });
  assert.deepEqual(await page.eval("window.seen"), { ws: [1, 2, 3], sse: [1, 2, 3] });
  assert.deepEqual(
    await page.eval("window.clients.map((c) => c.realtime.transport)"),
    ["ws", "sse"],
  );
  await page.eval("window.clients.forEach((c) => c.realtime.close()), true");
  assert.deepEqual(page.errors, []);
});

test("the app in public is served for a deep link (public_spa)", async () => {
  const page = await browser.page(`${server.url}/projects/42/edit`);
  await page.waitFor(`document.getElementById("out").textContent !== "loading"`, { what: "the app ran" });
  assert.equal(await page.eval(`document.getElementById("out").textContent`), "ok at /projects/42/edit");
  assert.deepEqual(page.errors, []);
});
