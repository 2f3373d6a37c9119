// The overlay's behaviour (the page's Content-Security-Policy allows no inline script).
"use strict";
// ---- options ----
const query = new URLSearchParams(location.search);
const corner = ["tl", "tr", "bl", "br"].includes(query.get("corner")) ? query.get("corner") : "br";
const theme = ["dark", "light", "neon"].includes(query.get("theme")) ? query.get("theme") : "dark";
const fadeSeconds = Number.isFinite(Number(query.get("fade"))) && query.get("fade") !== null ? Number(query.get("fade")) : 30;
const display = ["both", "raw", "volts"].includes(query.get("display")) ? query.get("display") : "both";
const scale = Math.min(3, Math.max(0.5, Number(query.get("scale")) || 1));
const moduleFilter = (query.get("modules") || "").split(",").map(s => s.trim().toLowerCase()).filter(Boolean);
const FIGHT_MS = 3000;
document.body.classList.add("corner-" + corner, "theme-" + theme);
document.documentElement.style.setProperty("--scale", String(scale));

// ---- state ----
const el = id => document.getElementById(id);
let state = { parameters: {}, routes: {}, overlay_enabled: true, emergency: { active: false, message: null } };
const seen = new Map();       // variable -> { user, at } for idle fading and fight detection
let connected = false;
// The server's wall clock minus ours, measured at each snapshot: ramps start at server times.
let clockOffset = 0;

function moduleOf(variable) { return variable.split(".")[0]; }          // "doorway#1"
function shown(variable) {
  if (!moduleFilter.length) return true;
  const mod = moduleOf(variable).toLowerCase();
  return moduleFilter.some(f => f === mod || f === mod.split("#")[0]);
}
function text(tag, cls, content) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  node.textContent = content;
  return node;
}
function short(x) { return String(Number(x.toFixed(2))); }                // 2, 0.5, 12.25
function percent(value) { return (Math.max(0, Math.min(127, value)) / 127 * 100).toFixed(1) + "%"; }
// What a command asked for, as the latest-command line says it: "→ 100 over 2 s".
function target(p) { return "→ " + p.value + (p.ramp ? " over " + short(p.ramp.ms / 1000) + " s" : ""); }

// ---- motion ----
// How far through its ramp `p` is now, 0 to just below 1; null without a ramp, once it is over, or
// while an emergency stop holds its output (a resume picks the ramp up where time has got to).
function rampProgress(p) {
  if (!p.ramp || !(p.ramp.ms > 0) || p.held) return null;
  const t = (Date.now() + clockOffset - p.timestamp) / p.ramp.ms;
  return t >= 1 ? null : Math.max(0, t);
}
// A ramping row at `t`: the fill where the value has got to, the bar's progress in percent.
function showRamp(row, p, t) {
  row.querySelector(".fill").style.width = percent(p.ramp.from + (p.value - p.ramp.from) * t);
  row.querySelector(".bar").setAttribute("aria-valuenow", String(Math.round(t * 100)));
}
let animating = false;
function animate() {
  animating = false;
  let finished = false;
  for (const row of document.querySelectorAll(".param.ramping")) {
    const p = state.parameters[row.dataset.variable];
    const t = rampProgress(p);
    showRamp(row, p, t === null ? 1 : t);
    finished = finished || t === null;
  }
  if (finished) render();   // a finished ramp shows just its value again
  else animateSoon();
}
function animateSoon() {
  if (animating || !document.querySelector(".param.ramping")) return;
  animating = true;
  requestAnimationFrame(animate);
}

function renderParam(variable, p) {
  const row = document.createElement("div");
  row.className = "param";
  row.dataset.variable = variable;
  const name = variable.slice(variable.indexOf(".") + 1);
  const bar = document.createElement("div");
  bar.className = "bar";
  const fill = document.createElement("div");
  fill.className = "fill";
  fill.style.width = percent(p.value);
  const volts = p.voltage === null || p.voltage === undefined ? "" : p.voltage.toFixed(2) + " V";
  const number = display === "raw" ? String(p.value) : display === "volts" ? (volts || String(p.value))
               : String(p.value);
  const num = document.createElement("span");
  num.className = "num";
  const t = rampProgress(p);
  if (t === null) bar.append(fill);
  else {
    // On its way: the stretch it travels, a tick at the target, the fill where it has got to, and
    // "→" before the target's number; `animate` moves it.
    row.classList.add("ramping");
    const low = Math.min(p.ramp.from, p.value), high = Math.max(p.ramp.from, p.value);
    const path = document.createElement("div");
    path.className = "path";
    path.style.left = percent(low);
    path.style.width = percent(high - low);
    const tick = document.createElement("div");
    tick.className = "tick";
    tick.style.left = percent(p.value);
    bar.append(path, fill, tick);
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    num.append(text("span", "to", "→ "));
  }
  num.append(text("span", "value", number));
  const meta = document.createElement("div");
  meta.className = "meta";
  const slew = p.route && state.slew ? state.slew[p.route] : 0;
  if (display !== "raw") {
    meta.append(volts ? (p.held ? "held at " : "") + volts + (p.route ? " on " + p.route : "") : "not routed");
    if (slew > 0) meta.append(text("span", "slew", " · slew " + short(slew) + " V/s"));
    meta.append(" · ");
  }
  meta.append("by ", text("span", "who", p.user));
  if (p.remote) meta.append(text("span", "remote", " via " + p.source_instance));
  row.append(text("span", "name", name), bar, num, meta);
  if (t !== null) showRamp(row, p, t);
  return row;
}

function render() {
  el("root").hidden = !state.overlay_enabled;
  el("estop").hidden = !state.emergency.active;
  el("estop-message").textContent = state.emergency.message || "outputs held at safe values";
  // Every routed output and the voltage it is held at, as text (never HTML).
  const held = Object.entries(state.emergency.held || {}).map(([o, v]) => o + " " + v.toFixed(2) + " V");
  el("estop-held").textContent = held.join(" · ");
  el("conn").textContent = connected ? "live" : "reconnecting…";
  el("conn").className = connected ? "" : "down";
  const groups = new Map();
  for (const [variable, p] of Object.entries(state.parameters).sort(([a], [b]) => a.localeCompare(b))) {
    if (!shown(variable) || !routedShown(variable)) continue;
    const mod = moduleOf(variable);
    if (!groups.has(mod)) groups.set(mod, []);
    groups.get(mod).push([variable, p]);
  }
  const sections = [];
  for (const [mod, params] of groups) {
    const section = document.createElement("section");
    section.className = "module";
    section.append(text("h2", "", mod.replace("#", " #")));
    for (const [variable, p] of params) section.append(renderParam(variable, p));
    sections.push(section);
  }
  el("modules").replaceChildren(...sections);
  el("empty").hidden = groups.size > 0;
  renderHint();
  markIdle();
  animateSoon();
  renderShow();
}

function markIdle() {
  if (!(fadeSeconds > 0)) return;
  const now = Date.now();
  for (const row of document.querySelectorAll(".param")) {
    const s = seen.get(row.dataset.variable);
    const moving = row.classList.contains("ramping");
    row.classList.toggle("idle", !moving && (!s || now - s.at > fadeSeconds * 1000));
  }
}
setInterval(markIdle, 1000);

function latest(message, fight) {
  el("latest").textContent = message;
  el("latest").className = fight ? "fight" : "";
}

function flash(variable) {
  for (const row of document.querySelectorAll(".param")) {
    if (row.dataset.variable === variable) {
      row.classList.remove("fight");
      void row.offsetWidth; // restart the animation
      row.classList.add("fight");
    }
  }
}

// ---- show control: democracy's votes, the mode badge, locks ----
// Kept apart from the rows' own drawing: `render` calls `renderShow` last, `applyUpdate` hands
// votes to `applyVote`, and a timer counts the windows down.
function serverNow() { return Date.now() + clockOffset; }
// The lock holding `variable` still, if any: "all", its module instance ("doorway#1") or its name.
function lockedBy(variable) {
  return (state.locks || []).find(t => t === "all" || t === moduleOf(variable) || t === variable) || null;
}
// The parameters being voted on whose window has not closed yet by the server's clock, by name.
function openVotes() {
  const now = serverNow();
  return Object.entries(state.votes || {})
    .filter(([variable, v]) => shown(variable) && routedShown(variable) && v.closes_at_ms > now)
    .sort(([a], [b]) => a.localeCompare(b));
}
// Never more than a whole window: the clock offset is measured a snapshot's transit time late.
function secondsLeft(v) {
  const window = (state.mode && state.mode.window_ms) || 0;
  const left = Math.min(v.closes_at_ms - serverNow(), window);
  return Math.max(0, Math.ceil(left / 1000)) + "s";
}
function renderVote(variable, v) {
  const row = document.createElement("div");
  row.className = "vote";
  row.dataset.vote = variable;
  row.append(text("span", "name", variable), text("span", "count", v.votes + (v.votes === 1 ? " vote" : " votes")),
             text("span", "median", "median " + v.median), text("span", "left", secondsLeft(v)));
  return row;
}
function renderShow() {
  const mode = state.mode || { mode: "anarchy" };
  const democracy = mode.mode === "democracy" && mode.window_ms > 0;
  el("mode").hidden = !democracy;
  el("mode").textContent = democracy ? "democracy " + short(mode.window_ms / 1000) + "s" : "";
  const votes = democracy ? openVotes() : [];
  el("votes").replaceChildren(...votes.map(([variable, v]) => renderVote(variable, v)));
  el("votes").hidden = votes.length === 0;
  for (const row of document.querySelectorAll(".param")) {
    const lock = lockedBy(row.dataset.variable);
    row.classList.toggle("locked", lock !== null);
    const mark = row.querySelector(".lock");
    if (lock === null) { if (mark) mark.remove(); continue; }
    // A padlock drawn by the stylesheet, so it needs no emoji font (OBS on Linux often has none).
    const shownMark = mark || text("span", "lock", "");
    shownMark.title = lock + " is locked";
    shownMark.setAttribute("aria-label", shownMark.title);
    if (!mark) row.querySelector(".name").prepend(shownMark);
  }
}
function applyVote(u) {
  state.votes = Object.assign({}, state.votes, { [u.variable]: u.vote });
  renderShow();
}
// Counts each window down; a window that closed leaves the list (its result arrives as a value).
function tickVotes() {
  let closed = false;
  for (const row of document.querySelectorAll("#votes .vote")) {
    const v = (state.votes || {})[row.dataset.vote];
    if (!v || v.closes_at_ms <= serverNow()) closed = true;
    else row.querySelector(".left").textContent = secondsLeft(v);
  }
  if (closed) renderShow();
}
setInterval(tickVotes, 250);

// ---- teaching: `?hint=1` says what to type, `?routed=1` shows only routed parameters ----
const hintWanted = query.get("hint") === "1";
const routedOnly = query.get("routed") === "1";
// For when nothing is routed: `#1` of the first named parameter of the first module that has one
// (the catalogue lists modules by name), as the bot's `!cv help` picks it.
let catalogExample = null;
let exampleValue = 89;
function routedShown(variable) {
  return !routedOnly || Object.values(state.routes || {}).includes(variable);
}
// The standing line, from the first route (by output) when there is one: typing that moves something.
function renderHint() {
  const routes = state.routes || {};
  const first = Object.keys(routes).sort()[0];
  const name = first === undefined ? catalogExample : routes[first];
  el("hint").hidden = !hintWanted || !name;
  el("hint").textContent = name ? "type " + name + ": " + exampleValue + " in chat" : "";
}
function loadExample() {
  if (!hintWanted) return;
  fetch("/api/catalog").then(r => r.json()).then(c => {
    const named = c.modules.find(m => m.parameters.length > 0);
    const module = named || c.modules[0];
    if (module) catalogExample = module.name + "#1." + (named ? named.parameters[0] : "inputJack#1");
    exampleValue = Math.round(c.value_max * 7 / 10);
    renderHint();
  }).catch(() => setTimeout(loadExample, 2000));
}

// ---- events ----
function applySnapshot(s) {
  if (Number.isFinite(s.server_time_ms)) clockOffset = s.server_time_ms - Date.now();
  state = s;
  seen.clear();
  const now = Date.now();
  for (const [variable, p] of Object.entries(s.parameters)) {
    seen.set(variable, { user: p.user, at: Math.min(now, p.timestamp - clockOffset) });
  }
  render();
}

function applyUpdate(u) {
  if (u.type === "parameter") {
    const p = u.parameter;
    const before = seen.get(u.variable);
    const now = Date.now();
    const fight = before && before.user !== p.user && now - before.at < FIGHT_MS;
    state.parameters[u.variable] = p;
    seen.set(u.variable, { user: p.user, at: now });
    render();
    if (fight) {
      flash(u.variable);
      latest("⚔ " + before.user + " vs " + p.user + " on " + u.variable + " " + target(p), true);
    } else {
      latest(p.user + ": " + u.variable + " " + target(p), false);
    }
  } else if (u.type === "state") {
    const keep = state;
    state = u.state;
    for (const variable of Object.keys(keep.parameters)) if (!(variable in state.parameters)) seen.delete(variable);
    render();
    latest(u.action, false);
  } else if (u.type === "vote") {
    applyVote(u);
  } else if (u.type === "overlay") {
    state.overlay_enabled = u.enabled;
    render();
  } else if (u.type === "emergency") {
    state.emergency = { active: u.active, message: u.message };
    render();
    latest(u.active ? "EMERGENCY STOP" + (u.message ? ": " + u.message : "") : "resumed", false);
  }
}

// The browser reconnects an EventSource by itself (with Last-Event-ID) after a dropped connection,
// but gives up for good on a non-200 answer (e.g. while the bot restarts); then we make a new one.
let source = null;
let lastId = null;
function connect() {
  const url = "/events" + (lastId ? "?last_event_id=" + encodeURIComponent(lastId) : "");
  source = new EventSource(url);
  source.addEventListener("snapshot", e => { lastId = e.lastEventId; connected = true; applySnapshot(JSON.parse(e.data)); });
  source.addEventListener("update", e => { lastId = e.lastEventId; connected = true; applyUpdate(JSON.parse(e.data)); });
  source.onopen = () => { connected = true; render(); };
  source.onerror = () => {
    connected = false;
    render();
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      setTimeout(connect, 1000);
    }
  };
}
render();   // shows "connecting…" until the first snapshot says what to show
connect();
loadExample();
