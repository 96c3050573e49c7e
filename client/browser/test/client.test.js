// The client against a fake window, document and ingest: what it sends,
// when, and with which ids.
import { test, mock } from "node:test";
import assert from "node:assert/strict";
import { start } from "../sessionfold.js";

class Target {
  constructor() {
    this.listeners = new Map();
  }
  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }
  removeEventListener(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }
  dispatch(type, ev = {}) {
    for (const fn of this.listeners.get(type) ?? []) fn({ type, ...ev });
  }
}

function browser() {
  const win = new Target();
  win.location = { pathname: "/quiz" };
  win.history = {
    pushState(_s, _t, url) {
      win.location.pathname = url;
    },
    replaceState(_s, _t, url) {
      win.location.pathname = url;
    },
  };
  const doc = new Target();
  doc.visibilityState = "visible";
  doc.title = "Quiz";
  const beacons = [];
  const navigator = {
    userAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
    sendBeacon(url, blob) {
      beacons.push({ url, blob });
      return true;
    },
  };
  return { win, doc, navigator, beacons };
}

/**
 * An ingest that answers with `statuses` in turn (202 once they run out).
 * Like the real one it issues end tickets only for a bearer token (and
 * `tickets: false` makes it refuse them); each ticket is new.
 */
function ingest(statuses = [], { tickets = true } = {}) {
  const requests = [];
  let issued = 0;
  const fetch = async (url, init) => {
    const body = init.body ? JSON.parse(init.body) : null;
    const auth = init.headers?.authorization;
    requests.push({ url, auth, body, keepalive: init.keepalive === true });
    if (url.endsWith("/end-ticket")) {
      if (!tickets || !/^Bearer token-\d+$/.test(auth ?? "")) {
        return { ok: false, status: tickets ? 401 : 503, json: async () => ({}) };
      }
      issued += 1;
      return { ok: true, status: 200, json: async () => ({ ticket: `t-${issued}` }) };
    }
    const status = statuses.length ? statuses.shift() : 202;
    return { ok: status < 300, status, json: async () => ({}) };
  };
  const events = () =>
    requests.filter((r) => r.url.endsWith("/v1/activity")).flatMap((r) => r.body.events);
  return { fetch, requests, events };
}

// Lets every pending promise run (setImmediate is not among the mocked timers).
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

function client(b, api, clock, extra = {}) {
  let tokens = 0;
  return start({
    ingestUrl: "http://ingest.test/",
    token: async () => `token-${++tokens}`,
    userId: "ann",
    email: "ann@example.com",
    window: b.win,
    document: b.doc,
    navigator: b.navigator,
    fetch: api.fetch,
    now: () => clock.t,
    heartbeatInterval: 10_000,
    idleAfter: 30_000,
    ...extra,
  });
}

test("a session starts, beats only while visible and used, and follows navigation", async () => {
  mock.timers.enable({ apis: ["setInterval", "setTimeout"] });
  try {
    const b = browser();
    const api = ingest();
    const clock = { t: 1_000_000 };
    const p = client(b, api, clock);
    await settle();
    assert.deepEqual(api.events().map((e) => e.kind), ["session_started"]);
    const [started] = api.events();
    assert.equal(started.page, "/quiz");
    assert.equal(started.device_type, "desktop");
    assert.equal(started.session_id, p.sessionId);

    // Input, then time passes: one heartbeat per interval while used.
    b.win.dispatch("keydown");
    await settle();
    for (let i = 0; i < 4; i++) {
      clock.t += 5_000;
      mock.timers.tick(5_000);
      await settle();
    }
    const beats = api.events().filter((e) => e.kind === "heartbeat");
    assert.deepEqual(beats.map((e) => e.activity), ["keyboard", "keyboard", "keyboard"]);

    // Hidden: no heartbeats, however long.
    b.doc.visibilityState = "hidden";
    b.doc.dispatch("visibilitychange");
    for (let i = 0; i < 10; i++) {
      clock.t += 5_000;
      b.win.dispatch("mousemove");
      mock.timers.tick(5_000);
      await settle();
    }
    assert.equal(api.events().filter((e) => e.kind === "heartbeat").length, 3);

    // Visible again: a visibility heartbeat at once. Then idle: nothing.
    b.doc.visibilityState = "visible";
    b.doc.dispatch("visibilitychange");
    await settle();
    assert.equal(api.events().at(-1).activity, "visibility");
    const before = api.events().length;
    for (let i = 0; i < 12; i++) {
      clock.t += 5_000;
      mock.timers.tick(5_000);
      await settle();
    }
    const idleBeats = api.events().slice(before).filter((e) => e.kind === "heartbeat");
    assert.equal(idleBeats.length, 2, "beats stop once idle for 30 s");

    // Navigation by the history API and by the hash.
    b.win.history.pushState({}, "", "/results");
    b.win.location.pathname = "/results#top";
    b.win.dispatch("hashchange");
    await settle();
    assert.deepEqual(
      api.events().filter((e) => e.kind === "page_viewed").map((e) => e.page),
      ["/results", "/results#top"],
    );

    await p.end();
    assert.deepEqual(api.events().at(-1), { ...api.events().at(-1), kind: "session_ended", reason: "logout" });
    const ids = api.events().map((e) => e.event_id);
    assert.equal(new Set(ids).size, ids.length, "every event has its own id");
  } finally {
    mock.timers.reset();
  }
});

test("a failed request is retried with the same event ids; a 401 refreshes the token", async () => {
  mock.timers.enable({ apis: ["setInterval", "setTimeout"] });
  try {
    const b = browser();
    const api = ingest([503, 401, 202]);
    const clock = { t: 2_000_000 };
    const p = client(b, api, clock);
    await settle();
    const first = api.requests.filter((r) => r.url.endsWith("/v1/activity"));
    assert.equal(first.length, 1);
    assert.equal(p.pending(), 1);
    mock.timers.tick(1_000);
    await settle();
    const sent = api.requests.filter((r) => r.url.endsWith("/v1/activity"));
    assert.equal(sent.length, 3, "the retry, refused with 401, then sent again with a new token");
    assert.deepEqual(
      sent.map((r) => r.body.events[0].event_id),
      Array(3).fill(first[0].body.events[0].event_id),
    );
    assert.deepEqual(sent.map((r) => r.auth), ["Bearer token-1", "Bearer token-1", "Bearer token-2"]);
    assert.equal(p.pending(), 0);
    p.stop();
  } finally {
    mock.timers.reset();
  }
});

test("closing the tab ends the session by beacon with the end ticket", async () => {
  mock.timers.enable({ apis: ["setInterval", "setTimeout"] });
  try {
    const b = browser();
    const api = ingest();
    const p = client(b, api, { t: 3_000_000 });
    await settle();
    b.win.dispatch("pagehide", { persisted: true });
    assert.equal(b.beacons.length, 0, "a page kept in the back/forward cache has not ended");
    b.win.dispatch("pagehide", { persisted: false });
    assert.equal(b.beacons.length, 1);
    assert.equal(b.beacons[0].url, "http://ingest.test/v1/activity/end");
    const text = await b.beacons[0].blob.text();
    const body = JSON.parse(text);
    assert.equal(body.ticket, "t-1");
    assert.equal(body.reason, "closed");
    assert.ok(!text.includes("token-"), `no bearer token travels in the beacon: ${text}`);
    p.stop();
  } finally {
    mock.timers.reset();
  }
});

test("the end ticket is renewed, and the newest one goes with the beacon", async () => {
  mock.timers.enable({ apis: ["setInterval", "setTimeout"] });
  try {
    const b = browser();
    const api = ingest();
    const clock = { t: 4_000_000 };
    const p = client(b, api, clock, { ticketRefresh: 60_000 });
    await settle();
    for (let i = 0; i < 2; i++) {
      clock.t += 60_000;
      mock.timers.tick(60_000);
      await settle();
    }
    const asked = api.requests.filter((r) => r.url.endsWith("/end-ticket"));
    assert.equal(asked.length, 3, "one at start, one per refresh");
    assert.ok(asked.every((r) => /^Bearer token-\d+$/.test(r.auth)), "each asked with the bearer token");
    b.win.dispatch("pagehide", { persisted: false });
    assert.equal(JSON.parse(await b.beacons[0].blob.text()).ticket, "t-3");
    p.stop();
  } finally {
    mock.timers.reset();
  }
});

test("without sendBeacon, or when it is refused, the end goes by keepalive fetch", async () => {
  mock.timers.enable({ apis: ["setInterval", "setTimeout"] });
  try {
    for (const navigator of [{ userAgent: "x" }, { userAgent: "x", sendBeacon: () => false }]) {
      const b = browser();
      const api = ingest();
      const p = client(b, api, { t: 5_000_000 }, { navigator });
      await settle();
      b.win.dispatch("pagehide", { persisted: false });
      await settle();
      const ends = api.requests.filter((r) => r.url.endsWith("/v1/activity/end"));
      assert.equal(ends.length, 1);
      assert.equal(ends[0].keepalive, true);
      assert.equal(ends[0].auth, undefined, "no Authorization header: the ticket stands in for it");
      assert.equal(ends[0].body.ticket, "t-1");
      p.stop();
    }
  } finally {
    mock.timers.reset();
  }
});

test("without a ticket a closing tab sends nothing it could not prove", async () => {
  mock.timers.enable({ apis: ["setInterval", "setTimeout"] });
  try {
    const b = browser();
    const api = ingest([], { tickets: false });
    const errors = [];
    const p = client(b, api, { t: 6_000_000 }, { onError: (e) => errors.push(e) });
    await settle();
    b.win.dispatch("pagehide", { persisted: false });
    await settle();
    assert.equal(b.beacons.length, 0);
    assert.equal(api.requests.filter((r) => r.url.endsWith("/v1/activity/end")).length, 0);
    p.stop();
  } finally {
    mock.timers.reset();
  }
});

test("events refused for good (a 4xx other than 401 and 429) are dropped, not retried", async () => {
  mock.timers.enable({ apis: ["setInterval", "setTimeout"] });
  try {
    const b = browser();
    const api = ingest([400]);
    const errors = [];
    const p = client(b, api, { t: 7_000_000 }, { onError: (e) => errors.push(String(e)) });
    await settle();
    assert.equal(p.pending(), 0, "the refused session start is not kept");
    const refused = api.events()[0].event_id;
    mock.timers.tick(60_000);
    await settle();
    const sent = api.events();
    assert.equal(
      sent.filter((e) => e.event_id === refused).length,
      1,
      "the refused event is never sent again",
    );
    assert.deepEqual(errors, ["Error: events refused with 400"]);
    // Later events go out on their own.
    assert.ok(sent.length > 1, "a later heartbeat was sent");
    assert.ok(sent.slice(1).every((e) => e.kind === "heartbeat"), JSON.stringify(sent));
    p.stop();
  } finally {
    mock.timers.reset();
  }
});
