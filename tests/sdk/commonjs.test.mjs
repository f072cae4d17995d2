// The client consumed as a package by a CommonJS project (package.json
// `"type": "commonjs"`): installed with npm from the directory and from the
// tarball `npm pack` makes (no network: both are local), and downloaded as
// /sdk/pulsebase.mjs. With PULSEBASE_TSC set (tests/sdk.rs does), the
// package's `exports.types` are checked with TypeScript's Node resolution.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";

import { ADMIN, Server, adminClient, notesCollection } from "./harness.mjs";

const run = promisify(execFile);
const SDK = resolve("web/sdk");
const [MAJOR, MINOR] = process.versions.node.split(".").map(Number);
// Node loads ES modules with require() from 20.19 and 22.12 on.
const REQUIRE_ESM = MAJOR >= 23 || (MAJOR === 22 && MINOR >= 12) || (MAJOR === 20 && MINOR >= 19);
const LIMIT = { timeout: 120_000 };

async function npm(args, cwd) {
  // --offline: nothing here may need the registry.
  return run("npm", [...args, "--offline", "--no-audit", "--no-fund", "--loglevel=error"], { cwd });
}

function commonjsProject(t) {
  const dir = mkdtempSync(join(tmpdir(), "pulsebase-cjs-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "app", private: true, type: "commonjs" }));
  return dir;
}

// A CommonJS script: `import()` the client, sign in, get one create live.
const APP = `
const assert = require("node:assert/strict");
(async () => {
  const { Pulsebase, PulsebaseError } = await import(process.argv[2]);
  const pb = new Pulsebase(process.env.PB_URL);
  await pb.signIn(process.env.PB_EMAIL, process.env.PB_PASSWORD);
  const seen = [];
  const sub = pb.collection("notes").subscribe({ ops: ["create"] }, (e) => seen.push(e.record.n));
  await sub.ready;
  await pb.collection("notes").create({ n: 41 });
  for (let i = 0; i < 200 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 25));
  assert.deepEqual(seen, [41]);
  await assert.rejects(pb.collection("nope").list(), (e) => e instanceof PulsebaseError && e.code === "not_found");
  pb.realtime.close();
  let required;
  try {
    required = typeof require(process.argv[2]).Pulsebase;
  } catch (e) {
    required = e.code;
  }
  console.log(JSON.stringify({ ok: true, transport: pb.realtime.transport, required }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
`;

async function runApp(dir, server, specifier) {
  writeFileSync(join(dir, "app.js"), APP);
  const { stdout } = await run(process.execPath, ["app.js", specifier], {
    cwd: dir,
    env: { ...process.env, PB_URL: server.url, PB_EMAIL: ADMIN.email, PB_PASSWORD: ADMIN.password },
    timeout: 60_000,
  });
  return JSON.parse(stdout.trim().split("\n").pop());
}

/** What `require("pulsebase")` gives: the module where Node can require ESM, else its clear error (docs/sdk.md says so). */
function assertRequire(result) {
  assert.equal(result.required, REQUIRE_ESM ? "function" : "ERR_REQUIRE_ESM");
}

async function server(t) {
  const server = await new Server().start();
  t.after(() => server.stop());
  await notesCollection(await adminClient(server));
  return server;
}

test("npm install of web/sdk into a CommonJS project: import() works, require() as documented", LIMIT, async (t) => {
  const s = await server(t);
  const dir = commonjsProject(t);
  await npm(["install", SDK], dir);
  const result = await runApp(dir, s, "pulsebase");
  assert.equal(result.ok, true);
  assertRequire(result);
});

test("npm install of the npm pack tarball into a CommonJS project", LIMIT, async (t) => {
  const s = await server(t);
  const dir = commonjsProject(t);
  const { stdout } = await npm(["pack", SDK, "--pack-destination", dir], dir);
  const tarball = stdout.trim().split("\n").pop();
  const version = JSON.parse(readFileSync(join(SDK, "package.json"), "utf8")).version;
  assert.equal(tarball, `pulsebase-${version}.tgz`);
  await npm(["install", `./${tarball}`], dir);
  // The tarball carries the module and its types, nothing else.
  const installed = JSON.parse(readFileSync(join(dir, "node_modules/pulsebase/package.json"), "utf8"));
  assert.equal(installed.exports["."].types, "./pulsebase.d.ts");
  readFileSync(join(dir, "node_modules/pulsebase/pulsebase.d.ts"));
  const result = await runApp(dir, s, "pulsebase");
  assert.equal(result.ok, true);
  assertRequire(result);

  if (process.env.PULSEBASE_TSC) {
    // TypeScript in a CommonJS project finds the types through `exports`.
    writeFileSync(
      join(dir, "check.ts"),
      `export async function main(url: string): Promise<number> {
  const { Pulsebase } = await import("pulsebase");
  const pb: import("pulsebase").Pulsebase = new Pulsebase(url);
  const page = await pb.collection<{ n: number }>("notes").list({ limit: 1 });
  return page.items[0].n;
}
`,
    );
    const tsc = [process.env.PULSEBASE_TSC, "--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "--lib", "es2022,dom", "check.ts"];
    await run(process.execPath, tsc, { cwd: dir }).catch((e) => assert.fail(`tsc: ${e.stdout}${e.stderr}`));
  }
});

test("downloaded as /sdk/pulsebase.mjs the file loads in a CommonJS project", LIMIT, async (t) => {
  const s = await server(t);
  const dir = commonjsProject(t);
  const response = await fetch(`${s.url}/sdk/pulsebase.mjs`);
  assert.equal(response.status, 200);
  writeFileSync(join(dir, "pulsebase.mjs"), await response.text());
  const result = await runApp(dir, s, "./pulsebase.mjs");
  assert.equal(result.ok, true);
});
