// What the JavaScript client's tests share: a real server that can be
// killed with SIGKILL and started again on the same port and data dir.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { Pulsebase } from "../../web/sdk/pulsebase.js";

const BIN = process.env.PULSEBASE_BIN;
export const ADMIN = { email: "admin@example.com", password: "admin-password" };

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A real server on a fixed port and data dir, so it can be killed and restarted. */
export class Server {
  constructor(args = []) {
    this.dir = mkdtempSync(join(tmpdir(), "pulsebase-sdk-"));
    this.args = args;
    this.child = null;
  }

  async start() {
    if (!this.port) this.port = await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    this.child = spawn(BIN, ["serve", "--http", `127.0.0.1:${this.port}`, "--data", join(this.dir, "data"), ...this.args], {
      env: { ...process.env, PULSEBASE_ADMIN_EMAIL: ADMIN.email, PULSEBASE_ADMIN_PASSWORD: ADMIN.password, PULSEBASE_LOG: "warn" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const lines = createInterface({ input: this.child.stdout });
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("server did not start")), 30_000);
      lines.on("line", (line) => {
        if (line.includes("listening on http://")) {
          clearTimeout(timer);
          resolve();
        }
      });
      this.child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
    });
    return this;
  }

  /** kill -9: no goodbye to clients, no flush beyond what was acknowledged. */
  async kill() {
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGKILL");
    await exited;
  }

  async stop() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function waitFor(predicate, what, ms = 15_000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      if (predicate()) return resolve();
      if (Date.now() - started > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

export async function adminClient(server, options = {}) {
  const pb = new Pulsebase(server.url, { backoff: { initial: 100, max: 1000 }, ...options });
  await pb.signIn(ADMIN.email, ADMIN.password);
  return pb;
}

export async function notesCollection(pb) {
  await pb.request("POST", "/api/collections", {
    name: "notes",
    fields: { n: { type: "integer" } },
    rules: { list: "@user != null", view: "@user != null", create: "@user != null" },
  });
}
