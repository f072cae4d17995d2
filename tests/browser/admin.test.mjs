// The admin UI in a real headless Chromium against the real server (run by
// tests/browser.rs): sign-in, dashboard, live console, topics, phone size.
// Screenshots of each page go to test-output/screenshots/.

import { test } from "node:test";
import assert from "node:assert/strict";

import { rmSync } from "node:fs";

import { useDemo, signedInPage, shot, startServer } from "./harness.mjs";

const ctx = useDemo();

test("first-admin setup: a fresh install opens on it, a wrong code is refused, the printed one works", async () => {
  const fresh = await startServer({ demo: false });
  try {
    assert.match(fresh.setupCode || "", /^[0-9a-f]{20}$/, "the server printed a setup code");
    const page = await ctx.browser.page(`${fresh.url}/admin/`);
    // No one can sign in yet: the setup form comes first, not the sign-in.
    await page.waitFor("location.hash === '#/setup' && document.querySelector('#setup-form')", { what: "the setup form" });
    const icon = await fetch(`${fresh.url}/favicon.ico`);
    assert.equal(icon.status, 200, "a favicon, not a 404");
    assert.equal(icon.headers.get("content-type"), "image/svg+xml");
    // Signed out: no navigation to pages that would only answer 401.
    assert.equal(await page.eval("getComputedStyle(document.querySelector('#nav')).display"), "none");
    await page.fill("#code", "00000000000000000000");
    await page.fill("#email", "first@example.com");
    await page.fill("#password", "first-admin-password");
    await page.submit("#setup-form");
    assert.match(await page.waitFor("document.querySelector('#setup-form .error').textContent"), /forbidden/);
    await page.screenshot(shot("setup"));
    await page.fill("#code", fresh.setupCode);
    await page.submit("#setup-form");
    await page.waitFor("location.hash === '#/dashboard' && document.querySelector('#stat-writes')", { what: "the dashboard" });
    assert.equal(await page.eval("document.querySelector('#who').textContent"), "first@example.com");
    assert.notEqual(await page.eval("getComputedStyle(document.querySelector('#nav')).display"), "none");
    const state = await (await fetch(`${fresh.url}/api/setup`)).json();
    assert.deepEqual(state, { needed: false });
    assert.deepEqual(page.errors, []);
  } finally {
    fresh.child.kill("SIGKILL");
    rmSync(fresh.dir, { recursive: true, force: true });
  }
});

test("a wrong password is refused on the sign-in form", async () => {
  const page = await ctx.browser.page(`${ctx.url}/admin/`);
  await page.waitFor("document.querySelector('#signin-form')");
  await page.fill("#email", ctx.server.email);
  await page.fill("#password", "not-the-password");
  await page.submit("#signin-form");
  const error = await page.waitFor("document.querySelector('#signin-form .error').textContent", { what: "an error message" });
  assert.match(error, /invalid_credentials|wrong|invalid/i);
  assert.equal(await page.eval("location.hash"), "");
  await page.screenshot(shot("signin"));
});

test("the dashboard's charts move with the demo's live writes", async () => {
  const page = await signedInPage(ctx);
  // The demo's four devices write every second: writes/s must become > 0.
  const writes = await page.waitFor("Number(document.querySelector('#stat-writes').textContent.replace(/,/g, '')) > 0 && document.querySelector('#stat-writes').textContent", {
    timeout: 15_000,
    what: "writes/s above zero",
  });
  assert.ok(Number(writes) > 0);
  const first = await page.eval("document.querySelector('#chart-writes').toDataURL()");
  await page.waitFor(`document.querySelector('#chart-writes').toDataURL() !== ${JSON.stringify(first)}`, { timeout: 5000, what: "the writes chart to change" });
  // The page's own WebSocket is one of the live connections, told by transport.
  const transports = await page.waitFor("/WebSocket [1-9]/.test(document.querySelector('#stat-transports').textContent) && document.querySelector('#stat-transports').textContent", { what: "connections by transport" });
  assert.match(transports, /^WebSocket \d+ · SSE \d+ · MQTT \d+$/);
  const records = await page.waitFor("[...document.querySelectorAll('td')].map(td => td.textContent).includes('readings')", { what: "the readings row" });
  assert.ok(records);
  await page.screenshot(shot("dashboard"));
  assert.deepEqual(page.errors, []);
});

test("the live console shows a collection's stream and a published message", async () => {
  await ctx.admin.topics.create({ name: "chat", history: 0 });
  const page = await signedInPage(ctx);
  await page.goto(`${ctx.url}/admin/#/console`);
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
  await page.screenshot(shot("console"));
  assert.deepEqual(page.errors, []);
});

test("topics: a bad rule is shown on the form, then create, publish a test message, delete", async () => {
  const page = await signedInPage(ctx);
  await page.goto(`${ctx.url}/admin/#/topics`);
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
  const listed = await ctx.admin.topics.list();
  assert.equal(listed.find((t) => t.name === "alerts").history, 10);

  await page.eval("document.querySelector('#test-topic').value = 'alerts'");
  await page.submit("#test-publish-form");
  const result = await page.waitFor("document.querySelector('#publish-result').textContent", { what: "the publish result" });
  assert.match(result, /published as seq \d+/);
  await page.screenshot(shot("topics"));

  await page.eval("window.confirm = () => true; document.querySelector('tr[data-topic=alerts] button').click(), true");
  await page.waitFor("!document.querySelector('tr[data-topic=alerts]')", { what: "the row to go" });
  assert.ok(!(await ctx.admin.topics.list()).some((t) => t.name === "alerts"));
  assert.deepEqual(page.errors, []);
});

test("pages fit a phone-sized screen", async () => {
  const page = await signedInPage(ctx, { width: 390, height: 844, mobile: true });
  const overflow = await page.eval("document.documentElement.scrollWidth - window.innerWidth");
  assert.ok(overflow <= 0, `the dashboard scrolls sideways by ${overflow}px`);
  await page.screenshot(shot("dashboard-phone"));
  await page.goto(`${ctx.url}/admin/#/console`);
  await page.waitFor("document.querySelector('#console-form')");
  assert.ok((await page.eval("document.documentElement.scrollWidth - window.innerWidth")) <= 0);
  await page.screenshot(shot("console-phone"));
  await page.goto(`${ctx.url}/admin/#/topics`);
  await page.waitFor("document.querySelector('#topics-rows tr')");
  assert.ok((await page.eval("document.documentElement.scrollWidth - window.innerWidth")) <= 0, "topics page scrolls sideways");
  await page.screenshot(shot("topics-phone"));
});
