// TypeScript declarations for pulsebase.js (served at /sdk/pulsebase.d.ts,
// and the `types` of the npm package). They describe the client's API and
// the server's wire shapes that it hands back; tests/sdk/example.ts is
// checked against them with `tsc --noEmit`.

/** The public fields of a user, as the server returns them. */
export interface User {
  id: string;
  email: string;
  name: string | null;
  roles: string[];
  groups: string[];
  tenant: string | null;
  disabled: boolean;
  /** Proved by a mailed link, or set by an admin. */
  verified: boolean;
  created: string;
}

/** What `signIn`, `signUp`, `setup` and `refresh` resolve with (and `pb.session`). */
export interface Session {
  token: string;
  refresh_token: string;
  /** Seconds the access token lives. */
  expires_in: number;
  /** Milliseconds since the epoch; added by the client. */
  expires_at?: number;
  user: User;
}

/** Where the session is kept: `localStorage`, `sessionStorage` or your own. */
export interface SessionStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Reconnect delays, in milliseconds. */
export interface Backoff {
  initial: number;
  max: number;
}

export type Transport = "ws" | "sse";

export interface PulsebaseOptions {
  /** Where the session is kept (default: in memory). */
  storage?: SessionStorage;
  /** The key in `storage` (default `pulsebase.session`). */
  storageKey?: string;
  /** Act as an API key (`X-Api-Key`) instead of a signed-in user. */
  apiKey?: string;
  /** Reconnect delays (default `{initial: 500, max: 30000}`). */
  backoff?: Partial<Backoff>;
  /** `auto` (default): WebSocket if there is one, else SSE. */
  transport?: "auto" | Transport;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** The WebSocket class to use; `null`: never use one. */
  // `any`: the DOM's, Node's and the `ws` package's constructors differ in
  // their types, and all of them work.
  WebSocket?: any;
  /** The EventSource class to use; `null`: read SSE with fetch instead. */
  EventSource?: any;
}

export interface RequestOptions {
  /** Query parameters; arrays are joined with commas, dates sent as RFC 3339, null and undefined left out. */
  query?: Record<string, string | number | boolean | Date | null | undefined | ReadonlyArray<string | number | Date>>;
  /** Send the session's credential (default true). */
  auth?: boolean;
  /** Refresh and retry once on `token_expired` (default true). */
  retry?: boolean;
  /** `blob` for a file download such as `GET /api/backup`. */
  as?: "json" | "blob";
  headers?: Record<string, string>;
  /** Send `body` as it is (a string) with this Content-Type, instead of as JSON. */
  contentType?: string;
}

/** An error answer from the server (or from the client itself, status 0). */
export class PulsebaseError extends Error {
  constructor(status: number, code: string, message?: string, details?: unknown);
  readonly name: "PulsebaseError";
  /** The HTTP status; 0 for realtime errors and errors of the client itself. */
  status: number;
  /** A stable code: `not_found`, `forbidden`, `validation_failed`, `history_expired`, `transport_unavailable`, … */
  code: string;
  details: unknown;
}

/** Full jitter: a random wait in [0, min(max, initial * 2^attempt)) ms. */
export function backoffDelay(attempt: number, backoff?: Backoff): number;

/** A record: its fields and the ones the server adds. */
export type RecordModel<T = Record<string, unknown>> = T & {
  id: string;
  rev?: number;
  created?: string;
  updated?: string;
};

export interface ListParams {
  filter?: string;
  /** Fields, `-` in front for descending: `-created,name`. */
  sort?: string;
  limit?: number;
  cursor?: string;
  /** Only these fields. */
  fields?: string | string[];
  /** Also count every match, all pages together (`ListResult.total`). */
  total?: boolean;
}

export interface ListResult<T> {
  items: RecordModel<T>[];
  next_cursor: string | null;
  /**
   * With `total: true`: how many records match, every page together. Null
   * for a series collection when counting would decode every reading.
   */
  total?: number | null;
}

/** `{ifMatch: rev}`: refused with 412 `precondition_failed` if the record moved on. */
export interface WriteOptions {
  ifMatch?: number | string;
}

export type Op = "create" | "update" | "delete";

export interface SubscribeOptions {
  /** Only these operations. */
  ops?: Op[];
  /** A filter in the rule language, e.g. `temp > 30`. */
  filter?: string;
  /** Start after this seq (the events after it are replayed first). */
  since?: number;
  /**
   * The server ended the subscription (its topic was deleted or its
   * collection dropped); no event follows. The listener never gets this
   * notice: it hears only record events or topic messages.
   */
  onUnsubscribed?: (notice: UnsubscribedMessage) => void;
}

export interface CollectionSubscribeOptions extends SubscribeOptions {
  /** One record's changes instead of the whole collection's. */
  record?: string;
}

/** What a collection holds: records (the default), or a series' readings. */
export type CollectionKind = "records" | "series";

/** The handle `pb.collection<T, K>(name)` gives: records, or series calls for `K = "series"`. */
export type CollectionOf<T, K extends CollectionKind> = K extends "series" ? SeriesCollectionApi<T> : CollectionApi<T>;

export interface CollectionApi<T = Record<string, unknown>> {
  list(params?: ListParams): Promise<ListResult<T>>;
  get(id: string): Promise<RecordModel<T>>;
  /** One record, or an array created as one atomic batch. */
  create(data: Partial<T>): Promise<RecordModel<T>>;
  create(data: Partial<T>[]): Promise<RecordModel<T>[] | { items: RecordModel<T>[] }>;
  /** PATCH: only the given fields. */
  update(id: string, data: Partial<T>, options?: WriteOptions): Promise<RecordModel<T>>;
  /** PUT: the whole record. */
  replace(id: string, data: T, options?: WriteOptions): Promise<RecordModel<T>>;
  delete(id: string, options?: WriteOptions): Promise<null>;
  /**
   * Live changes of this collection, or of one record with `{record: id}`:
   * `subscribe((e) => …)`, or `subscribe(options, (e) => …)`. Narrow on
   * `op` (or `reason`) for the record's fields: see `RecordEvent`.
   */
  subscribe(onEvent: (event: RecordEvent<T>) => void): Subscription;
  subscribe(options: CollectionSubscribeOptions | null | undefined, onEvent?: (event: RecordEvent<T>) => void): Subscription;
}

/** A time: RFC 3339, milliseconds since the epoch, or a Date. */
export type TimeParam = string | number | Date;

/** A reading of a series collection: its fields and the ones the server adds (no `rev`, no `updated`). */
export type Reading<T = Record<string, unknown>> = T & {
  /** 13 characters; ids sort in write order. */
  id: string;
  /** The receive time. */
  created?: string;
  /** The writer's user (or API key) id. */
  owner?: string | null;
};

export interface SeriesListParams extends ListParams {
  /** Readings at or after this time. */
  from?: TimeParam;
  /** Readings before this time. */
  to?: TimeParam;
}

export interface SeriesListResult<T> {
  /** In time order (reading time, then write order); `sort: "-time"` for newest first. */
  items: Reading<T>[];
  next_cursor: string | null;
  /** With `total: true`: the stored count when the caller sees every reading and gives no time range, else null. */
  total?: number | null;
}

export interface SeriesCreateOptions {
  /** 1-200 characters: a retry with the same key answers as the first request did and writes nothing. */
  idempotencyKey?: string;
  /** Answer with the stored readings too (`items`). */
  returnItems?: boolean;
}

/** What writing readings answers: a batch is all or nothing. */
export interface SeriesBatch<T = Record<string, unknown>> {
  count: number;
  first_seq: number;
  /** `first_seq + count - 1`. */
  last_seq: number;
  /** With `returnItems: true`. */
  items?: Reading<T>[];
}

export interface LatestParams {
  /** A rule expression: per source, the newest reading that passes it. */
  filter?: string;
  /** Only these fields (and `id`). */
  fields?: string | string[];
  /** Only the collection's series field may be named. */
  group?: string;
}

/** `count()`, `count(field)`, `sum`, `avg`, `min`, `max`, `first`, `last` (by reading time) of a field. */
export type Aggregation = `${"count" | "sum" | "avg" | "min" | "max" | "first" | "last"}(${string})`;

export interface AggregateParams {
  /** From 1s to 30d, aligned to the Unix epoch: `30s`, `1m`, `1h`, `1d`. */
  bucket: `${number}${"s" | "m" | "h" | "d"}`;
  /** `["avg(temp)", "count()"]`, or the same comma-separated: `"avg(temp),count()"`. */
  agg: Aggregation | readonly Aggregation[];
  from?: TimeParam;
  to?: TimeParam;
  /** Fields to group by: a list, or comma-separated. */
  group?: string | readonly string[];
  /** A rule expression: only the readings that pass it. */
  filter?: string;
  /** Empty buckets: `none` (left out, the default), `null`, `prev` (the group's previous value), or a number. */
  fill?: "none" | "null" | "prev" | number;
}

/** One time bucket of one group. */
export interface AggregateBucket {
  /** The bucket's start (RFC 3339). */
  t: string;
  /** The group's values; `{}` without `group`. */
  group: Record<string, string | number | boolean | null>;
  /** Keyed by the function as asked, e.g. `"avg(temp)"`. */
  values: Record<string, number | string | boolean | null>;
}

export interface AggregateResult {
  buckets: AggregateBucket[];
}

/** The calls of a series collection: `pb.collection<T, "series">(name)`. */
export interface SeriesCollectionApi<T = Record<string, unknown>> {
  /** Readings in time order, within `from` and `to`. */
  list(params?: SeriesListParams): Promise<SeriesListResult<T>>;
  get(id: string): Promise<Reading<T>>;
  /** One reading, or an array of them: all or nothing. */
  create(data: Partial<T> | Partial<T>[], options: SeriesCreateOptions & { returnItems: true }): Promise<SeriesBatch<T> & { items: Reading<T>[] }>;
  create(data: Partial<T> | Partial<T>[], options?: SeriesCreateOptions): Promise<SeriesBatch<T>>;
  /** The newest reading (by time) of each source the caller may list, in source order. */
  latest(params?: LatestParams): Promise<{ items: Reading<T>[] }>;
  /** Readings in time buckets. */
  aggregate(params: AggregateParams): Promise<AggregateResult>;
  /** One `create` event per reading (dropped readings are the `expired` event of `pb.realtime.on`). */
  subscribe(onEvent: (event: ReadingEvent<T>) => void): Subscription;
  subscribe(options: CollectionSubscribeOptions | null | undefined, onEvent?: (event: ReadingEvent<T>) => void): Subscription;
}

export interface WriteLinesOptions {
  /** The unit of the lines' timestamps (default `ns`, as InfluxDB's). */
  precision?: "ns" | "us" | "ms" | "s";
  /** As for `create`: a retry with the same key writes nothing. */
  idempotencyKey?: string;
}

export interface TopicSettings {
  name: string;
  /** How many messages to keep for resume (default 0). */
  history?: number;
  /** Who may publish and subscribe: rule expressions (default `@user != null`). */
  publish?: string;
  subscribe?: string;
  /** Track who is subscribed (default false): see `Realtime.presence` and `Realtime.onPresence`. */
  presence?: boolean;
}

export interface TopicsApi {
  list(): Promise<Array<{ name: string; kind?: string; [key: string]: unknown }>>;
  create(topic: TopicSettings): Promise<unknown>;
  delete(name: string): Promise<null>;
  /** Publishes over HTTP (no socket needed). */
  publish(name: string, data: unknown): Promise<{ seq: number }>;
}

/** What every record event carries besides its `op`, `record` and `reason`. */
export interface EventHeader {
  type: "event";
  /** The collection (`readings`), or the record topic (`readings/ID`) subscribed to. */
  topic: string;
  seq: number;
  ts: string;
}

/** A record was created, or an update brought it into view (`reason: "entered"`). */
export interface RecordCreated<T = Record<string, unknown>> extends EventHeader {
  op: "create";
  record: RecordModel<T>;
  reason?: "entered";
}

/** A record was updated (and is still in view): the record as it is now. */
export interface RecordUpdated<T = Record<string, unknown>> extends EventHeader {
  op: "update";
  record: RecordModel<T>;
  reason?: undefined;
}

/** A record was deleted, or removed by retention (`reason: "expired"`): the record as it was. */
export interface RecordDeleted<T = Record<string, unknown>> extends EventHeader {
  op: "delete";
  record: RecordModel<T>;
  reason?: "expired";
}

/**
 * An update took the record out of what the subscription may see (its
 * rules or its `filter`): a delete carrying only the id.
 */
export interface RecordLeft<T = Record<string, unknown>> extends EventHeader {
  op: "delete";
  reason: "left";
  record: LeftRecord<T>;
}

/**
 * The record of a `left` event: only its `id`. Its other fields are
 * declared absent, so that before narrowing `event.record.temp` reads as
 * what it is, the field's type or `undefined`.
 */
export type LeftRecord<T = Record<string, unknown>> = string extends keyof T
  ? { id: string } & Record<string, unknown>
  : { id: string } & { [K in Exclude<keyof RecordModel<T>, "id">]?: undefined };

/**
 * A change to a record (`type: "event"`), as a subscription of a collection
 * of `T` hears it. `record` is the record, except when an update took it
 * out of view (`op: "delete"`, `reason: "left"`): then only `{id}`. So
 * `if (e.op !== "delete")` (or `e.reason !== "left"`) narrows `e.record`
 * to the whole record.
 */
export type RecordEvent<T = Record<string, unknown>> = RecordCreated<T> | RecordUpdated<T> | RecordDeleted<T> | RecordLeft<T>;

/** A reading written to a series collection: one `create` event each. */
export interface ReadingEvent<T = Record<string, unknown>> extends EventHeader {
  op: "create";
  record: Reading<T>;
}

/** A message on a custom topic (`type: "message"`). */
export interface TopicMessage<D = unknown> {
  type: "message";
  topic: string;
  seq: number;
  ts: string;
  /** The publishing connection, if any. */
  from: string | null;
  data: D;
}

/**
 * The server ended a subscription: to `SubscribeOptions.onUnsubscribed`
 * and the `unsubscribed` event of `pb.realtime.on`, never to a listener.
 * (A resume the server cut short resubscribes by itself and reports
 * `history_expired` as an error instead.)
 */
export interface UnsubscribedMessage {
  type: "unsubscribed";
  topic: string;
  reason: "topic_deleted" | "collection_dropped";
}

/** A signed-in member of a presence topic, as fellow subscribers see them. */
export interface PresenceUser {
  id: string;
  name: string;
}

/** One subscriber of a presence topic. */
export interface PresenceMember {
  /** The connection's name from its welcome, e.g. `c_12`. */
  connection: string;
  /** null for an API key or an anonymous connection. */
  user: PresenceUser | null;
  /** When it subscribed (RFC 3339). */
  since: string;
}

/** Someone subscribed to a presence topic, or their subscription ended. */
export interface PresenceChange extends PresenceMember {
  type: "join" | "leave";
  topic: string;
}

/** Only the member count: past `presence_max`, or too many changes at once. */
export interface PresenceCount {
  type: "presence";
  topic: string;
  count: number;
}

/** What `Realtime.presence` resolves with; `members` is null past `presence_max`. */
export interface PresenceList {
  members: PresenceMember[] | null;
  count: number;
}

export interface PresenceHandlers {
  join?(message: PresenceChange): void;
  leave?(message: PresenceChange): void;
  /** The list known so far is stale: ask `presence(topic)` again. */
  count?(count: number, message: PresenceCount): void;
}

/**
 * What the listener of `pb.realtime.subscribe(topic)` receives without a
 * type argument: the record events of a collection or record topic, or the
 * messages of a custom topic (the topic's name decides which).
 */
export type RealtimeDelivery<T = Record<string, unknown>, D = unknown> = RecordEvent<T> | TopicMessage<D>;

/** The server's reply to a subscribe. Over SSE only `{type, topic}`. */
export interface SubscribeReply {
  type: "ok";
  topic: string;
  id?: string | null;
  seq?: number;
  epoch?: string;
}

export interface Subscription {
  /** Settles with the reply to the first subscribe; rejects with a PulsebaseError when refused or when no transport can run. */
  ready: Promise<SubscribeReply>;
  unsubscribe(): void;
}

export type ConnectionState = "connecting" | "open" | "closed";

export interface WelcomeMessage {
  type: "welcome";
  connection: string;
  user: User | null;
  /** Seconds between heartbeats. */
  heartbeat: number;
  seq: number;
  epoch: string;
}

export interface RealtimeEvents {
  state: ConnectionState;
  /** history_expired (events were missed), a refused subscribe, transport_unavailable, … */
  error: Error | PulsebaseError;
  welcome: WelcomeMessage;
  unsubscribed: UnsubscribedMessage;
  heartbeat: { type: "heartbeat"; ts: string };
  /** A series' readings before `before` were dropped. */
  expired: { type: "expired"; topic: string; before: string; seq: number };
  /** A closed time bucket of an `aggregate` subscription. */
  bucket: { type: "bucket"; topic: string; [key: string]: unknown };
  /** Presence topics, any of them (see `onPresence` for one topic). */
  join: PresenceChange;
  leave: PresenceChange;
  presence: PresenceCount;
}

/** One realtime connection carrying every subscription. */
export class Realtime {
  constructor(client: Pulsebase);
  readonly client: Pulsebase;
  backoff: Backoff;
  /** The transport in use. */
  readonly transport: Transport;
  readonly state: ConnectionState;
  /** The connection's name from the server's welcome (WebSocket only). */
  readonly connection: string | null;
  /** Listens; returns a function that stops listening. */
  on<K extends keyof RealtimeEvents>(event: K, listener: (value: RealtimeEvents[K]) => void): () => void;
  on(event: string, listener: (value: any) => void): () => void;
  /**
   * A collection (`readings`), a record (`readings/ID`) or a custom topic;
   * the listener hears its record events or its messages. Typed records:
   * `pb.collection<T>(name).subscribe`.
   */
  subscribe(topic: string, onEvent: (delivery: RealtimeDelivery) => void): Subscription;
  subscribe(topic: string, options?: SubscribeOptions | null, onEvent?: (delivery: RealtimeDelivery) => void): Subscription;
  /** A custom topic whose messages carry `D`: `pb.realtime.subscribe<Chat>("chat", (m) => m.data.text)`. */
  subscribe<D>(topic: string, onMessage: (message: TopicMessage<D>) => void): Subscription;
  subscribe<D>(topic: string, options: SubscribeOptions | null | undefined, onMessage?: (message: TopicMessage<D>) => void): Subscription;
  /** Publishes on a custom topic over the socket (WebSocket only); resolves with the seq. */
  publish(topic: string, data: unknown): Promise<number>;
  /** Who is subscribed to a topic created with `presence: true` (WebSocket only). */
  presence(topic: string): Promise<PresenceList>;
  /** Joins, leaves and counts of a presence topic you are subscribed to; returns a function that stops listening. */
  onPresence(topic: string, handlers: PresenceHandlers): () => void;
  /** Sends one action and resolves with its `ok` reply (WebSocket only). */
  request(action: string, fields?: Record<string, unknown>): Promise<{ type: "ok"; id: string; [key: string]: unknown }>;
  /** Opens the connection (subscribing does this by itself). */
  connect(): void;
  /** Closes for good (until the next connect or subscribe). */
  close(): void;
}

export class Pulsebase {
  /** `baseUrl` e.g. `http://127.0.0.1:7070`; `""` for the page's origin. */
  constructor(baseUrl?: string, options?: PulsebaseOptions);
  readonly baseUrl: string;
  readonly options: PulsebaseOptions;
  /** The session, or null when signed out. */
  readonly session: Session | null;
  /** The signed-in user, or null. */
  readonly user: User | null;
  /** The current access token, or null. */
  readonly token: string | null;
  /** Called whenever the session changes; returns an unsubscribe function. */
  onAuthChange(listener: (user: User | null) => void): () => void;
  signIn(email: string, password: string): Promise<Session>;
  /** Needs `allow_signup` on the server. */
  signUp(email: string, password: string, name?: string): Promise<Session>;
  /** Redeems the one-time setup code the server printed, creating the first admin. */
  setup(code: string, email: string, password: string, name?: string): Promise<Session>;
  /** Exchanges the refresh token for a new pair now (concurrent calls share one request). */
  refresh(): Promise<Session>;
  /** Changes the signed-in user's own password; other sign-ins end, this client gets the new session. */
  changePassword(password: string, newPassword: string): Promise<Session>;
  /** Mails a reset link if the address has an account (the answer is the same either way). */
  requestPasswordReset(email: string): Promise<void>;
  /** Sets a new password with the token from a reset link. */
  resetPassword(token: string, password: string): Promise<void>;
  /** Mails the signed-in user a link confirming their address. */
  requestVerification(): Promise<void>;
  /** Confirms an address with the token from a verification link. */
  verifyEmail(token: string): Promise<User>;
  signOut(): Promise<void>;
  /** Any endpoint: the parsed JSON, null for 204, a Blob with `as: "blob"`. */
  request<R = any>(method: string, path: string, body?: unknown, options?: RequestOptions): Promise<R>;
  /** `pb.collection<Note>("notes")`; a series collection: `pb.collection<Reading, "series">("readings")`. */
  collection<T = Record<string, unknown>, K extends CollectionKind = "records">(name: string): CollectionOf<T, K>;
  /** InfluxDB line protocol into the series collection `bucket`, all or nothing; a bad line rejects with its number in `details`. */
  writeLines(bucket: string, lines: string | readonly string[], options?: WriteLinesOptions): Promise<void>;
  readonly topics: TopicsApi;
  readonly realtime: Realtime;
}

export default Pulsebase;
