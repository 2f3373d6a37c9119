// The admin page's behaviour (the page's Content-Security-Policy allows no inline script).
"use strict";
const el = id => document.getElementById(id);
const KEY = "cvbot-admin-token";
let token = sessionStorage.getItem(KEY);
let state = null;

function cell(row, content) { const td = document.createElement("td"); td.textContent = content; row.append(td); return td; }
function say(id, message, error) { el(id).textContent = message; el(id).className = "msg" + (error ? " error" : ""); }

async function api(method, path, body) {
  const init = { method, headers: { "Authorization": "Bearer " + token } };
  if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) { logout(data.error || "please log in again"); }
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

async function login() {
  token = el("token").value.trim();
  try {
    await api("GET", "/api/admin/session");
    sessionStorage.setItem(KEY, token);
    start();
  } catch (e) { say("login-msg", e.message, true); }
}
function logout(message) {
  sessionStorage.removeItem(KEY);
  token = null;
  el("app").hidden = true; el("login").hidden = false; el("logout-btn").hidden = true;
  say("login-msg", message || "", true);
}

async function act(id, promise) {
  try { const r = await promise; say(id, r.reply || (r.applied === false ? "refused: " + r.refused : "done"), r.applied === false); }
  catch (e) { say(id, e.message, true); }
}

el("login-btn").onclick = login;
el("token").onkeydown = e => { if (e.key === "Enter") login(); };
el("logout-btn").onclick = () => logout("logged out");
el("estop-btn").onclick = () => act("action-msg", api("POST", "/api/admin/emergency-stop", { message: el("estop-message").value }));
el("resume-btn").onclick = () => act("action-msg", api("POST", "/api/admin/resume", {}));
el("clear-btn").onclick = () => { if (confirm("Clear every parameter?")) act("action-msg", api("POST", "/api/admin/clear", {})); };
el("overlay-btn").onclick = () => act("action-msg", api("POST", "/api/admin/overlay", { enabled: !(state && state.overlay_enabled) }));
// An empty slew field is no limit (0); the server refuses a rate outside 0–1000 V/s and says so.
el("route-btn").onclick = () => act("route-msg", api("PUT", "/api/routes/" + encodeURIComponent(el("route-output").value),
  { variable: el("route-variable").value.trim(), slew: el("route-slew").value === "" ? 0 : Number(el("route-slew").value) }));
el("chat-btn").onclick = () => act("chat-msg", api("POST", "/api/chat", { user: el("chat-user").value, text: el("chat-text").value, badges: ["broadcaster"] }));

// ---- show control: mode, scenes, locks ----
// The window is typed in seconds; the server takes milliseconds and refuses one outside 2–120 s.
el("mode-btn").onclick = () => act("show-msg", api("POST", "/api/admin/mode", el("mode-select").value === "democracy"
  ? { mode: "democracy", window_ms: Math.round(Number(el("mode-window").value) * 1000) } : { mode: "anarchy" }));
el("scene-save-btn").onclick = () => act("show-msg", api("POST", "/api/scenes", { name: el("scene-name").value.trim() }));
el("lock-btn").onclick = () => act("show-msg", api("POST", "/api/locks", { target: el("lock-target").value.trim() }));
function button(label, cls, onclick) {
  const b = document.createElement("button");
  b.textContent = label; b.className = cls; b.onclick = onclick;
  return b;
}
function sceneRow(name, count) {
  const row = document.createElement("tr");
  row.dataset.scene = name;
  cell(row, name); cell(row, String(count));
  const path = "/api/scenes/" + encodeURIComponent(name);
  cell(row, "").append(
    button("recall", "recall", () => act("show-msg", api("POST", path + "/recall", {}))),
    button("delete", "delete", () => { if (confirm("Delete scene " + name + "?")) act("show-msg", api("DELETE", path)); }));
  return row;
}
function lockRow(target) {
  const row = document.createElement("tr");
  row.dataset.lock = target;
  cell(row, target);
  // `#` in a target travels as %23, which encodeURIComponent writes.
  cell(row, "").append(button("unlock", "unlock", () => act("show-msg", api("DELETE", "/api/locks/" + encodeURIComponent(target)))));
  return row;
}
function renderShow() {
  const mode = state.mode || { mode: "anarchy" };
  el("mode-now").textContent = "now: " + mode.mode + (mode.window_ms ? " " + mode.window_ms / 1000 + " s" : "");
  el("scenes").replaceChildren(...Object.entries(state.scenes || {}).map(([name, count]) => sceneRow(name, count)));
  el("locks").replaceChildren(...(state.locks || []).map(lockRow));
}

function render() {
  if (!state) return;
  renderShow();
  el("estop-banner").hidden = !state.emergency.active;
  const held = Object.entries(state.emergency.held || {}).map(([o, v]) => o + " at " + v.toFixed(2) + " V");
  el("estop-banner").textContent = "EMERGENCY STOP ACTIVE" + (state.emergency.message ? ": " + state.emergency.message : "")
    + (held.length ? " — held: " + held.join(", ") : "");
  el("overlay-btn").textContent = state.overlay_enabled ? "overlay is ON: hide it" : "overlay is OFF: show it";
  const routes = [];
  for (const [output, variable] of Object.entries(state.routes)) {
    const row = document.createElement("tr");
    const slew = (state.slew || {})[output];
    cell(row, output); cell(row, variable); cell(row, slew ? slew + " V/s" : "—");
    const button = document.createElement("button");
    button.textContent = "remove";
    button.onclick = () => act("route-msg", api("DELETE", "/api/routes/" + encodeURIComponent(output)));
    cell(row, "").append(button);
    routes.push(row);
  }
  el("routes").replaceChildren(...routes);
  const params = [];
  for (const [variable, p] of Object.entries(state.parameters)) {
    const row = document.createElement("tr");
    cell(row, variable); cell(row, String(p.value));
    cell(row, p.voltage === null ? "—" : (p.held ? "held at " : "") + p.voltage.toFixed(2) + " V");
    cell(row, p.user + (p.remote ? " via " + p.source_instance : ""));
    params.push(row);
  }
  el("params").replaceChildren(...params);
}

let historyTimer = null;
function refreshSoon() { clearTimeout(historyTimer); historyTimer = setTimeout(refreshHistory, 300); }
async function refreshHistory() {
  // History is behind the token (it shows who did what); a 401 logs the page out.
  const h = await api("GET", "/api/events/history?limit=25").catch(() => null);
  if (!h || !h.events) return;
  el("history").replaceChildren(...h.events.map(e => {
    const row = document.createElement("tr");
    cell(row, new Date(e.timestamp).toLocaleTimeString()); cell(row, e.type);
    cell(row, Object.entries(e.data).map(([k, v]) => k + "=" + (v === null ? "—" : v)).join("  "));
    return row;
  }));
}
async function refreshHealth() {
  const h = await fetch("/api/events/health").then(r => r.json()).catch(() => null);
  if (!h) return;
  el("instances").replaceChildren(...h.instances.map(i => { const li = document.createElement("li"); li.textContent = i; return li; }));
  el("health").textContent = "mode " + h.mode + " · redis " + h.redis.status + " · " + h.subscriptions.sse_clients + " live overlay(s)";
}

async function loadCatalog() {
  const c = await fetch("/api/catalog").then(r => r.json());
  el("route-output").replaceChildren(...c.outputs.map(o => {
    const opt = document.createElement("option"); opt.value = o.name; opt.textContent = o.name + " (" + o.range[0] + "…" + o.range[1] + " V)"; return opt;
  }));
  const options = [];
  for (const m of c.modules) for (let i = 1; i <= Math.min(m.instances, 4); i++) for (const p of m.parameters) {
    const opt = document.createElement("option"); opt.value = m.name + "#" + i + "." + p; options.push(opt);
  }
  el("variables").replaceChildren(...options);
}

let source = null;
function connect() {
  source = new EventSource("/events");
  source.addEventListener("snapshot", e => { state = JSON.parse(e.data); live(true); render(); refreshSoon(); });
  source.addEventListener("update", e => {
    const u = JSON.parse(e.data);
    if (!state) return;
    if (u.type === "parameter") state.parameters[u.variable] = u.parameter;
    else if (u.type === "state") state = u.state;
    else if (u.type === "overlay") state.overlay_enabled = u.enabled;
    else if (u.type === "emergency") state.emergency = { active: u.active, message: u.message };
    render(); refreshSoon();
  });
  source.onerror = () => {
    live(false);
    if (source.readyState === EventSource.CLOSED) { source.close(); setTimeout(connect, 1000); }
  };
}
function live(up) {
  el("status").textContent = up ? "live" : "reconnecting…";
  el("status").className = "status" + (up ? "" : " down");
}

function start() {
  el("login").hidden = true; el("app").hidden = false; el("logout-btn").hidden = false;
  loadCatalog(); refreshHealth(); setInterval(refreshHealth, 5000);
  if (!source) connect();
}
if (token) api("GET", "/api/admin/session").then(start).catch(() => {});
