// The admin UI in a real headless Chromium against the real server (run by
// tests/browser.rs). Screenshots of each page go to test-output/screenshots/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { Browser, findChromium } from "./cdp.mjs";
import { Pulsebase } from "../../web/sdk/pulsebase.js";

const BIN = process.env.PULSEBASE_BIN;
const SHOTS = join(process.env.TEST_OUTPUT || "test-output", "screenshots");

let server;
let browser;
let url;
let admin;

/** `serve --demo` with no admin: it prints the demo admin's password. */
async function startDemo() {
  const dir = mkdtempSync(join(tmpdir(), "pulsebase-ui-"));
  const child = spawn(BIN, ["serve", "--demo", "--http", "127.0.0.1:0", "--data", join(dir, "data")], {
    env: { ...process.env, PULSEBASE_LOG: "warn", PULSEBASE_ADMIN_EMAIL: "", PULSEBASE_ADMIN_PASSWORD: "" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout });
  const found = {};
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start")), 30_000);
    lines.on("line", (line) => {
      const creds = line.match(/^demo admin: (\S+) \/ (\S+)$/);
      if (creds) [, found.email, found.password] = creds;
      const listening = line.match(/listening on (http:\/\/\S+)/);
      if (listening) {
        found.url = listening[1];
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  return { child, dir, ...found };
}

before(async () => {
  server = await startDemo();
  url = server.url;
  assert.ok(server.email && server.password, "the demo printed its admin");
  admin = new Pulsebase(url);
  await admin.signIn(server.email, server.password);
  browser = await Browser.launch(findChromium());
});

after(async () => {
  if (browser) await browser.close();
  if (server) {
    server.child.kill("SIGKILL");
    rmSync(server.dir, { recursive: true, force: true });
  }
});

async function signedInPage(size) {
  const page = await browser.page(`${url}/`, size);
  await page.waitFor("document.querySelector('#signin-form')", { what: "the sign-in form" });
  await page.fill("#email", server.email);
  await page.fill("#password", server.password);
  await page.submit("#signin-form");
  await page.waitFor("location.hash === '#/dashboard' && document.querySelector('#stat-writes')", { what: "the dashboard" });
  return page;
}

test("a wrong password is refused on the sign-in form", async () => {
  const page = await browser.page(`${url}/admin/`);
  await page.waitFor("document.querySelector('#signin-form')");
  await page.fill("#email", server.email);
  await page.fill("#password", "not-the-password");
  await page.submit("#signin-form");
  const error = await page.waitFor("document.querySelector('#signin-form .error').textContent", { what: "an error message" });
  assert.match(error, /invalid_credentials|wrong|invalid/i);
  assert.equal(await page.eval("location.hash"), "");
  await page.screenshot(join(SHOTS, "signin.png"));
});

test("the dashboard's charts move with the demo's live writes", async () => {
  const page = await signedInPage();
  // The demo's four devices write every second: writes/s must become > 0.
  const writes = await page.waitFor("Number(document.querySelector('#stat-writes').textContent.replace(/,/g, '')) > 0 && document.querySelector('#stat-writes').textContent", {
    timeout: 15_000,
    what: "writes/s above zero",
  });
  assert.ok(Number(writes) > 0);
  const first = await page.eval("document.querySelector('#chart-writes').toDataURL()");
  await page.waitFor(`document.querySelector('#chart-writes').toDataURL() !== ${JSON.stringify(first)}`, { timeout: 5000, what: "the writes chart to change" });
  const records = await page.waitFor("[...document.querySelectorAll('td')].map(td => td.textContent).includes('readings')", { what: "the readings row" });
  assert.ok(records);
  await page.screenshot(join(SHOTS, "dashboard.png"));
  assert.deepEqual(page.errors, []);
});

test("the live console shows a collection's stream and a published message", async () => {
  await admin.topics.create({ name: "chat", history: 0 });
  const page = await signedInPage();
  await page.goto(`${url}/admin/#/console`);
  await page.waitFor("document.querySelector('#console-form')");
  await page.fill("#topic", "readings");
  await page.submit("#console-form");
  await page.waitFor("document.querySelector('#console-stream').textContent.includes('\"op\":\"create\"')", {
    timeout: 10_000,
    what: "a live reading in the stream",
  });
  // Now a custom topic: subscribe, publish from the form, see it arrive.
  await page.fill("#topic", "chat");
  await page.submit("#console-form");
  await page.waitFor("document.querySelector('#console-stream').textContent.includes('\"subscribed\":\"chat\"')", { what: "the chat subscription" });
  await page.fill("#publish-topic", "chat");
  await page.fill("#publish-data", '{"text": "hello from the console"}');
  await page.submit("#publish-form");
  await page.waitFor("document.querySelector('#console-stream').textContent.includes('hello from the console\"}') && document.querySelector('#console-stream').textContent.includes('\"type\":\"message\"')", {
    what: "the published message to arrive",
  });
  assert.equal(await page.eval("document.querySelector('#console-state').textContent"), "open");
  await page.screenshot(join(SHOTS, "console.png"));
  assert.deepEqual(page.errors, []);
});

test("topics: a bad rule is shown on the form, then create, publish a test message, delete", async () => {
  const page = await signedInPage();
  await page.goto(`${url}/admin/#/topics`);
  await page.waitFor("document.querySelector('#create-topic-form') && document.querySelector('#topics-rows tr')", { what: "the topics page" });
  await page.fill("#topic-name", "alerts");
  await page.fill("#topic-history", "10");
  await page.fill("#topic-subscribe", "@user.roles in in");
  await page.submit("#create-topic-form");
  const refused = await page.waitFor("document.querySelector('#create-topic-error').textContent", { what: "the rule error" });
  assert.match(refused, /bad_request|validation_failed/);
  assert.equal(await page.eval("Boolean(document.querySelector('tr[data-topic=alerts]'))"), false);

  await page.fill("#topic-subscribe", "@user != null");
  await page.submit("#create-topic-form");
  await page.waitFor("document.querySelector('tr[data-topic=alerts]')", { what: "the new topic's row" });
  assert.equal(await page.eval("document.querySelector('#create-topic-error').textContent"), "");
  const listed = await admin.topics.list();
  assert.equal(listed.find((t) => t.name === "alerts").history, 10);

  await page.eval("document.querySelector('#test-topic').value = 'alerts'");
  await page.submit("#test-publish-form");
  const result = await page.waitFor("document.querySelector('#publish-result').textContent", { what: "the publish result" });
  assert.match(result, /published as seq \d+/);
  await page.screenshot(join(SHOTS, "topics.png"));

  await page.eval("window.confirm = () => true; document.querySelector('tr[data-topic=alerts] button').click(), true");
  await page.waitFor("!document.querySelector('tr[data-topic=alerts]')", { what: "the row to go" });
  assert.ok(!(await admin.topics.list()).some((t) => t.name === "alerts"));
  assert.deepEqual(page.errors, []);
});

test("pages fit a phone-sized screen", async () => {
  const page = await signedInPage({ width: 390, height: 844, mobile: true });
  const overflow = await page.eval("document.documentElement.scrollWidth - window.innerWidth");
  assert.ok(overflow <= 0, `the dashboard scrolls sideways by ${overflow}px`);
  await page.screenshot(join(SHOTS, "dashboard-phone.png"));
  await page.goto(`${url}/admin/#/console`);
  await page.waitFor("document.querySelector('#console-form')");
  assert.ok((await page.eval("document.documentElement.scrollWidth - window.innerWidth")) <= 0);
  await page.screenshot(join(SHOTS, "console-phone.png"));
  await page.goto(`${url}/admin/#/topics`);
  await page.waitFor("document.querySelector('#topics-rows tr')");
  assert.ok((await page.eval("document.documentElement.scrollWidth - window.innerWidth")) <= 0, "topics page scrolls sideways");
  await page.screenshot(join(SHOTS, "topics-phone.png"));
});
