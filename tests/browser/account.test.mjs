// The pages that account mail links to, in a real Chromium: a user who
// forgot their password follows the reset link from a real mail (received
// by aiosmtpd, tests/accounts/smtp_sink.py) and chooses a new one; another
// follows a verification link. Neither is an admin, neither is signed in.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

import { Browser, findChromium } from "./cdp.mjs";
import { startServer, shot } from "./harness.mjs";
import { Pulsebase } from "../../web/sdk/pulsebase.js";

const ADMIN = { PULSEBASE_ADMIN_EMAIL: "admin@mail.test", PULSEBASE_ADMIN_PASSWORD: "mail-admin-password" };

let sink;
let mails;
let server;
let browser;

/** The aiosmtpd sink: its port, and each mail it gets as it comes. */
async function startSink() {
  const python = process.env.PULSEBASE_PYTHON || "python3";
  const child = spawn(python, ["tests/accounts/smtp_sink.py"], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const port = Number((await lines.next()).value);
  assert.ok(port > 0, "the SMTP sink printed its port");
  return { child, port, next: async () => JSON.parse((await lines.next()).value) };
}

function tokenIn(mail, route) {
  const match = mail.body.match(new RegExp(`#/${route}/(\\S+)`));
  assert.ok(match, `a ${route} link in ${mail.body}`);
  return match[1];
}

before(async () => {
  sink = await startSink();
  mails = sink;
  server = await startServer({ demo: false, env: { ...ADMIN, PULSEBASE_SMTP_URL: `smtp://127.0.0.1:${sink.port}` } });
  browser = await Browser.launch(findChromium());
  const admin = new Pulsebase(server.url);
  await admin.signIn(ADMIN.PULSEBASE_ADMIN_EMAIL, ADMIN.PULSEBASE_ADMIN_PASSWORD);
  await admin.request("POST", "/api/users", { email: "forgot@mail.test", password: "old-password" });
  await admin.request("POST", "/api/users", { email: "new@mail.test", password: "a-password" });
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.child.kill("SIGKILL");
  sink?.child.kill();
});

test("a reset link from a real mail sets a new password", async () => {
  const anonymous = new Pulsebase(server.url);
  await anonymous.request("POST", "/api/auth/request-reset", { email: "forgot@mail.test" }, { auth: false });
  const mail = await mails.next();
  assert.deepEqual(mail.to, ["forgot@mail.test"]);
  const link = mail.body.match(/(http\S+#\/reset-password\/\S+)/)[1];
  assert.ok(link.startsWith(server.url), `the link leads to app_url (the server by default): ${link}`);

  const page = await browser.page(link);
  await page.waitFor(`document.querySelector("#reset-form")`, { what: "the reset form, without signing in" });
  await page.fill("#password", "brand-new-password");
  await page.submit("#reset-form");
  await page.waitFor(`!document.querySelector("#reset-done").hidden`, { what: "the new password accepted" });
  await page.screenshot(shot("account-reset"));
  assert.deepEqual(page.errors, []);

  const user = new Pulsebase(server.url);
  await user.signIn("forgot@mail.test", "brand-new-password");
  assert.equal(user.user.verified, true);
  await assert.rejects(new Pulsebase(server.url).signIn("forgot@mail.test", "old-password"));

  // The same link again: spent.
  const again = await browser.page(link);
  await again.fill("#password", "another-password");
  await again.submit("#reset-form");
  await again.waitFor(`document.querySelector("#reset-form .error").textContent.includes("token")`, { what: "a spent link refused" });
});

test("a verification link confirms the address", async () => {
  const user = new Pulsebase(server.url);
  await user.signIn("new@mail.test", "a-password");
  assert.equal(user.user.verified, false);
  await user.request("POST", "/api/auth/request-verification");
  const token = tokenIn(await mails.next(), "verify");

  const page = await browser.page(`${server.url}/admin/#/verify/${token}`);
  await page.waitFor(`document.querySelector("#verify-status").textContent.includes("is confirmed")`, { what: "the address confirmed" });
  assert.deepEqual(page.errors, []);
  const me = await user.request("GET", "/api/auth/me");
  assert.equal(me.verified, true);
});
