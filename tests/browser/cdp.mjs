// A minimal Chrome DevTools Protocol driver for the browser tests: starts a
// real headless Chromium, opens pages, evaluates JavaScript in them, takes
// screenshots. No npm packages: Node's own WebSocket speaks to Chromium.

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

/** The Chromium binary: $CHROMIUM, or Debian's / Ubuntu's / Chrome's path. */
export function findChromium() {
  const candidates = [process.env.CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];
  return candidates.find((path) => path && existsSync(path)) || null;
}

export class Browser {
  static async launch(binary) {
    const profile = mkdtempSync(join(tmpdir(), "pulsebase-chromium-"));
    const child = spawn(
      binary,
      [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        `--user-data-dir=${profile}`,
        "--remote-debugging-port=0",
        "about:blank",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    const endpoint = await new Promise((resolve, reject) => {
      let seen = "";
      const timer = setTimeout(() => reject(new Error(`Chromium did not start: ${seen}`)), 30_000);
      child.stderr.on("data", (chunk) => {
        seen += chunk;
        const match = seen.match(/DevTools listening on (ws:\/\/\S+)/);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      child.once("exit", (code) => reject(new Error(`Chromium exited with ${code}: ${seen}`)));
    });
    const browser = new Browser(child, profile);
    await browser._connect(endpoint);
    return browser;
  }

  constructor(child, profile) {
    this.child = child;
    this.profile = profile;
    this.nextId = 1;
    this.pending = new Map();
    this.listeners = new Set();
  }

  _connect(endpoint) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(endpoint);
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new Error("cannot reach Chromium's DevTools endpoint"));
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.id && this.pending.has(message.id)) {
          const { resolve: ok, reject: fail } = this.pending.get(message.id);
          this.pending.delete(message.id);
          if (message.error) fail(new Error(`${message.error.message}`));
          else ok(message.result);
        } else {
          for (const listener of this.listeners) listener(message);
        }
      };
      this.socket = socket;
    });
  }

  send(method, params = {}, sessionId) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify({ id, method, params, sessionId }));
    });
  }

  /** A new tab at `url`, `width`×`height` CSS pixels, in its own browser
   * context (its own storage: no sign-in carries over between pages). */
  async page(url, { width = 1280, height = 800, mobile = false } = {}) {
    const { browserContextId } = await this.send("Target.createBrowserContext");
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank", browserContextId });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    const page = new Page(this, sessionId);
    const errors = page.errors;
    this.listeners.add((message) => {
      if (message.sessionId !== sessionId) return;
      if (message.method === "Runtime.exceptionThrown") errors.push(message.params.exceptionDetails.exception?.description || message.params.exceptionDetails.text);
      if (message.method === "Runtime.consoleAPICalled" && message.params.type === "error") errors.push(message.params.args.map((a) => a.value ?? a.description).join(" "));
    });
    await this.send("Runtime.enable", {}, sessionId);
    await this.send("Page.enable", {}, sessionId);
    await this.send("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile }, sessionId);
    await page.goto(url);
    return page;
  }

  async close() {
    try {
      await this.send("Browser.close");
    } catch {
      // already gone
    }
    await new Promise((resolve) => {
      if (this.child.exitCode !== null) return resolve();
      const timer = setTimeout(() => {
        this.child.kill("SIGKILL");
        resolve();
      }, 5000);
      this.child.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    rmSync(this.profile, { recursive: true, force: true });
  }
}

export class Page {
  constructor(browser, sessionId) {
    this.browser = browser;
    this.sessionId = sessionId;
    /** Uncaught exceptions and console.error lines seen in the page. */
    this.errors = [];
  }

  send(method, params) {
    return this.browser.send(method, params, this.sessionId);
  }

  async goto(url) {
    await this.send("Page.navigate", { url });
    await this.waitFor("document.readyState === 'complete'");
  }

  /** Evaluates an expression (awaiting a promise) and returns its value. */
  async eval(expression) {
    const { result, exceptionDetails } = await this.send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
    if (exceptionDetails) throw new Error(`in page: ${exceptionDetails.exception?.description || exceptionDetails.text}`);
    return result.value;
  }

  /** Polls `expression` until it is truthy; returns its value. */
  async waitFor(expression, { timeout = 10_000, what = expression } = {}) {
    const started = Date.now();
    for (;;) {
      let value;
      try {
        value = await this.eval(expression);
      } catch {
        value = undefined;
      }
      if (value) return value;
      if (Date.now() - started > timeout) throw new Error(`timed out waiting for ${what}; page errors: ${this.errors.join(" | ")}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Sets a form field the way typing would (input event included). */
  async fill(selector, value) {
    await this.eval(`(() => { const el = document.querySelector(${JSON.stringify(selector)});
      el.value = ${JSON.stringify(value)}; el.dispatchEvent(new Event("input", {bubbles: true})); return true; })()`);
  }

  async submit(selector) {
    await this.eval(`document.querySelector(${JSON.stringify(selector)}).requestSubmit() || true`);
  }

  async screenshot(path) {
    const { data } = await this.send("Page.captureScreenshot", { format: "png" });
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, Buffer.from(data, "base64"));
  }
}
