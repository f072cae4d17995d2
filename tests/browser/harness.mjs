// Shared setup for the browser tests: a `serve --demo` server, a headless
// Chromium, and pages signed in as the demo's admin. Each *.test.mjs file
// gets its own server and browser (node --test runs files in isolation).

import { before, after } from "node:test";
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

/** Where a screenshot called `name` goes (test-output/screenshots/NAME.png). */
export function shot(name) {
  return join(SHOTS, `${name}.png`);
}

/**
 * Starts the real binary and waits until it listens. `demo: true` runs
 * `serve --demo` with no admin, so it prints the demo admin's password
 * (returned as `email` and `password`); without the demo and with no admin
 * it prints the first-admin setup code (`setupCode`). `dir` and `port` let a test stop
 * and start the same server again.
 */
export async function startServer({ demo = true, port = 0, dir = mkdtempSync(join(tmpdir(), "pulsebase-ui-")), env = {} } = {}) {
  const args = ["serve", "--http", `127.0.0.1:${port}`, "--data", join(dir, "data")];
  if (demo) args.push("--demo");
  const child = spawn(BIN, args, {
    env: { ...process.env, PULSEBASE_LOG: "warn", PULSEBASE_ADMIN_EMAIL: "", PULSEBASE_ADMIN_PASSWORD: "", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout });
  const found = {};
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start")), 30_000);
    lines.on("line", (line) => {
      const creds = line.match(/^demo admin: (\S+) \/ (\S+)$/);
      if (creds) [, found.email, found.password] = creds;
      const setup = line.match(/one-time setup code \((\w+)\)/);
      if (setup) found.setupCode = setup[1];
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

/**
 * Registers before/after hooks for this test file and returns the context
 * they fill: `ctx.url`, `ctx.server` (with the demo admin's email and
 * password), `ctx.admin` (an SDK client signed in as that admin) and
 * `ctx.browser`.
 */
export function useDemo() {
  const ctx = {};
  before(async () => {
    ctx.server = await startServer();
    ctx.url = ctx.server.url;
    assert.ok(ctx.server.email && ctx.server.password, "the demo printed its admin");
    ctx.admin = new Pulsebase(ctx.url);
    await ctx.admin.signIn(ctx.server.email, ctx.server.password);
    ctx.browser = await Browser.launch(findChromium());
  });
  after(async () => {
    ctx.admin?.realtime.close();
    if (ctx.browser) await ctx.browser.close();
    if (ctx.server) {
      ctx.server.child.kill("SIGKILL");
      rmSync(ctx.server.dir, { recursive: true, force: true });
    }
  });
  return ctx;
}

/** A new page (own browser context, so its own localStorage), signed in through the form. */
export async function signedInPage(ctx, size) {
  const page = await ctx.browser.page(`${ctx.url}/`, size);
  await page.waitFor("document.querySelector('#signin-form')", { what: "the sign-in form" });
  await page.fill("#email", ctx.server.email);
  await page.fill("#password", ctx.server.password);
  await page.submit("#signin-form");
  await page.waitFor("location.hash === '#/dashboard' && document.querySelector('#stat-writes')", { what: "the dashboard" });
  return page;
}

/** How far the page scrolls sideways (0 or less: it fits). */
export function sidewaysOverflow(page) {
  return page.eval("document.documentElement.scrollWidth - window.innerWidth");
}
