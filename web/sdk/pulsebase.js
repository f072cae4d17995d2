/* @ts-self-types="./pulsebase.d.ts" */
// pulsebase JavaScript client: auth, records, series, topics and realtime.
//
// One file, no dependencies, an ES module for browsers
// (`<script type="module">`, served at /sdk/pulsebase.js), Node 18+, Deno
// and Bun. It stays one file so that copying it is a complete install.
// The directive on the first line points Deno, which imports by URL, at
// the declarations served beside it (/sdk/pulsebase.d.ts).
// Without a global WebSocket (Node 18 and 20 without
// `--experimental-websocket`) realtime runs over SSE: an EventSource where
// there is one, else a `fetch` whose body is read as a stream.
//
//   import { Pulsebase } from "/sdk/pulsebase.js";
//   const pb = new Pulsebase("http://127.0.0.1:7070");
//   await pb.signIn("you@example.com", "secret-password");
//   const sub = pb.realtime.subscribe("readings", { ops: ["create"] }, (event) => {
//     console.log(event.op, event.record);
//   });
//
// Realtime does the reconnect logic every app otherwise writes by hand:
// exponential backoff with full jitter, resubscribe, resume from the last
// seq seen per topic (no gap, no duplicate), and a token refresh before
// expiry that is handed to the open socket with the `auth` action.

/** Request options carrying `If-Match: <rev>` when `ifMatch` is given. */
function ifMatch({ ifMatch: rev } = {}) {
  return rev == null ? {} : { headers: { "If-Match": String(rev) } };
}

/** Request options carrying `Idempotency-Key` when a key is given. */
function idempotent(key) {
  return key == null ? {} : { headers: { "Idempotency-Key": String(key) } };
}

/** A query value as the server reads it: times as RFC 3339. */
function queryValue(value) {
  return value instanceof Date ? value.toISOString() : String(value);
}

/** An error answer from the server, in the contract's error shape. */
export class PulsebaseError extends Error {
  constructor(status, code, message, details) {
    super(message || code);
    this.name = "PulsebaseError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

const DEFAULT_BACKOFF = { initial: 500, max: 30_000 };
// Refresh this long before the access token expires.
const REFRESH_MARGIN_MS = 60_000;

function memoryStorage() {
  const items = new Map();
  return {
    getItem: (k) => (items.has(k) ? items.get(k) : null),
    setItem: (k, v) => items.set(k, String(v)),
    removeItem: (k) => items.delete(k),
  };
}

/** Full jitter: a random wait in [0, min(max, initial * 2^attempt)). */
export function backoffDelay(attempt, { initial, max } = DEFAULT_BACKOFF) {
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.floor(Math.random() * ceiling);
}

export class Pulsebase {
  /**
   * @param {string} baseUrl e.g. "http://127.0.0.1:7070"; "" for the page's origin
   * @param {object} [options]
   * @param {Storage} [options.storage] where the session is kept (default: memory)
   * @param {string} [options.storageKey]
   * @param {string} [options.apiKey] use an API key instead of a session
   * @param {typeof fetch} [options.fetch]
   * @param {typeof WebSocket} [options.WebSocket]
   * @param {typeof EventSource} [options.EventSource]
   * @param {{initial: number, max: number}} [options.backoff] reconnect delays, ms
   * @param {"auto"|"ws"|"sse"} [options.transport]
   */
  constructor(baseUrl = "", options = {}) {
    const origin = typeof location !== "undefined" ? location.origin : "";
    this.baseUrl = (baseUrl || origin).replace(/\/+$/, "");
    this.options = options;
    // Looked up lazily: a runtime without fetch gets a clear error on the
    // first request rather than a TypeError here.
    this._fetch = options.fetch || ((...args) => {
      if (typeof globalThis.fetch !== "function") throw new Error("pulsebase: no global fetch; pass options.fetch");
      return globalThis.fetch(...args);
    });
    this._storage = options.storage || memoryStorage();
    this._storageKey = options.storageKey || "pulsebase.session";
    this._authListeners = new Set();
    this._refreshTimer = null;
    this._refreshing = null;
    this.session = null;
    const saved = this._storage.getItem(this._storageKey);
    if (saved) {
      try {
        this._setSession(JSON.parse(saved), false);
      } catch {
        this._storage.removeItem(this._storageKey);
      }
    }
    this._realtime = null;
  }

  // ---- auth -------------------------------------------------------------

  /** The signed-in user, or null. */
  get user() {
    return this.session ? this.session.user : null;
  }

  /** The current access token, or null. */
  get token() {
    return this.session ? this.session.token : null;
  }

  /** Calls `listener(user)` whenever the session changes; returns an unsubscribe function. */
  onAuthChange(listener) {
    this._authListeners.add(listener);
    return () => this._authListeners.delete(listener);
  }

  async signIn(email, password) {
    return this._adopt(await this.request("POST", "/api/auth/signin", { email, password }));
  }

  async signUp(email, password, name) {
    return this._adopt(await this.request("POST", "/api/auth/signup", { email, password, name }));
  }

  /** Redeems the one-time setup code the server printed, creating the first admin. */
  async setup(code, email, password, name) {
    return this._adopt(await this.request("POST", "/api/setup", { code, email, password, name }));
  }

  /** Exchanges the refresh token for a new pair (one refresh at a time). */
  async refresh() {
    if (!this.session || !this.session.refresh_token) {
      throw new PulsebaseError(401, "unauthorized", "not signed in");
    }
    if (!this._refreshing) {
      const refreshToken = this.session.refresh_token;
      this._refreshing = this.request("POST", "/api/auth/refresh", { refresh_token: refreshToken }, { auth: false })
        .then((session) => this._adopt(session))
        .catch((error) => {
          // A refused refresh token will never work again: sign out locally.
          if (error instanceof PulsebaseError && error.status === 401) this._setSession(null);
          throw error;
        })
        .finally(() => {
          this._refreshing = null;
        });
    }
    return this._refreshing;
  }

  /**
   * Changes the signed-in user's own password. Every other sign-in of the
   * user ends; this client continues with the new session it gets back.
   */
  async changePassword(password, newPassword) {
    return this._adopt(await this.request("POST", "/api/auth/password", { password, new_password: newPassword }));
  }

  /** Mails a reset link if `email` has an account (the server answers the same either way). */
  async requestPasswordReset(email) {
    await this.request("POST", "/api/auth/request-reset", { email }, { auth: false });
  }

  /** Sets a new password with the token from a reset link. */
  async resetPassword(token, password) {
    await this.request("POST", "/api/auth/reset", { token, password }, { auth: false });
  }

  /** Mails the signed-in user a link that confirms their address. */
  async requestVerification() {
    await this.request("POST", "/api/auth/request-verification");
  }

  /** Confirms an address with the token from a verification link; resolves with the user. */
  async verifyEmail(token) {
    return this.request("POST", "/api/auth/verify", { token }, { auth: false });
  }

  async signOut() {
    const session = this.session;
    this._setSession(null);
    if (session && session.refresh_token) {
      await this.request("POST", "/api/auth/signout", { refresh_token: session.refresh_token }, { auth: false });
    }
  }

  _adopt(session) {
    this._setSession(session);
    return session;
  }

  _setSession(session, persist = true) {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    if (session && session.expires_in != null && session.expires_at == null) {
      session = { ...session, expires_at: Date.now() + session.expires_in * 1000 };
    }
    this.session = session;
    if (persist) {
      if (session) this._storage.setItem(this._storageKey, JSON.stringify(session));
      else this._storage.removeItem(this._storageKey);
    }
    if (session && session.refresh_token && session.expires_at) {
      const wait = Math.max(1000, session.expires_at - Date.now() - Math.min(REFRESH_MARGIN_MS, (session.expires_in || 120) * 500));
      this._refreshTimer = setTimeout(() => {
        this.refresh().catch(() => {});
      }, wait);
      // Node: a pending refresh must not keep the process alive.
      if (this._refreshTimer && typeof this._refreshTimer.unref === "function") this._refreshTimer.unref();
    }
    for (const listener of this._authListeners) {
      try {
        listener(this.user);
      } catch (e) {
        console.error(e);
      }
    }
    if (this._realtime) this._realtime._credentialsChanged();
  }

  _authHeaders() {
    if (this.options.apiKey) return { "X-Api-Key": this.options.apiKey };
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }

  // ---- HTTP ---------------------------------------------------------------

  /**
   * One API request. Resolves with the parsed JSON (or null for 204), or
   * with a Blob when `as: "blob"` (a file download such as /api/backup);
   * rejects with a PulsebaseError. A 401 `token_expired` is retried once
   * after a refresh. The body is sent as JSON, or as it is when
   * `contentType` is given.
   */
  async request(method, path, body, options = {}) {
    const { query, auth = true, retry = true, as = "json", headers: extra = {}, contentType } = options;
    let url = this.baseUrl + path;
    if (query) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) {
        if (v == null) continue;
        params.set(k, Array.isArray(v) ? v.map(queryValue).join(",") : queryValue(v));
      }
      const qs = params.toString();
      if (qs) url += (url.includes("?") ? "&" : "?") + qs;
    }
    const headers = { ...(auth ? this._authHeaders() : {}), ...extra };
    // A body with a content type of its own (line protocol) goes as it is.
    if (body !== undefined) headers["Content-Type"] = contentType || "application/json";
    const response = await this._fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : contentType ? body : JSON.stringify(body),
    });
    if (response.status === 204) return null;
    if (as === "blob" && response.ok) return response.blob();
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    }
    if (response.ok) return data;
    const error = (data && data.error) || {};
    if (response.status === 401 && error.code === "token_expired" && auth && retry && this.session && this.session.refresh_token) {
      await this.refresh();
      return this.request(method, path, body, { ...options, retry: false });
    }
    throw new PulsebaseError(response.status, error.code || "http_" + response.status, error.message || response.statusText, error.details);
  }

  /** Records (or readings, for a series collection) of one collection. */
  collection(name) {
    const path = `/api/collections/${encodeURIComponent(name)}`;
    const base = `${path}/records`;
    return {
      /**
       * {filter, sort, limit, cursor, fields, total}, and for a series
       * collection {from, to} → {items, next_cursor, total?}
       */
      list: (params = {}) => this.request("GET", base, undefined, { query: params }),
      get: (id) => this.request("GET", `${base}/${encodeURIComponent(id)}`),
      /**
       * One record, or an array (one atomic batch) → the created record, or
       * {items}. A series collection answers {count, first_seq, last_seq}
       * (with `items` too when `returnItems`); `idempotencyKey` makes a
       * retry answer as the first request did without writing again.
       */
      create: (data, { idempotencyKey, returnItems } = {}) =>
        this.request("POST", base, data, { ...idempotent(idempotencyKey), query: { return: returnItems ? "items" : null } }),
      /** Series: the newest reading of each source; {filter, fields} → {items}. */
      latest: (params = {}) => this.request("GET", `${path}/latest`, undefined, { query: params }),
      /**
       * Series: readings in time buckets; {from, to, bucket, agg, group,
       * filter, fill} → {buckets: [{t, group, values}]}. `agg` and `group`
       * may be lists.
       */
      aggregate: (params) => this.request("GET", `${path}/aggregate`, undefined, { query: params }),
      /**
       * `{ifMatch: rev}` makes the write conditional: a record that moved on
       * meanwhile is refused with 412 `precondition_failed` instead of
       * being overwritten.
       */
      update: (id, data, opts = {}) => this.request("PATCH", `${base}/${encodeURIComponent(id)}`, data, ifMatch(opts)),
      replace: (id, data, opts = {}) => this.request("PUT", `${base}/${encodeURIComponent(id)}`, data, ifMatch(opts)),
      delete: (id, opts = {}) => this.request("DELETE", `${base}/${encodeURIComponent(id)}`, undefined, ifMatch(opts)),
      /**
       * Live changes of this collection (or of one record with `{record:
       * id}`): `subscribe(onEvent)` or `subscribe(options, onEvent)`.
       */
      subscribe: (options, onEvent) => {
        if (typeof options === "function") [options, onEvent] = [null, options];
        const { record, ...rest } = options || {};
        const topic = record ? `${name}/${record}` : name;
        return this.realtime.subscribe(topic, rest, onEvent);
      },
    };
  }

  /**
   * Writes InfluxDB line protocol into the series collection `bucket`:
   * `lines` is one string or a list of lines; `precision` (`ns`, the
   * default, `us`, `ms` or `s`) is the unit of their timestamps. All or
   * nothing: a bad line rejects with its number in the error's `details`.
   */
  async writeLines(bucket, lines, { precision, idempotencyKey } = {}) {
    const body = Array.isArray(lines) ? lines.join("\n") : String(lines);
    await this.request("POST", "/api/v2/write", body, {
      query: { bucket, precision },
      contentType: "text/plain; charset=utf-8",
      ...idempotent(idempotencyKey),
    });
  }

  /** Custom pub/sub topics. */
  get topics() {
    return {
      list: () => this.request("GET", "/api/topics"),
      /** {name, history, publish, subscribe, presence} */
      create: (topic) => this.request("POST", "/api/topics", topic),
      delete: (name) => this.request("DELETE", `/api/topics/${encodeURIComponent(name)}`),
      /** Publishes over HTTP (no socket needed); resolves with {seq}. */
      publish: (name, data) => this.request("POST", `/api/topics/${encodeURIComponent(name)}/messages`, { data }),
    };
  }

  /** The realtime connection (created on first use, connects on first subscribe). */
  get realtime() {
    if (!this._realtime) this._realtime = new Realtime(this);
    return this._realtime;
  }
}

/**
 * One realtime connection with any number of subscriptions. Events:
 * `state` (connecting|open|closed), `error` (a PulsebaseError, e.g.
 * history_expired when a resume came too late: the listener learns that
 * events were missed), `welcome`.
 */
export class Realtime {
  constructor(client) {
    this.client = client;
    const opts = client.options;
    this.backoff = { ...DEFAULT_BACKOFF, ...(opts.backoff || {}) };
    // `null` in the options means "do not use one", even if a global exists.
    this._WebSocket = "WebSocket" in opts ? opts.WebSocket : globalThis.WebSocket;
    this._EventSource = "EventSource" in opts ? opts.EventSource : globalThis.EventSource;
    const wanted = opts.transport || "auto";
    this.transport = wanted === "auto" ? (this._WebSocket ? "ws" : "sse") : wanted;
    this.state = "closed";
    this._subs = new Map(); // topic -> {options, listeners:Set, lastSeq}
    this._presence = new Map(); // topic -> Set of {join, leave, count}
    this._pending = new Map(); // request id -> {resolve, reject}
    this._nextId = 1;
    this._listeners = new Map();
    this._attempt = 0;
    this._timer = null;
    this._socket = null;
    this._stream = null;
    this._wanted = false;
    this.connection = null;
  }

  on(event, listener) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(listener);
    return () => this._listeners.get(event).delete(listener);
  }

  _emit(event, value) {
    for (const listener of this._listeners.get(event) || []) {
      try {
        listener(value);
      } catch (e) {
        console.error(e);
      }
    }
  }

  _setState(state) {
    if (this.state !== state) {
      this.state = state;
      this._emit("state", state);
    }
  }

  /**
   * Subscribes to a collection (`readings`), a record (`readings/ID`) or a
   * custom topic: `subscribe(topic, onEvent)` or `subscribe(topic, options,
   * onEvent)`. `options`: {ops, filter, since, onUnsubscribed}. `onEvent`
   * gets every event or message of the topic and nothing else, so its
   * argument has one shape per kind of topic; the server ending the
   * subscription goes to `onUnsubscribed` (and the `unsubscribed` event).
   * Returns {unsubscribe(), ready} where `ready` resolves with the server's
   * reply to the first subscribe.
   */
  subscribe(topic, options, onEvent) {
    if (typeof options === "function") [options, onEvent] = [null, options];
    const { onUnsubscribed, ...wanted } = options || {};
    let sub = this._subs.get(topic);
    const existing = Boolean(sub);
    if (!sub) {
      sub = { topic, options: wanted, listeners: new Set(), ended: new Set(), lastSeq: wanted.since ?? null, live: false };
      this._subs.set(topic, sub);
    }
    if (onEvent) sub.listeners.add(onEvent);
    if (onUnsubscribed) sub.ended.add(onUnsubscribed);
    let ready;
    if (existing && sub.live) {
      // One server subscription per topic; another listener just joins it.
      ready = Promise.resolve({ type: "ok", topic });
    } else if (existing && this.state !== "closed") {
      ready = new Promise((resolve, reject) => {
        sub.waiting = (sub.waiting || []).concat({ resolve, reject });
      });
    } else if (this.transport === "ws" && this.state === "open") {
      ready = this._sendSubscribe(sub);
    } else {
      ready = new Promise((resolve, reject) => {
        sub.waiting = (sub.waiting || []).concat({ resolve, reject });
      });
      if (this.transport === "sse" && this.state === "open") this._reopenStream();
    }
    this._wanted = true;
    if (this.state === "closed") this.connect();
    ready.catch(() => {});
    return {
      ready,
      unsubscribe: () => {
        if (onEvent) sub.listeners.delete(onEvent);
        if (onUnsubscribed) sub.ended.delete(onUnsubscribed);
        if (sub.listeners.size === 0 && this._subs.get(topic) === sub) {
          this._subs.delete(topic);
          if (this.transport === "ws" && this.state === "open") {
            this.request("unsubscribe", { topic }).catch(() => {});
          } else if (this.transport === "sse" && this.state === "open") {
            this._reopenStream();
          }
        }
      },
    };
  }

  /** Publishes on a custom topic over the socket; resolves with the seq. */
  async publish(topic, data) {
    const reply = await this.request("publish", { topic, data });
    return reply.seq;
  }

  /**
   * Who is subscribed to a custom topic created with `presence: true`
   * (WebSocket only): `{members, count}`, `members` being null when the
   * topic has more than the server's `presence_max` members.
   */
  async presence(topic) {
    const reply = await this.request("presence", { topic });
    return { members: reply.presence || null, count: reply.count };
  }

  /**
   * Hears who comes and goes on a presence topic, while subscribed to it:
   * `join(message)`, `leave(message)` (`{type, topic, connection, user,
   * since}`), and `count(count, message)` when the server sends only the
   * count (a large room, or a crowd at once): the member list is then
   * stale; `presence(topic)` gives it again. Returns a function that stops
   * listening.
   */
  onPresence(topic, handlers = {}) {
    if (!this._presence.has(topic)) this._presence.set(topic, new Set());
    const set = this._presence.get(topic);
    set.add(handlers);
    return () => {
      set.delete(handlers);
      if (set.size === 0 && this._presence.get(topic) === set) this._presence.delete(topic);
    };
  }

  _presenceNotice(message) {
    for (const handlers of this._presence.get(message.topic) || []) {
      const handler = message.type === "presence" ? handlers.count : handlers[message.type];
      if (typeof handler !== "function") continue;
      try {
        if (message.type === "presence") handler(message.count, message);
        else handler(message);
      } catch (e) {
        console.error(e);
      }
    }
    this._emit(message.type, message);
  }

  /** Sends one action and resolves with its `ok` reply (WebSocket only). */
  request(action, fields = {}) {
    if (this.transport !== "ws") return Promise.reject(new Error("requests need the WebSocket transport"));
    if (this.state !== "open") return Promise.reject(new Error("the realtime connection is not open"));
    const id = String(this._nextId++);
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      this._socket.send(JSON.stringify({ id, action, ...fields }));
    });
  }

  /** Opens the connection (subscribing does this by itself). */
  connect() {
    this._wanted = true;
    clearTimeout(this._timer);
    this._timer = null;
    const missing = this._missingTransport();
    if (missing) {
      // Retrying cannot help: say so instead of leaving `ready` pending.
      this._giveUp(new PulsebaseError(0, "transport_unavailable", missing));
      return;
    }
    this._setState("connecting");
    if (this.transport === "ws") this._openSocket();
    else this._reopenStream();
  }

  /** Closes for good (until the next connect or subscribe). */
  close() {
    this._wanted = false;
    clearTimeout(this._timer);
    this._timer = null;
    if (this._socket) {
      const socket = this._socket;
      this._socket = null;
      socket.close(1000);
    }
    if (this._stream) {
      this._stream.close();
      this._stream = null;
    }
    this._failPending(new Error("closed"));
    this._setState("closed");
  }

  /** Why the chosen transport cannot run here, or null. */
  _missingTransport() {
    if (this.transport === "ws") {
      if (this._WebSocket) return null;
      return "pulsebase: the WebSocket transport needs a global WebSocket (Node 22+, `node --experimental-websocket` on Node 20) or options.WebSocket; transport \"sse\" works without one";
    }
    if (this.transport !== "sse") return `pulsebase: unknown transport ${JSON.stringify(this.transport)} (use "auto", "ws" or "sse")`;
    if (this._EventSource || typeof this.client.options.fetch === "function" || typeof globalThis.fetch === "function") return null;
    return "pulsebase: realtime needs a WebSocket, an EventSource or fetch with streaming bodies; none is available";
  }

  /** Stops for good after an error no reconnect can fix; `ready` rejects. */
  _giveUp(error, subs = [...this._subs.values()]) {
    this._wanted = false;
    clearTimeout(this._timer);
    this._timer = null;
    this._rejectWaiting(error, subs);
    this._failPending(error);
    this._emit("error", error);
    this._setState("closed");
  }

  _rejectWaiting(error, subs) {
    for (const sub of subs) {
      for (const w of sub.waiting || []) w.reject(error);
      sub.waiting = [];
    }
  }

  _failPending(error) {
    for (const { reject } of this._pending.values()) reject(error);
    this._pending.clear();
  }

  _scheduleReconnect() {
    this._setState("closed");
    if (!this._wanted || this._timer) return;
    const delay = backoffDelay(this._attempt++, this.backoff);
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this._wanted) this.connect();
    }, delay);
  }

  // ---- WebSocket ------------------------------------------------------------

  _openSocket() {
    const url = this.client.baseUrl.replace(/^http/, "ws") + "/api/realtime";
    const token = this.client.token;
    const protocols = token ? ["pulsebase.v1", `bearer.${token}`] : ["pulsebase.v1"];
    const apiKey = this.client.options.apiKey;
    let socket;
    try {
      socket = new this._WebSocket(apiKey ? `${url}?token=${encodeURIComponent(apiKey)}` : url, apiKey ? ["pulsebase.v1"] : protocols);
    } catch (error) {
      this._emit("error", error);
      this._scheduleReconnect();
      return;
    }
    this._socket = socket;
    socket.onmessage = (message) => this._onMessage(message.data);
    socket.onclose = (event) => this._onSocketClose(socket, event);
    // Some implementations (Node 20's) fire only `error`, never `close`,
    // when the connection cannot be made: treat it as the close.
    socket.onerror = () => {
      if (this._socket !== socket) return;
      this._onSocketClose(socket, { code: 1006 });
      try {
        socket.close();
      } catch {
        // already closing
      }
    };
  }

  async _onSocketClose(socket, event) {
    if (this._socket !== socket) return;
    this._socket = null;
    this._failPending(new Error(`connection closed (${event.code})`));
    for (const sub of this._subs.values()) sub.live = false;
    // 4001: the token expired or the identity changed. A refresh tells
    // which: if it fails, the session is over and reconnecting is pointless.
    if (event.code === 4001 && this.client.session && this.client.session.refresh_token) {
      try {
        await this.client.refresh();
      } catch (error) {
        this._emit("error", error);
        this._wanted = false;
      }
    }
    this._scheduleReconnect();
  }

  _onMessage(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    switch (message.type) {
      case "welcome":
        this.connection = message.connection;
        this._attempt = 0;
        this._setState("open");
        this._emit("welcome", message);
        for (const sub of this._subs.values()) this._sendSubscribe(sub).catch(() => {});
        break;
      case "event":
      case "message":
        this._deliver(message);
        break;
      case "join":
      case "leave":
      case "presence":
        this._presenceNotice(message);
        break;
      case "ok":
      case "pong":
      case "error": {
        const pending = this._pending.get(message.id);
        if (!pending) {
          if (message.type === "error") this._emit("error", new PulsebaseError(0, message.code, message.message, message.details));
          break;
        }
        this._pending.delete(message.id);
        if (message.type === "error") pending.reject(new PulsebaseError(0, message.code, message.message, message.details));
        else pending.resolve(message);
        break;
      }
      case "unsubscribed": {
        const sub = this._subs.get(message.topic);
        if (sub && message.reason === "history_expired") {
          // The history was trimmed while it was being replayed: say so,
          // then go on live from now, as when a resume is refused outright.
          this._emit("error", new PulsebaseError(0, "history_expired", "events were missed", message));
          sub.lastSeq = null;
          this._sendSubscribe(sub).catch(() => {});
          break;
        }
        if (sub) {
          this._subs.delete(message.topic);
          for (const handler of sub.ended) {
            try {
              handler(message);
            } catch (e) {
              console.error(e);
            }
          }
        }
        this._emit("unsubscribed", message);
        break;
      }
      default:
        this._emit(message.type, message);
    }
  }

  _deliver(message) {
    const sub = this._subs.get(message.topic);
    if (!sub) return;
    // Never twice: a resume overlaps what was already seen.
    if (sub.lastSeq != null && message.seq <= sub.lastSeq) return;
    sub.lastSeq = message.seq;
    for (const listener of sub.listeners) {
      try {
        listener(message);
      } catch (e) {
        console.error(e);
      }
    }
  }

  async _sendSubscribe(sub) {
    const fields = { topic: sub.topic };
    if (sub.options.ops) fields.ops = sub.options.ops;
    if (sub.options.filter) fields.filter = sub.options.filter;
    if (sub.lastSeq != null) {
      fields.since = sub.lastSeq;
      // The server refuses a seq of another history (a restored backup).
      if (sub.epoch) fields.epoch = sub.epoch;
    }
    try {
      let reply;
      try {
        reply = await this.request("subscribe", fields);
      } catch (error) {
        if (!(error instanceof PulsebaseError) || error.code !== "history_expired") throw error;
        // Too late, or from another history: say so, then go on live from
        // now.
        this._emit("error", error);
        delete fields.since;
        delete fields.epoch;
        reply = await this.request("subscribe", fields);
      }
      // Not resuming (first subscribe, or the resume was refused): count
      // from the subscribe point, even if it is below a seq of another
      // history, so nothing new is taken for a duplicate.
      if (fields.since == null) sub.lastSeq = reply.seq;
      if (reply.epoch) sub.epoch = reply.epoch;
      sub.live = true;
      for (const w of sub.waiting || []) w.resolve(reply);
      sub.waiting = [];
      return reply;
    } catch (error) {
      for (const w of sub.waiting || []) w.reject(error);
      sub.waiting = [];
      if (error instanceof PulsebaseError) {
        // Refused (forbidden, not_found, bad filter...): retrying on every
        // reconnect would be refused again.
        if (this._subs.get(sub.topic) === sub) this._subs.delete(sub.topic);
        this._emit("error", error);
      }
      throw error;
    }
  }

  _credentialsChanged() {
    if (this.transport === "ws" && this.state === "open" && this.client.token) {
      // A fresh token goes to the open socket; no reconnect needed.
      this.request("auth", { token: this.client.token }).catch((error) => this._emit("error", error));
    } else if (this.transport === "sse" && this._stream) {
      this._reopenStream();
    }
  }

  // ---- SSE fallback ---------------------------------------------------------

  _reopenStream() {
    if (this._stream) {
      this._stream.close();
      this._stream = null;
    }
    if (this._subs.size === 0) {
      this._setState("closed");
      return;
    }
    const params = new URLSearchParams();
    let since = null;
    for (const sub of this._subs.values()) {
      params.append("topic", sub.topic);
      // One stream, one resume point: the oldest; duplicates are dropped
      // per topic in _deliver.
      if (sub.lastSeq != null) since = since == null ? sub.lastSeq : Math.min(since, sub.lastSeq);
    }
    const first = [...this._subs.values()][0];
    if (this._subs.size === 1) {
      if (first.options.ops) params.set("ops", first.options.ops.join(","));
      if (first.options.filter) params.set("filter", first.options.filter);
    }
    let stream;
    if (this._EventSource) {
      // An EventSource cannot send headers: the credential and the resume
      // point go in the query.
      if (since != null) params.set("since", String(since));
      const credential = this.client.options.apiKey || this.client.token;
      if (credential) params.set("token", credential);
      stream = new this._EventSource(`${this.client.baseUrl}/api/realtime/sse?${params}`);
    } else {
      // Headers keep the token out of URLs (and logs); Last-Event-ID
      // resumes as an EventSource's own reconnect does.
      const headers = { Accept: "text/event-stream", ...this.client._authHeaders() };
      if (since != null) headers["Last-Event-ID"] = String(since);
      stream = new FetchEventStream(`${this.client.baseUrl}/api/realtime/sse?${params}`, headers, this.client._fetch);
    }
    this._stream = stream;
    stream.onopen = () => {
      this._attempt = 0;
      this._setState("open");
      for (const sub of this._subs.values()) {
        sub.live = true;
        for (const w of sub.waiting || []) w.resolve({ type: "ok", topic: sub.topic });
        sub.waiting = [];
      }
    };
    const onData = (event) => {
      try {
        this._deliver(JSON.parse(event.data));
      } catch {
        // not JSON: ignore
      }
    };
    // The opening `ok`: where this stream starts, so a subscription that
    // has seen nothing yet has a resume point before its first event.
    stream.addEventListener("ok", (event) => {
      try {
        const reply = JSON.parse(event.data);
        for (const sub of this._subs.values()) if (sub.lastSeq == null && reply.seq != null) sub.lastSeq = reply.seq;
      } catch {
        // not JSON: ignore
      }
    });
    stream.addEventListener("event", onData);
    stream.addEventListener("message", onData);
    for (const type of ["unsubscribed", "join", "leave", "presence"]) {
      stream.addEventListener(type, (event) => {
        try {
          this._onMessage(event.data);
        } catch {
          // ignore
        }
      });
    }
    stream.onerror = (event) => {
      // The browser reconnects by itself with Last-Event-ID while the
      // stream can be retried; once it gives up (or a fetch stream ends),
      // reconnect with our own backoff (and a fresh token).
      if (stream.readyState !== 2 || this._stream !== stream) return;
      this._stream = null;
      if (event && event.error instanceof PulsebaseError) this._streamRefused(event.error);
      else this._scheduleReconnect();
    };
  }

  /** A fetch stream answered with an HTTP error instead of events. */
  async _streamRefused(error) {
    for (const sub of this._subs.values()) sub.live = false;
    if (error.code === "transport_unavailable") {
      this._giveUp(error);
      return;
    }
    if (error.status === 401) {
      // An expired token: a refresh tells whether the session goes on.
      if (!this.client.session || !this.client.session.refresh_token) {
        this._giveUp(error);
        return;
      }
      try {
        await this.client.refresh();
      } catch (refused) {
        this._giveUp(refused);
        return;
      }
    } else if (error.status === 0 || error.status === 429 || error.status >= 500) {
      this._scheduleReconnect();
      return;
    } else {
      // Refused (forbidden, not_found, bad filter...): the subscriptions
      // still waiting caused it (or, if none is waiting, any of them), and
      // retrying them would be refused again, so they are dropped.
      let refused = [...this._subs.values()].filter((sub) => (sub.waiting || []).length > 0);
      if (refused.length === 0) refused = [...this._subs.values()];
      for (const sub of refused) this._subs.delete(sub.topic);
      this._rejectWaiting(error, refused);
      this._emit("error", error);
      if (this._subs.size === 0) {
        this._setState("closed");
        return;
      }
    }
    this._scheduleReconnect();
  }
}

/**
 * Server-sent events read from a `fetch` body, for runtimes without an
 * EventSource (Node, Deno, Bun). It mimics the part of EventSource the
 * client uses (`onopen`, `onerror`, `addEventListener`, `readyState`,
 * `close`) but never reconnects by itself: any end is `readyState` 2 and
 * `onerror`, with `error` set to a PulsebaseError when the server answered
 * with one, and Realtime reconnects with its own backoff.
 */
class FetchEventStream {
  constructor(url, headers, fetchImpl) {
    this.url = url;
    this.readyState = 0;
    this.lastEventId = "";
    this.onopen = null;
    this.onerror = null;
    this._listeners = new Map();
    this._abort = typeof AbortController === "function" ? new AbortController() : null;
    this._run(fetchImpl, headers).catch((error) => this._end(error));
  }

  addEventListener(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
  }

  close() {
    if (this.readyState === 2) return;
    this.readyState = 2;
    if (this._abort) this._abort.abort();
  }

  _end(error) {
    if (this.readyState === 2) return;
    this.readyState = 2;
    if (this._abort) this._abort.abort();
    if (this.onerror) this.onerror({ type: "error", error });
  }

  async _run(fetchImpl, headers) {
    const response = await fetchImpl(this.url, { headers, cache: "no-store", signal: this._abort ? this._abort.signal : undefined });
    if (this.readyState === 2) return;
    if (!response.ok) {
      let body = null;
      try {
        body = JSON.parse(await response.text());
      } catch {
        // not the contract's error shape
      }
      const e = (body && body.error) || {};
      throw new PulsebaseError(response.status, e.code || "http_" + response.status, e.message || response.statusText, e.details);
    }
    if (!response.body || typeof response.body.getReader !== "function") {
      throw new PulsebaseError(0, "transport_unavailable", "pulsebase: this fetch cannot stream response bodies; pass options.EventSource or options.WebSocket");
    }
    this.readyState = 1;
    if (this.onopen) this.onopen({ type: "open" });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const parser = sseParser((type, data, id) => this._dispatch(type, data, id));
    for (;;) {
      const { done, value } = await reader.read();
      if (this.readyState === 2) return;
      if (done) break;
      parser(decoder.decode(value, { stream: true }));
    }
    // The server ended the stream (shutdown, token expired): reconnect.
    this._end(new Error("the event stream ended"));
  }

  _dispatch(type, data, id) {
    if (id != null) this.lastEventId = id;
    const event = { type, data, lastEventId: this.lastEventId };
    for (const listener of this._listeners.get(type) || []) listener(event);
  }
}

/**
 * The text/event-stream format (the HTML standard's parsing rules):
 * returns a function to feed text chunks; calls `dispatch(type, data, id)`
 * at each blank line that ends an event with data.
 */
function sseParser(dispatch) {
  let buffer = "";
  let data = [];
  let type = "";
  let id = null;
  const line = (text) => {
    if (text === "") {
      if (data.length > 0) dispatch(type || "message", data.join("\n"), id);
      data = [];
      type = "";
      id = null;
      return;
    }
    if (text.startsWith(":")) return; // a comment (keep-alive)
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") type = value;
    else if (field === "id" && !value.includes("\0")) id = value;
    // `retry` is ignored: reconnects follow the client's own backoff.
  };
  return (chunk) => {
    buffer += chunk;
    // A trailing "\r" may be the first half of "\r\n": wait for more.
    const re = /\r\n|\r(?!$)|\n/g;
    let start = 0;
    for (let m = re.exec(buffer); m; m = re.exec(buffer)) {
      line(buffer.slice(start, m.index));
      start = m.index + m[0].length;
    }
    buffer = buffer.slice(start);
  };
}

export default Pulsebase;
