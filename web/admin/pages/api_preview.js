// API preview (`#/api/<collection>`): the calls an app makes for one
// collection, as curl commands and as calls of the JavaScript client, with
// the collection's own fields in the example bodies and its rules beside
// each call. Series collections get their ingest, time queries, `latest`,
// `aggregate` and InfluxDB line protocol instead of updates and deletes.
// The whole API, generated from the server's code, is /api/openapi.json.

import { pb, h, message } from "../ui.js";

export function apiPreview(app, name) {
  const body = h("div", { id: "api-preview" });
  const error = h("p", { class: "error", role: "alert", id: "api-preview-error" });
  const path = encodeURIComponent(name || "");
  app.append(
    h("h1", {}, `API preview: ${name || ""}`),
    h(
      "p",
      { class: "hint" },
      h("a", { href: `#/records/${path}` }, "Records"),
      " · ",
      h("a", { href: `#/collections/${path}` }, "Edit"),
      " · every endpoint: ",
      h("a", { href: "/api/openapi.json", target: "_blank", rel: "noopener", id: "openapi-link" }, "/api/openapi.json"),
    ),
    error,
    body,
  );
  if (!name) {
    error.textContent = "Pick a collection on the Collections page.";
    return;
  }
  pb.request("GET", `/api/collections/${path}`)
    .then((collection) => body.replaceChildren(...preview(collection, location.origin)))
    .catch((e) => (error.textContent = message(e)));
}

/** Every section of the preview for `c`, against the server at `origin`. */
export function preview(c, origin) {
  const ctx = context(c, origin);
  const sections = c.kind === "series" ? seriesCalls(ctx) : recordCalls(ctx);
  return [fieldsPanel(c), ...sections.map(section), realtime(ctx)];
}

function context(c, origin) {
  const fields = Object.entries(c.fields || {});
  const sample = {};
  for (const [field, def] of fields) sample[field] = exampleValue(c, field, def);
  const js = JSON.stringify(c.name);
  return { c, origin, fields, sample, js, url: `${origin}/api/collections/${encodeURIComponent(c.name)}` };
}

/** A plausible value for a field, from its definition. */
function exampleValue(c, field, def) {
  if (def.default !== undefined && def.default !== null) return def.default;
  if (Array.isArray(def.enum) && def.enum.length) return def.enum[0];
  if (field === c.series) return "gw-1";
  switch (def.type) {
    case "number":
      return def.min != null && def.max != null ? (def.min + def.max) / 2 : (def.min ?? def.max ?? 21.5);
    case "integer":
      return def.min != null && def.max != null ? Math.round((def.min + def.max) / 2) : (def.min ?? def.max ?? 1);
    case "boolean":
      return true;
    case "datetime":
      return new Date().toISOString().replace(/\.\d+Z$/, ".000Z");
    case "json":
      return {};
    case "array":
      return [];
    default:
      return field === "email" ? "ann@example.com" : "text";
  }
}

/** A filter on the first field that has a simple type, e.g. `temp > 20`. */
function exampleFilter(ctx) {
  const picked = ctx.fields.find(([, d]) => ["number", "integer", "string", "boolean"].includes(d.type));
  if (!picked) return "created > '2026-01-01T00:00:00.000Z'";
  const [field, def] = picked;
  if (def.type === "string") return `${field} = '${String(ctx.sample[field]).replace(/'/g, "\\'")}'`;
  if (def.type === "boolean") return `${field} = ${ctx.sample[field]}`;
  return `${field} >= ${ctx.sample[field]}`;
}

const rule = (c, op) => {
  const text = (c.rules || {})[op];
  return text ? `${op} rule: ${text}` : `${op}: admins only (no ${op} rule)`;
};

/** Single quotes for the shell: 'it'"'"'s'. */
const sh = (text) => `'${String(text).replace(/'/g, `'"'"'`)}'`;
const auth = `-H "Authorization: Bearer $TOKEN"`;
const json = (value) => JSON.stringify(value, null, 2);

function query(params) {
  return new URLSearchParams(Object.entries(params).filter(([, v]) => v != null)).toString();
}

function recordCalls(ctx) {
  const { c, url, sample, js } = ctx;
  const filter = exampleFilter(ctx);
  const list = { filter, sort: "-created", limit: 50 };
  const one = `${url}/records/RECORD_ID`;
  return [
    {
      id: "list",
      title: "List records",
      call: `GET /api/collections/${c.name}/records`,
      note: `${rule(c, "list")}; ${rule(c, "view")}. Parameters: filter, sort (comma separated, - for descending), limit (at most 1000), cursor (the last page's next_cursor), fields. Answers {items, next_cursor}.`,
      curl: `curl -G ${auth} ${sh(`${url}/records`)} \\\n  --data-urlencode ${sh(`filter=${filter}`)} \\\n  --data-urlencode 'sort=-created' --data-urlencode 'limit=50'\n# the next page: add --data-urlencode "cursor=$NEXT_CURSOR"`,
      sdk: `const page = await pb.collection(${js}).list(${json(list)});\n// the next page:\nawait pb.collection(${js}).list({ ...${JSON.stringify(list)}, cursor: page.next_cursor });`,
    },
    {
      id: "get",
      title: "Get one record",
      call: `GET /api/collections/${c.name}/records/{id}`,
      note: `${rule(c, "view")}. 404 when the record does not exist or the rule hides it.`,
      curl: `curl ${auth} ${sh(one)}`,
      sdk: `const record = await pb.collection(${js}).get("RECORD_ID");`,
    },
    {
      id: "create",
      title: "Create a record",
      call: `POST /api/collections/${c.name}/records`,
      note: `${rule(c, "create")}. A JSON array (or NDJSON) creates a batch, all or nothing. An "id" of your own is optional.`,
      curl: `curl -X POST ${auth} -H 'Content-Type: application/json' ${sh(`${url}/records`)} \\\n  -d ${sh(json(sample))}`,
      sdk: `const record = await pb.collection(${js}).create(${json(sample)});`,
    },
    {
      id: "update",
      title: "Update a record",
      call: `PATCH /api/collections/${c.name}/records/{id}`,
      note: `${rule(c, "view")}, then ${rule(c, "update")}. A JSON merge patch: only the fields sent change, null removes one. If-Match: <rev> makes it conditional (412 when the record moved on). PUT replaces every field.`,
      curl: `curl -X PATCH ${auth} -H 'Content-Type: application/json' -H 'If-Match: 1' ${sh(one)} \\\n  -d ${sh(json(sample))}`,
      sdk: `await pb.collection(${js}).update("RECORD_ID", ${json(sample)}, { ifMatch: 1 });`,
    },
    {
      id: "delete",
      title: "Delete a record",
      call: `DELETE /api/collections/${c.name}/records/{id}`,
      note: `${rule(c, "view")}, then ${rule(c, "delete")}. Answers 204.`,
      curl: `curl -X DELETE ${auth} ${sh(one)}`,
      sdk: `await pb.collection(${js}).delete("RECORD_ID");`,
    },
  ];
}

function seriesCalls(ctx) {
  const { c, url, sample, js, fields } = ctx;
  const numbers = fields.filter(([, d]) => d.type === "number" || d.type === "integer").map(([f]) => f);
  const strings = fields.filter(([f, d]) => d.type === "string" && f !== c.series).map(([f]) => f);
  const source = c.series || "device";
  const aggs = [...numbers.slice(0, 2).map((f) => `avg(${f})`), "count()"];
  const to = new Date();
  const from = new Date(to.getTime() - 3600_000);
  const range = { from: from.toISOString(), to: to.toISOString() };
  const aggregate = { ...range, bucket: "1m", agg: aggs.join(","), group: source, fill: "null" };
  const reading = { ...sample };
  if (c.time) reading[c.time] = to.getTime();
  const second = { ...reading, [source]: "gw-2" };
  const tags = [`${source}=gw-1`, ...strings.map((f) => `${f}=${String(sample[f]).replace(/[ ,=]/g, "_")}`)].join(",");
  const values = numbers.length ? numbers.map((f) => `${f}=${sample[f]}`).join(",") : "value=1";
  const line = `${c.name},${tags} ${values} ${to.getTime()}`;
  const write = `${ctx.origin}/api/v2/write?${query({ bucket: c.name, precision: "ms" })}`;
  return [
    {
      id: "create",
      title: "Write readings",
      call: `POST /api/collections/${c.name}/records`,
      note: `${rule(c, "create")}. One object, a JSON array or NDJSON, all or nothing; answers {count, first_seq, last_seq} (?return=items for the readings). Idempotency-Key makes a retry safe.${c.time ? ` "${c.time}" takes RFC 3339 or milliseconds; without it, the receive time.` : ""}`,
      curl: `curl -X POST ${auth} -H 'Content-Type: application/json' \\\n  -H 'Idempotency-Key: gw-1-batch-1' ${sh(`${url}/records`)} \\\n  -d ${sh(json([reading, second]))}`,
      sdk: `const { count, first_seq, last_seq } = await pb.collection(${js}).create(${json([reading, second])}, { idempotencyKey: "gw-1-batch-1" });`,
    },
    {
      id: "line-protocol",
      title: "Write InfluxDB line protocol",
      call: "POST /api/v2/write",
      note: `${rule(c, "create")}. What Telegraf and InfluxDB clients send (gzip too); tags and fields become fields of the same names${c.time ? `, the timestamp "${c.time}"` : ""}. Answers 204.`,
      curl: `curl -X POST -H "Authorization: Token $TOKEN" ${sh(write)} \\\n  --data-binary ${sh(line)}`,
      sdk: `await pb.writeLines(${js}, [${JSON.stringify(line)}], { precision: "ms" });`,
    },
    {
      id: "list",
      title: "List readings",
      call: `GET /api/collections/${c.name}/records`,
      note: `${rule(c, "list")}. In time order (sort=-time for newest first); from and to take RFC 3339 or milliseconds; also filter, limit, cursor, fields.`,
      curl: `curl -G ${auth} ${sh(`${url}/records`)} \\\n  --data-urlencode ${sh(`from=${range.from}`)} --data-urlencode ${sh(`to=${range.to}`)} \\\n  --data-urlencode ${sh(`filter=${source} = 'gw-1'`)} --data-urlencode 'limit=100'`,
      sdk: `const page = await pb.collection(${js}).list(${json({ ...range, filter: `${source} = 'gw-1'`, limit: 100 })});`,
    },
    {
      id: "get",
      title: "Get one reading",
      call: `GET /api/collections/${c.name}/records/{id}`,
      note: `${rule(c, "view")}. Readings cannot be updated or deleted one by one (405).`,
      curl: `curl ${auth} ${sh(`${url}/records/READING_ID`)}`,
      sdk: `const reading = await pb.collection(${js}).get("READING_ID");`,
    },
    {
      id: "latest",
      title: "Latest reading of each source",
      call: `GET /api/collections/${c.name}/latest`,
      note: `${rule(c, "list")}. The newest reading of each "${source}" the caller may list: {items}.`,
      curl: `curl ${auth} ${sh(`${url}/latest`)}`,
      sdk: `const { items } = await pb.collection(${js}).latest();`,
    },
    {
      id: "aggregate",
      title: "Aggregate in time buckets",
      call: `GET /api/collections/${c.name}/aggregate`,
      note: `${rule(c, "list")}. Functions count(), count(f), sum, avg, min, max, first, last; bucket 1s to 30d; fill none, null, prev or a number. Answers {buckets: [{t, group, values}]}.`,
      curl: `curl -G ${auth} ${sh(`${url}/aggregate`)} \\\n${Object.entries(aggregate)
        .map(([k, v]) => `  --data-urlencode ${sh(`${k}=${v}`)}`)
        .join(" \\\n")}`,
      sdk: `const { buckets } = await pb.collection(${js}).aggregate(${json({ ...aggregate, agg: aggs })});`,
    },
    {
      id: "delete-before",
      title: "Drop old readings",
      call: `DELETE /api/collections/${c.name}/records?before=TIME`,
      note: "Admins only. Every reading before the time goes; subscribers get one expired message.",
      curl: `curl -X DELETE ${auth} ${sh(`${url}/records?${query({ before: range.from })}`)}`,
      sdk: `await pb.request("DELETE", ${JSON.stringify(`/api/collections/${c.name}/records`)}, undefined, { query: { before: ${JSON.stringify(range.from)} } });`,
    },
  ];
}

function realtime(ctx) {
  const { c, origin, js } = ctx;
  const ws = origin.replace(/^http/, "ws") + "/api/realtime";
  const series = c.kind === "series";
  const numbers = ctx.fields.filter(([, d]) => d.type === "number" || d.type === "integer").map(([f]) => f);
  const filter = exampleFilter(ctx);
  const subscribe = series
    ? { action: "subscribe", topic: c.name, id: 1, aggregate: { bucket: "1m", agg: [numbers[0] ? `avg(${numbers[0]})` : "count()"], group: [c.series || "device"] } }
    : { action: "subscribe", topic: c.name, id: 1, ops: c.events || ["create", "update", "delete"], filter };
  const sse = `${origin}/api/realtime/sse?${query(series ? { topic: c.name } : { topic: c.name, ops: subscribe.ops.join(","), filter })}`;
  // The first field, as a newcomer reads it: only a delete may lack it.
  const first = ctx.fields.length ? ctx.fields[0][0] : null;
  const field = first === null ? "" : /^[A-Za-z_$][\w$]*$/.test(first) ? `.${first}` : `[${JSON.stringify(first)}]`;
  return section({
    id: "realtime",
    title: "Subscribe to changes",
    call: `WebSocket ${ws}, or SSE GET /api/realtime/sse`,
    note: `Events pass the ${c.rules && c.rules.view ? `view rule (${c.rules.view})` : "view rule (admins only without one)"} for each subscriber. ${series ? "Without aggregate, one create event per reading; with it, one bucket message per closed bucket and group." : `Events: ${(c.events || []).join(", ") || "none"}; a record topic ${c.name}/RECORD_ID follows one record.`} Send since (or Last-Event-ID over SSE) to resume.`,
    curl: `# WebSocket (subprotocol pulsebase.v1; the token as Authorization, ?token= or bearer.<token>):\n# connect to ${ws}?token=$TOKEN and send\n${JSON.stringify(subscribe)}\n\n# SSE:\ncurl -N ${auth} ${sh(sse)}`,
    sdk: series
      ? `// One create event per reading:\nconst sub = pb.collection(${js}).subscribe((event) => console.log(event.seq, event.record${field}));\nawait sub.ready;\n// Or closed buckets instead (WebSocket; a connection holds one subscription per topic),\n// asked for again on every (re)connection:\npb.realtime.on("bucket", (bucket) => console.log(bucket.t, bucket.group, bucket.values));\npb.realtime.on("welcome", () => pb.realtime.request("subscribe", ${JSON.stringify({ topic: c.name, aggregate: subscribe.aggregate })}));\npb.realtime.connect();`
      : `const sub = pb.collection(${js}).subscribe(${json({ ops: subscribe.ops, filter })}, (event) => {\n  // A delete carries the record as it was; one that left your view (reason "left") only its id.\n  if (event.op === "delete") console.log("deleted", event.record.id);\n  else console.log(event.op, event.seq, event.record${field});\n});\nawait sub.ready;\n// later: sub.unsubscribe();`,
  });
}

function fieldsPanel(c) {
  const rows = Object.entries(c.fields || {}).map(([field, def]) =>
    h(
      "tr",
      { "data-field": field },
      h("td", {}, h("code", {}, field)),
      h("td", {}, def.type),
      h("td", {}, def.required ? "required" : ""),
      h("td", { class: "hint" }, (c.protected || []).includes(field) ? "protected: admins only see it" : field === c.series ? "the series (source) field" : field === c.time ? "the time field" : ""),
    ),
  );
  const system = c.kind === "series" ? "id, created, owner" : "id, created, updated, owner, rev";
  return h(
    "section",
    { class: "panel", id: "api-fields" },
    h("h2", {}, `${c.kind === "series" ? "Series" : "Records"} collection ${c.name}`),
    h("p", { class: "hint" }, `Fields the server sets: ${system}. ${c.strict ? "strict: other fields are refused." : "Not strict: other fields are kept as sent."} $TOKEN is an access token or an API key.`),
    rows.length ? h("table", {}, h("thead", {}, h("tr", {}, ["field", "type", "", ""].map((t) => h("th", {}, t)))), h("tbody", {}, rows)) : h("p", { class: "hint" }, "No fields defined."),
  );
}

function section({ id, title, call, note, curl, sdk }) {
  return h(
    "section",
    { class: "panel api-call", id: `api-${id}` },
    h("h2", {}, title),
    h("p", {}, h("code", { class: "api-endpoint" }, call)),
    h("p", { class: "hint" }, note),
    h("h3", {}, "curl"),
    h("pre", { class: "api-snippet", "data-lang": "curl" }, curl),
    h("h3", {}, "JavaScript client"),
    h("pre", { class: "api-snippet", "data-lang": "sdk" }, sdk),
  );
}
