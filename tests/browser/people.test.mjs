// The admin UI's users, API keys and settings pages in a real headless
// Chromium against the real server (run by tests/browser.rs). Every change
// made through a form is checked on the server through the API, not only on
// the page. Screenshots go to test-output/screenshots/.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { useDemo, signedInPage, shot, sidewaysOverflow } from "./harness.mjs";
import { Pulsebase } from "../../web/sdk/pulsebase.js";

const ctx = useDemo();
const js = JSON.stringify;

/** Sign-in as `email`: "ok", or the refusal's error code. */
async function signInResult(email, password) {
  try {
    await new Pulsebase(ctx.url).signIn(email, password);
    return "ok";
  } catch (e) {
    return e.code;
  }
}

/** Clicks `selector` with window.confirm answering `answer`; records what it asked in window.asked. */
function clickConfirming(page, selector, answer = true) {
  return page.eval(`(() => { window.asked = null; window.confirm = (m) => { window.asked = m; return ${answer}; };
    document.querySelector(${js(selector)}).click(); return true; })()`);
}

const rowOf = (email) => `[...document.querySelectorAll('#users-rows tr[data-id]')].find((tr) => tr.cells[0].textContent === ${js(email)})`;

test("users: create, duplicate refused, roles/groups/tenant, password reset, disable, delete", async () => {
  const page = await signedInPage(ctx);
  await page.goto(`${ctx.url}/admin/#/users`);
  await page.waitFor("document.querySelector('#user-form') && document.querySelector('#users-rows tr[data-id]')", { what: "the users page" });

  const email = "ada@example.com";
  await page.fill("#user-email", email);
  await page.fill("#user-password", "first-pass-1");
  await page.fill("#user-name", "Ada");
  await page.fill("#user-roles", "viewer");
  await page.submit("#user-form");
  const id = await page.waitFor(`${rowOf(email)}?.dataset.id`, { what: "the new user's row" });
  const created = await ctx.admin.request("GET", `/api/users/${id}`);
  assert.deepEqual([created.name, created.roles, created.groups, created.tenant, created.disabled], ["Ada", ["viewer"], [], null, false]);

  // The same email again (other case): 409, shown next to the email field.
  await page.fill("#user-email", "ADA@example.com");
  await page.fill("#user-password", "another-pass");
  await page.submit("#user-form");
  const taken = await page.waitFor("document.querySelector('#user-email-error').textContent", { what: "the email error" });
  assert.match(taken, /already registered/);
  assert.match(await page.eval("document.querySelector('#user-form-error').textContent"), /conflict/);
  const { items } = await ctx.admin.request("GET", "/api/users", undefined, { query: { filter: `email = '${email}'` } });
  assert.equal(items.length, 1);

  // A validation detail lands under its own field.
  await page.fill("#user-email", "bob@example.com");
  await page.fill("#user-password", "short");
  await page.submit("#user-form");
  assert.match(await page.waitFor("document.querySelector('#user-password-error').textContent", { what: "the password error" }), /at least 8/);
  assert.equal(await page.eval("document.querySelector('#user-email-error').textContent"), "");

  // Edit: roles, groups, tenant.
  await page.eval(`${rowOf(email)}.querySelector('button').click(), true`);
  await page.waitFor(`document.querySelector('#user-edit')?.dataset.id === ${js(id)}`, { what: "the edit panel" });
  await page.fill("#edit-roles", "viewer, collector");
  await page.fill("#edit-groups", "lab, north");
  await page.fill("#edit-tenant", "acme");
  await page.submit("#user-edit-form");
  await page.waitFor("document.querySelector('#user-edit-result')?.textContent === 'Saved.'", { what: "the save" });
  let user = await ctx.admin.request("GET", `/api/users/${id}`);
  assert.deepEqual([user.roles, user.groups, user.tenant], [["viewer", "collector"], ["lab", "north"], "acme"]);
  assert.equal(await page.eval(`${rowOf(email)}.cells[4].textContent`), "acme");
  await page.eval("scrollTo(0, 0), true");
  await page.screenshot(shot("users"));

  // The server's filter: only the acme user is listed.
  await page.fill("#users-filter", "tenant = 'acme'");
  await page.submit("#users-filter-form");
  await page.waitFor(`document.querySelectorAll('#users-rows tr[data-id]').length === 1 && ${rowOf(email)}`, { what: "the filtered list" });
  await page.fill("#users-filter", "tenant = = 'acme'");
  await page.submit("#users-filter-form");
  assert.match(await page.waitFor("document.querySelector('#users-error').textContent", { what: "the filter error" }), /bad_request/);

  // An empty tenant clears it (null, not "").
  await page.fill("#edit-tenant", "");
  await page.submit("#user-edit-form");
  await page.waitFor("document.querySelector('#user-edit-result')?.textContent === 'Saved.'", { what: "the save" });
  user = await ctx.admin.request("GET", `/api/users/${id}`);
  assert.equal(user.tenant, null);

  // Password reset: the new one signs in, the old one no longer does.
  await page.fill("#reset-password", "second-pass-2");
  await page.submit("#user-password-form");
  assert.match(await page.waitFor("document.querySelector('#user-reset-result').textContent", { what: "the password result" }), /Password changed/);
  assert.equal(await signInResult(email, "second-pass-2"), "ok");
  assert.equal(await signInResult(email, "first-pass-1"), "invalid_credentials");

  // Disable: sign-in is refused; the row says so.
  await page.eval("document.querySelector('#edit-disabled').click(), true");
  await page.submit("#user-edit-form");
  await page.waitFor(`${rowOf(email)}?.cells[5].textContent === 'disabled'`, { what: "the disabled row" });
  assert.equal((await ctx.admin.request("GET", `/api/users/${id}`)).disabled, true);
  assert.equal(await signInResult(email, "second-pass-2"), "invalid_credentials");

  // Delete, after a confirm.
  await clickConfirming(page, "#user-delete", false);
  assert.match(await page.eval("window.asked"), /Delete user ada@example.com/);
  assert.equal((await ctx.admin.request("GET", `/api/users/${id}`)).id, id);
  await clickConfirming(page, "#user-delete", true);
  await page.waitFor(`!document.querySelector('#users-rows tr[data-id=${js(id)}]')`, { what: "the row to go" });
  await assert.rejects(ctx.admin.request("GET", `/api/users/${id}`), { status: 404 });
  assert.deepEqual(page.errors, []);
});

test("users: taking away your own admin role asks first, and a no keeps it", async () => {
  // A second admin, so that the server itself would allow the demotion: only the page's question stops it.
  const other = await ctx.admin.request("POST", "/api/users", { email: "second-admin@example.com", password: "second-admin-pw", roles: ["admin"] });
  const page = await signedInPage(ctx);
  await page.goto(`${ctx.url}/admin/#/users`);
  const me = ctx.admin.user;
  await page.waitFor(`${rowOf(me.email)}`, { what: "the admin's row" });
  await page.eval(`${rowOf(me.email)}.querySelector('button').click(), true`);
  await page.waitFor(`document.querySelector('#user-edit')?.dataset.id === ${js(me.id)}`);
  await page.fill("#edit-roles", "viewer");
  await page.eval("window.asked = null; window.confirm = (m) => { window.asked = m; return false; }; true");
  await page.submit("#user-edit-form");
  assert.match(await page.waitFor("window.asked", { what: "a confirm" }), /your own admin role/);
  assert.deepEqual((await ctx.admin.request("GET", `/api/users/${me.id}`)).roles, ["admin"]);
  assert.equal(await page.eval("location.hash"), "#/users");
  await ctx.admin.request("DELETE", `/api/users/${other.id}`);
  assert.deepEqual(page.errors, []);
});

/** A request with `secret` as the bearer: its HTTP status. */
async function statusWithKey(secret) {
  const response = await fetch(`${ctx.url}/api/collections/readings/records?limit=1`, { headers: { Authorization: `Bearer ${secret}` } });
  await response.body?.cancel();
  return response.status;
}

test("API keys: the secret is shown once and works, not again after leaving; revoke refuses it", async () => {
  const page = await signedInPage(ctx);
  await page.goto(`${ctx.url}/admin/#/keys`);
  await page.waitFor("document.querySelector('#key-form') && document.querySelector('#keys-rows tr')", { what: "the keys page" });

  // Expiry in 30 days, typed as local time; the server must get the same instant.
  const local = await page.eval(`(() => { const d = new Date(Date.now() + 30 * 86400e3); d.setSeconds(0, 0);
    const p = (n) => String(n).padStart(2, "0");
    window.expiresAt = d.toISOString();
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + "T" + p(d.getHours()) + ":" + p(d.getMinutes()); })()`);
  await page.fill("#key-name", "gw-test");
  await page.fill("#key-roles", "viewer, device");
  await page.fill("#key-expires", local);
  await page.submit("#key-form");
  const secret = await page.waitFor("document.querySelector('#key-secret')?.textContent", { what: "the secret" });
  assert.match(secret, /^pbk_/);
  const { items } = await ctx.admin.request("GET", "/api/keys");
  const key = items.find((k) => k.name === "gw-test");
  assert.deepEqual(key.roles, ["viewer", "device"]);
  assert.equal(Date.parse(key.expires), Date.parse(await page.eval("window.expiresAt")));
  assert.ok(!JSON.stringify(items).includes(secret), "the list never carries a secret");
  await page.waitFor(`document.querySelector('#keys-rows tr[data-id=${js(key.id)}]')`, { what: "the key's row" });
  assert.equal(await statusWithKey(secret), 200, "the shown secret authenticates");

  // Copy without a usable clipboard: the secret is selected for a manual copy.
  await page.eval("Object.defineProperty(navigator, 'clipboard', { value: { writeText: () => Promise.reject(new Error('denied')) }, configurable: true }), true");
  await page.eval("document.querySelector('#key-copy').click(), true");
  assert.match(await page.waitFor("document.querySelector('#key-copy-result').textContent", { what: "the copy result" }), /copy it now/);
  assert.equal(await page.eval("getSelection().toString()"), secret);
  await page.screenshot(shot("keys"));

  // Away and back: gone from the page.
  await page.goto(`${ctx.url}/admin/#/users`);
  await page.waitFor("document.querySelector('#users-rows tr[data-id]')");
  await page.goto(`${ctx.url}/admin/#/keys`);
  await page.waitFor(`document.querySelector('#keys-rows tr[data-id=${js(key.id)}]')`, { what: "the keys page again" });
  assert.equal(await page.eval("Boolean(document.querySelector('#key-secret'))"), false);
  assert.equal(await page.eval(`document.body.innerHTML.includes(${js(secret)})`), false);

  // Another key: only its secret is on the page.
  await page.fill("#key-name", "gw-other");
  await page.submit("#key-form");
  const other = await page.waitFor(`(s => s && s !== ${js(secret)} && s)(document.querySelector('#key-secret')?.textContent)`, { what: "the second secret" });
  assert.equal(await page.eval(`document.body.innerHTML.includes(${js(secret)})`), false);
  assert.equal(await page.eval("document.querySelectorAll('#key-secret').length"), 1);

  // Revoke, after a confirm: the same request is refused.
  await clickConfirming(page, `#keys-rows tr[data-id="${key.id}"] button`, true);
  assert.match(await page.eval("window.asked"), /Revoke API key gw-test/);
  await page.waitFor(`!document.querySelector('#keys-rows tr[data-id=${js(key.id)}]')`, { what: "the row to go" });
  assert.equal(await statusWithKey(secret), 401);
  assert.equal(await statusWithKey(other), 200, "the other key still works");
  assert.deepEqual(page.errors, []);
});

test("settings: change a runtime setting, a refused value shows by its input and changes nothing, reset", async () => {
  const page = await signedInPage(ctx);
  await page.goto(`${ctx.url}/admin/#/settings`);
  await page.waitFor("document.querySelector('#settings-rows tr[data-setting=max_batch] input')", { what: "the settings page" });
  const before = await ctx.admin.request("GET", "/api/settings");
  assert.deepEqual((await page.eval("[...document.querySelectorAll('#settings-rows tr')].map((tr) => tr.dataset.setting)")).sort(), Object.keys(before).sort());
  // Editable ones have an input, the others none.
  const withInput = await page.eval("[...document.querySelectorAll('#settings-rows tr')].filter((tr) => tr.querySelector('[data-kind]')).map((tr) => tr.dataset.setting)");
  assert.deepEqual(withInput.sort(), Object.keys(before).filter((name) => before[name].editable).sort());
  // Startup-only settings are shown read-only, with why.
  assert.equal(await page.eval("Boolean(document.querySelector('#settings-rows tr[data-setting=http] input'))"), false);
  assert.match(await page.eval("document.querySelector('#settings-rows tr[data-setting=http]').textContent"), /restart/);
  assert.equal(await page.eval("document.querySelector('#setting-allow_signup').type"), "checkbox");
  assert.equal(await page.eval("document.querySelector('#setting-max_batch').type"), "number");

  await page.fill("#setting-max_batch", "500");
  await page.submit("#settings-form");
  assert.match(await page.waitFor("document.querySelector('#settings-result').textContent", { what: "the save" }), /Saved: max_batch\./);
  let now = await ctx.admin.request("GET", "/api/settings");
  assert.deepEqual([now.max_batch.value, now.max_batch.source], [500, "runtime"]);
  assert.equal(now.token_ttl.source, "default", "untouched settings are not sent");

  // One valid change and two refused: the refusals sit by their inputs, and nothing changes.
  await page.eval("document.querySelector('#setting-allow_signup').click(), true");
  await page.fill("#setting-token_ttl", "soon");
  await page.fill("#setting-max_batch", "0");
  await page.submit("#settings-form");
  assert.match(await page.waitFor("document.querySelector('#setting-token_ttl-error').textContent", { what: "the token_ttl error" }), /duration/);
  assert.match(await page.eval("document.querySelector('#setting-max_batch-error').textContent"), /positive/);
  assert.equal(await page.eval("document.querySelector('#setting-allow_signup-error').textContent"), "");
  assert.match(await page.eval("document.querySelector('#settings-error').textContent"), /validation_failed/);
  now = await ctx.admin.request("GET", "/api/settings");
  assert.deepEqual([now.max_batch.value, now.token_ttl.value, now.allow_signup.value], [500, "1h", false]);
  await page.screenshot(shot("settings"));

  // Reset max_batch to its default: a PATCH with null; the unsaved edits elsewhere stay.
  await page.eval("document.querySelector('#settings-rows button[data-reset=max_batch]').click(), true");
  await page.waitFor("document.querySelector('#settings-result').textContent.includes('back to its default')", { what: "the reset" });
  now = await ctx.admin.request("GET", "/api/settings");
  assert.deepEqual([now.max_batch.value, now.max_batch.source], [now.max_batch.default, "default"]);
  assert.equal(await page.eval("document.querySelector('#setting-max_batch').value"), String(now.max_batch.default));
  assert.equal(await page.eval("document.querySelector('#setting-token_ttl').value"), "soon");
  assert.equal(await page.eval("Boolean(document.querySelector('#settings-rows button[data-reset=max_batch]'))"), false);
  assert.deepEqual(page.errors, []);
});

test("settings: the backup button downloads a file that pulsebase restore accepts", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pulsebase-download-"));
  try {
    const page = await signedInPage(ctx);
    await page.send("Page.setDownloadBehavior", { behavior: "allow", downloadPath: dir });
    await page.goto(`${ctx.url}/admin/#/settings`);
    await page.waitFor("document.querySelector('#backup-download')", { what: "the backup button" });
    await page.eval("document.querySelector('#backup-download').click(), true");
    const status = await page.waitFor("document.querySelector('#backup-result').textContent.startsWith('Downloaded') && document.querySelector('#backup-result').textContent", { what: "the download" });
    assert.match(status, /Downloaded [\d.]+ (B|KiB|MiB)/);
    let file;
    for (let i = 0; i < 100 && !file; i++) {
      file = readdirSync(dir).find((name) => name.endsWith(".pbbackup"));
      if (!file) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(file, `a .pbbackup file in ${readdirSync(dir)}`);
    const restored = spawnSync(process.env.PULSEBASE_BIN, ["restore", join(dir, file), "--data", join(dir, "restored")], { encoding: "utf8" });
    assert.equal(restored.status, 0, restored.stderr);
    assert.match(restored.stdout, /restored .* entries/);
    await page.screenshot(shot("settings-backup"));
    assert.deepEqual(page.errors, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("users, API keys and settings fit a phone-sized screen", async () => {
  const page = await signedInPage(ctx, { width: 390, height: 844, mobile: true });
  await page.goto(`${ctx.url}/admin/#/users`);
  await page.waitFor("document.querySelector('#users-rows tr[data-id] button')");
  await page.eval("document.querySelector('#users-rows tr[data-id] button').click(), true");
  await page.waitFor("document.querySelector('#user-edit')");
  assert.ok((await sidewaysOverflow(page)) <= 0, "the users page scrolls sideways");
  await page.eval("scrollTo(0, 0), true");
  await page.screenshot(shot("users-phone"));

  await page.goto(`${ctx.url}/admin/#/keys`);
  await page.waitFor("document.querySelector('#keys-rows tr')");
  await page.fill("#key-name", "phone-key");
  await page.submit("#key-form");
  await page.waitFor("document.querySelector('#key-secret')");
  assert.ok((await sidewaysOverflow(page)) <= 0, "the keys page scrolls sideways");
  await page.eval("scrollTo(0, 0), true");
  await page.screenshot(shot("keys-phone"));

  await page.goto(`${ctx.url}/admin/#/settings`);
  await page.waitFor("document.querySelector('#settings-rows tr')");
  assert.ok((await sidewaysOverflow(page)) <= 0, "the settings page scrolls sideways");
  await page.screenshot(shot("settings-phone"));
  assert.deepEqual(page.errors, []);
});
