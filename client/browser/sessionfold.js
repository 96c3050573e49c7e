// sessionfold browser client: one session per tab, heartbeats while the
// tab is visible and its user active, page views on navigation, and a
// session end that survives the tab closing. No dependencies; an ES module
// for a <script type="module"> or a bundler.

/** Which browser input counts as which schema activity kind. */
export const INPUT_KINDS = Object.freeze({
  mousemove: "mouse",
  mousedown: "click",
  click: "click",
  keydown: "keyboard",
  scroll: "scroll",
  wheel: "scroll",
  touchstart: "click",
  touchmove: "scroll",
});

/** Defaults of `start`; every duration in milliseconds. */
export const DEFAULTS = Object.freeze({
  heartbeatInterval: 30_000,
  idleAfter: 60_000,
  retryMin: 1_000,
  retryMax: 30_000,
  ticketRefresh: 5 * 60_000,
});

/**
 * Whether a heartbeat is due at `now`: the tab is visible, the user did
 * something within `idleAfter`, and `interval` has passed since the last one.
 * Pure, so the timing rules are tested without a browser.
 */
export function heartbeatDue(s, now, interval, idleAfter) {
  if (!s.visible || s.ended) return false;
  if (s.lastInput === null || now - s.lastInput >= idleAfter) return false;
  return s.lastBeat === null || now - s.lastBeat >= interval;
}

/** The delay before retry `attempt` (1, 2, …): doubling, capped. */
export function retryDelay(attempt, min, max) {
  return Math.min(max, min * 2 ** Math.max(0, attempt - 1));
}

/** The browser family a user agent names, the way people say it. */
export function browserFamily(ua) {
  if (/Edg\//.test(ua)) return "Edge";
  if (/OPR\//.test(ua)) return "Opera";
  if (/Firefox\//.test(ua)) return "Firefox";
  if (/Chrom(e|ium)\//.test(ua)) return "Chrome";
  if (/Safari\//.test(ua)) return "Safari";
  return undefined;
}

function randomId() {
  if (globalThis.crypto && typeof globalThis.crypto.randomUUID === "function") {
    return globalThis.crypto.randomUUID();
  }
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/**
 * Starts presence for this tab. Options: `ingestUrl` (the producer's base
 * URL), `token` (a function returning a promise of a fresh bearer token),
 * `userId`, and optionally `email`, `sessionId`, `page` (a function giving
 * the current page; default `location.pathname`), `heartbeatInterval`,
 * `idleAfter`, `onError`. Returns `{sessionId, end(reason), stop()}`.
 */
export function start(options) {
  const o = { ...DEFAULTS, ...options };
  if (!o.ingestUrl || typeof o.token !== "function" || !o.userId) {
    throw new TypeError("start needs ingestUrl, token (a function) and userId");
  }
  const win = o.window ?? globalThis.window;
  const doc = o.document ?? win?.document;
  const fetchFn = o.fetch ?? globalThis.fetch.bind(globalThis);
  const now = o.now ?? (() => Date.now());
  const base = o.ingestUrl.replace(/\/+$/, "");
  const page = o.page ?? (() => win?.location?.pathname ?? "/");
  const sessionId = o.sessionId ?? randomId();
  const state = {
    visible: doc ? doc.visibilityState !== "hidden" : true,
    lastInput: now(),
    lastBeat: null,
    lastKind: "timer",
    ended: false,
    page: page(),
  };
  const queue = [];
  let attempt = 0;
  let retryTimer = null;
  let ticket = null;
  let token = null;
  const cleanups = [];

  const listen = (target, type, fn, opts) => {
    if (!target?.addEventListener) return;
    target.addEventListener(type, fn, opts);
    cleanups.push(() => target.removeEventListener(type, fn, opts));
  };
  const report = (e) => {
    if (typeof o.onError === "function") o.onError(e);
  };

  // One token request at a time, shared by every request waiting for it.
  function bearer() {
    if (!token) {
      token = Promise.resolve().then(o.token);
      token.catch(() => {
        token = null;
      });
    }
    return token;
  }

  // A 401 asks the app for a new token once (unless another request has
  // already done so) and sends again.
  async function post(path, body) {
    const send = async (t) =>
      fetchFn(`${base}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${t}` },
        body: JSON.stringify(body),
      });
    const used = bearer();
    const r = await send(await used);
    if (r.status !== 401) return r;
    if (token === used) token = null;
    return send(await bearer());
  }

  // Events leave in order, in one request while several wait; a failed
  // request is sent again with the same event ids, so nothing is doubled.
  // `flush` answers when the queue is empty or a retry is scheduled.
  let draining = null;
  function flush() {
    if (!draining) {
      draining = drain().finally(() => {
        draining = null;
      });
    }
    return draining;
  }

  async function drain() {
    while (queue.length > 0) {
      const batch = queue.slice();
      try {
        const r = await post("/v1/activity", { events: batch });
        if (r.status !== 202 && (r.status < 400 || r.status >= 500 || r.status === 429)) {
          throw new Error(`ingest answered ${r.status}`);
        }
        // Accepted, or refused for good (the answer says why): either way
        // these events are done.
        queue.splice(0, batch.length);
        attempt = 0;
        if (r.status !== 202) report(new Error(`events refused with ${r.status}`));
      } catch (e) {
        attempt += 1;
        report(e);
        clearTimeout(retryTimer);
        retryTimer = setTimeout(flush, retryDelay(attempt, o.retryMin, o.retryMax));
        return;
      }
    }
  }

  function emit(kind, fields) {
    if (state.ended) return;
    queue.push({
      event_id: randomId(),
      kind,
      user_id: o.userId,
      session_id: sessionId,
      occurred_at: new Date(now()).toISOString(),
      ...fields,
    });
    flush();
  }

  async function refreshTicket() {
    try {
      const r = await post(`/v1/sessions/${encodeURIComponent(sessionId)}/end-ticket`, {});
      if (r.ok) ticket = (await r.json()).ticket;
    } catch (e) {
      report(e);
    }
  }

  function beat(kind) {
    state.lastBeat = now();
    emit("heartbeat", { activity: kind, page: state.page });
  }

  function tick() {
    if (heartbeatDue(state, now(), o.heartbeatInterval, o.idleAfter)) beat(state.lastKind);
  }

  function input(ev) {
    state.lastInput = now();
    state.lastKind = INPUT_KINDS[ev.type] ?? "mouse";
    // The first input after a quiet spell is news: say so at once.
    if (state.lastBeat === null || now() - state.lastBeat >= o.heartbeatInterval) tick();
  }

  function navigated() {
    const p = page();
    if (p === state.page) return;
    state.page = p;
    state.lastInput = now();
    emit("page_viewed", { page: p, title: doc?.title || undefined });
  }

  // The last word of a closing tab: sendBeacon outlives the page and needs
  // no Authorization header; the short-lived end ticket stands in for it.
  function endByBeacon(reason) {
    if (state.ended) return;
    state.ended = true;
    const body = JSON.stringify({
      ticket,
      event_id: randomId(),
      reason,
      occurred_at: new Date(now()).toISOString(),
    });
    const url = `${base}/v1/activity/end`;
    let sent = false;
    if (ticket && nav?.sendBeacon) {
      sent = nav.sendBeacon(url, new Blob([body], { type: "text/plain" }));
    }
    if (!sent && ticket) {
      fetchFn(url, { method: "POST", body, keepalive: true, headers: { "content-type": "text/plain" } })
        .catch(report);
    }
  }

  const nav = o.navigator ?? globalThis.navigator;
  const ua = nav?.userAgent ?? "";
  emit("session_started", {
    email: o.email ?? `${o.userId}@unknown.invalid`,
    page: state.page,
    user_agent: ua || undefined,
    device_type: /iPad|Tablet/i.test(ua) ? "tablet" : /Mobi|Android/i.test(ua) ? "mobile" : "desktop",
    browser: browserFamily(ua),
  });
  refreshTicket();
  const beatTimer = setInterval(tick, Math.max(250, Math.min(o.heartbeatInterval, 5_000)));
  const ticketTimer = setInterval(refreshTicket, o.ticketRefresh);
  cleanups.push(() => clearInterval(beatTimer), () => clearInterval(ticketTimer));
  for (const type of Object.keys(INPUT_KINDS)) listen(win, type, input, { passive: true });
  listen(doc, "visibilitychange", () => {
    state.visible = doc.visibilityState !== "hidden";
    if (state.visible) {
      state.lastInput = now();
      state.lastKind = "visibility";
      beat("visibility");
    }
  });
  listen(win, "popstate", navigated);
  listen(win, "hashchange", navigated);
  listen(win, "pagehide", (ev) => {
    // A page kept in the back/forward cache may come back: not an end.
    if (!ev.persisted) endByBeacon("closed");
  });
  // The history API has no event of its own for pushState/replaceState.
  const history = win?.history;
  for (const name of ["pushState", "replaceState"]) {
    const original = history?.[name];
    if (typeof original !== "function") continue;
    history[name] = function patched(...args) {
      const r = original.apply(this, args);
      navigated();
      return r;
    };
    cleanups.push(() => {
      history[name] = original;
    });
  }

  function stop() {
    clearTimeout(retryTimer);
    for (const c of cleanups.splice(0)) c();
  }

  return {
    sessionId,
    /** Ends the session now (`logout` by default) and stops. */
    async end(reason = "logout") {
      emit("session_ended", { reason });
      state.ended = true;
      await flush();
      stop();
    },
    /** Stops watching without ending the session (it will expire). */
    stop,
    /** Events not yet accepted, for tests and diagnostics. */
    pending: () => queue.length,
  };
}
