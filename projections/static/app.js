// The sessionfold dashboard: reads the projections' JSON routes with the
// signed-in token and applies /v1/stream changes as they arrive.
"use strict";

const state = {
  token: sessionStorage.getItem("sessionfold-token"),
  users: new Map(),       // user_id -> user JSON, from the active list and the stream
  lastEventId: null,
  stream: null,           // AbortController of the live stream
  room: null,             // the room whose members are shown
};

const $ = (sel) => document.querySelector(sel);
const windowMs = { "5m": 300e3, "15m": 900e3, "1h": 3600e3, "4h": 14400e3 };

function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch (_) {
    return null;
  }
}

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` } });
  if (r.status === 401) {
    signOut("The token was refused (missing, expired or wrongly signed).");
    throw new Error("unauthorized");
  }
  return { status: r.status, body: await r.json() };
}

function text(v) {
  return v === null || v === undefined ? "" : String(v);
}

function cell(row, value, cls) {
  const td = row.insertCell();
  td.textContent = text(value);
  if (cls) td.className = cls;
  return td;
}

function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  return `${Math.floor(s / 3600)}h ago`;
}

// The API's rule for "active in the window": a session that started, was not
// ended by a logout or a closed tab, and saw activity inside the window. The
// list, its header and the counts below all use it, so they agree.
function inWindow(s, horizon) {
  return s.started_at !== null && s.ended_reason !== "logout" && s.ended_reason !== "closed" &&
    Date.parse(s.last_activity) > horizon;
}

function renderUsers() {
  const win = windowMs[$("#window").value];
  const horizon = Date.now() - win;
  const rows = [...state.users.values()]
    .map((u) => ({ u, s: u.sessions.find((s) => inWindow(s, horizon)) }))
    .filter((r) => r.s)
    .sort((a, b) => Date.parse(b.u.last_seen) - Date.parse(a.u.last_seen));
  const body = $("#users tbody");
  body.replaceChildren();
  for (const { u, s } of rows) {
    const tr = body.insertRow();
    tr.dataset.user = u.user_id;
    const dot = tr.insertCell().appendChild(document.createElement("span"));
    dot.className = `dot ${u.online ? "on" : "off"}`;
    dot.title = u.online ? "online" : "idle or ended";
    cell(tr, u.full_name || u.user_id);
    cell(tr, u.email);
    cell(tr, s.device_type);
    cell(tr, s.browser);
    cell(tr, s.current_page);
    cell(tr, ago(u.last_seen));
  }
  $("#total").textContent = `(${rows.length})`;
  $("#total").title = `users with a session active in the last ${$("#window").selectedOptions[0].text}`;
}

async function loadUsers() {
  const win = $("#window").value;
  const { status, body } = await api(`/v1/presence/active?window=${win}&limit=1000`);
  if (status === 403) {
    // A plain user sees only their own presence.
    const me = claims(state.token);
    const own = await api(`/v1/presence/users/${encodeURIComponent(me.sub)}`);
    state.users = new Map(own.status === 200 ? [[me.sub, own.body]] : []);
    $("#users-note").textContent = "Your token may only see your own presence.";
    $("#counts").hidden = true;
  } else {
    state.users = new Map(body.users.map((u) => [u.user_id, u]));
    $("#users-note").textContent = body.next_cursor ? `Showing the ${body.users.length} most recent of ${body.total}.` : "";
    $("#counts").hidden = false;
  }
  renderUsers();
}

function fillCounts(sel, counts) {
  const body = $(sel + " tbody");
  body.replaceChildren();
  for (const [k, n] of Object.entries(counts).sort((a, b) => b[1] - a[1])) {
    const tr = body.insertRow();
    cell(tr, k);
    cell(tr, n);
  }
}

async function loadSummary() {
  const { status, body } = await api(`/v1/presence/summary?window=${$("#window").value}`);
  if (status !== 200) return;
  fillCounts("#by-device", body.by_device);
  fillCounts("#by-browser", body.by_browser);
}

async function loadMonitor() {
  const { status, body } = await api("/v1/imports/monitor");
  $("#imports").hidden = status !== 200;
  if (status !== 200) return;
  const tbody = $("#monitor tbody");
  tbody.replaceChildren();
  for (const i of body.imports) {
    const tr = tbody.insertRow();
    cell(tr, `${i.file_name} (${i.import_id})`);
    cell(tr, i.owner_id === null ? "legacy" : i.owner_id);
    cell(tr, i.owner_email);
    cell(tr, i.step);
    cell(tr, `${i.progress}%`);
    cell(tr, `${i.questions_imported} / ${i.questions_total}`);
    cell(tr, `${i.hours_since_access} h`);
    cell(tr, i.stale ? "stale" : "", "stale");
  }
}

// A line chart of online users a minute, drawn as SVG from the projections' own series.
async function loadOnline() {
  const { status, body } = await api("/v1/presence/online");
  $("#online-section").hidden = status !== 200;
  if (status !== 200) return;
  const pts = body.points;
  const svg = $("#online-chart");
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const W = 600, H = 160, L = 36, B = 20;
  const max = Math.max(1, ...pts.map((p) => p.online));
  const end = Date.parse(body.as_of);
  const x = (iso) => L + ((Date.parse(iso) - (end - 3600000)) / 3600000) * (W - L - 4);
  const y = (n) => H - B - (n / max) * (H - B - 8);
  const el = (name, attrs, text) => {
    const e = document.createElementNS(ns, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  el("line", { x1: L, y1: H - B, x2: W - 4, y2: H - B, class: "axis" });
  el("line", { x1: L, y1: 8, x2: L, y2: H - B, class: "axis" });
  el("text", { x: L - 4, y: y(max) + 4, class: "tick", "text-anchor": "end" }, String(max));
  el("text", { x: L - 4, y: H - B + 4, class: "tick", "text-anchor": "end" }, "0");
  el("text", { x: L, y: H - 4, class: "tick" }, "−60 min");
  el("text", { x: W - 4, y: H - 4, class: "tick", "text-anchor": "end" }, "now");
  if (pts.length) {
    el("polyline", {
      class: "series",
      points: pts.map((p) => `${x(p.minute).toFixed(1)},${y(p.online).toFixed(1)}`).join(" "),
    });
    for (const p of pts) el("circle", { cx: x(p.minute), cy: y(p.online), r: 2, class: "pt" }).setAttribute("data-online", p.online);
  }
  const last = pts.at(-1);
  $("#online-now").textContent = last ? last.online : "";
  $("#online-note").textContent = pts.length ? `${pts.length} minute(s) recorded since the projections started` : "no samples yet";
}

async function loadRooms() {
  const { status, body } = await api("/v1/presence/rooms?limit=20");
  if (status !== 200) return;
  const tbody = $("#rooms tbody");
  tbody.replaceChildren();
  for (const r of body.rooms) {
    const tr = tbody.insertRow();
    tr.dataset.room = r.room;
    tr.className = r.room === state.room ? "picked" : "";
    cell(tr, r.room);
    cell(tr, r.users);
    cell(tr, r.sessions);
    tr.addEventListener("click", () => { state.room = r.room; loadRooms(); loadRoom(); });
  }
  if (!state.room && body.rooms.length) { state.room = body.rooms[0].room; loadRoom(); }
}

async function loadRoom() {
  if (!state.room) return;
  const { status, body } = await api(`/v1/presence/rooms/${encodeURIComponent(state.room)}`);
  const tbody = $("#room-members tbody");
  tbody.replaceChildren();
  $("#room-title").textContent = status === 200 ? `${state.room}: ${body.users} user(s), ${body.sessions} session(s)` : `${state.room}: nobody`;
  if (status !== 200) return;
  for (const m of body.members) {
    const tr = tbody.insertRow();
    cell(tr, m.user_id);
    cell(tr, Object.entries(m.devices).map(([d, n]) => `${d} ×${n}`).join(", "));
    cell(tr, ago(m.last_activity));
  }
}

// Coalesces reloads triggered by bursts of stream events.
const pending = {};
function soon(name, fn) {
  if (pending[name]) return;
  pending[name] = setTimeout(() => { pending[name] = null; fn().catch(() => {}); }, 1000);
}

function setConnected(up) {
  const c = $("#conn");
  // Before sign-in there is no stream to be down: say nothing.
  c.hidden = !state.token;
  c.className = `conn ${up ? "up" : "down"}`;
  c.textContent = up ? "● live" : "● disconnected";
  c.title = "";
}

// The stream says how fresh the views are; past 10 s the page says so.
function showFreshness(f) {
  const c = $("#conn");
  if (c.className !== "conn up") return;
  const behind = f.staleness_ms == null ? null : Math.round(f.staleness_ms / 1000);
  const stale = behind == null || behind > 10;
  c.textContent = stale ? `● live, ${behind == null ? "not yet caught up" : `${behind} s behind`}` : "● live";
  c.title = f.fresh_as_of ? `holds every change up to ${f.fresh_as_of}` : "";
}

function onEvent(ev) {
  if (ev.id) state.lastEventId = ev.id;
  if (ev.event === "presence") {
    const d = JSON.parse(ev.data);
    if (d.user) state.users.set(d.user_id, d.user);
    else state.users.delete(d.user_id);
    renderUsers();
    soon("summary", loadSummary);
  } else if (ev.event === "room") {
    soon("rooms", loadRooms);
    const d = JSON.parse(ev.data);
    if (d.room === state.room) soon("room", loadRoom);
  } else if (ev.event === "import") {
    soon("monitor", loadMonitor);
  } else if (ev.event === "resync") {
    reloadAll();
  } else if (ev.event === "freshness") {
    showFreshness(JSON.parse(ev.data));
  }
}

// EventSource cannot send an Authorization header, so the stream is read with fetch.
async function follow() {
  const ctl = new AbortController();
  state.stream = ctl;
  let wait = 500;
  while (!ctl.signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
      if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
      const r = await fetch("/v1/stream", { headers, signal: ctl.signal });
      if (r.status === 401) { signOut("The token was refused."); return; }
      if (!r.ok) throw new Error(`stream answered ${r.status}`);
      setConnected(true);
      wait = 500;
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const ev = { event: "message", data: "", id: null };
          for (const line of block.split("\n")) {
            if (line.startsWith("id:")) ev.id = line.slice(3).trim();
            else if (line.startsWith("event:")) ev.event = line.slice(6).trim();
            else if (line.startsWith("data:")) ev.data += line.slice(5).trimStart();
          }
          if (ev.data) onEvent(ev);
        }
      }
    } catch (_) {
      // Reconnect below.
    }
    setConnected(false);
    if (ctl.signal.aborted) return;
    await new Promise((res) => setTimeout(res, wait));
    wait = Math.min(wait * 2, 10000);
  }
}

async function reloadAll() {
  await Promise.all([loadUsers(), loadSummary(), loadMonitor(), loadOnline(), loadRooms(), loadRoom()]);
}

function signOut(message) {
  sessionStorage.removeItem("sessionfold-token");
  state.token = null;
  if (state.stream) state.stream.abort();
  setConnected(false);
  $("#app").hidden = true;
  $("#signout").hidden = true;
  $("#who").textContent = "";
  $("#signin").hidden = false;
  $("#signin-error").textContent = message || "";
}

async function start() {
  const c = claims(state.token);
  if (!c || !c.sub) { signOut("That is not a JWT."); return; }
  $("#who").textContent = `${c.sub}${(c.roles || []).length ? " (" + c.roles.join(", ") + ")" : ""}`;
  $("#signin").hidden = true;
  $("#signout").hidden = false;
  $("#app").hidden = false;
  try {
    await reloadAll();
  } catch (_) {
    return;
  }
  follow();
}

$("#signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = $("#token").value.trim();
  sessionStorage.setItem("sessionfold-token", state.token);
  start();
});
$("#signout").addEventListener("click", () => signOut());
$("#window").addEventListener("change", () => { loadUsers(); loadSummary(); });
// "Last seen" and the window move with the clock; the chart gains a point a minute.
setInterval(renderUsers, 5000);
setInterval(() => { if (state.token) loadOnline().catch(() => {}); }, 15000);

if (state.token) start(); else signOut();
