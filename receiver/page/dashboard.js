// The dashboard: every room, live, from the receiver's server-sent events; its controls
// post JSON changes back. Plain JavaScript, no build step, like the phone page.

const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => (token ? `${path}?token=${encodeURIComponent(token)}` : path);
const HISTORY = 5 * 60 * 4; // five minutes of updates, four a second
const PEAK_HOLD = 2000; // ms

const cards = new Map(); // room name -> {element, history, peak, peakAt}
let presets = [];

function meterWidth(db) {
  return `${Math.max(0, Math.min(100, ((db + 60) / 60) * 100))}%`;
}

function clock(seconds) {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

async function post(path, body = {}) {
  const response = await fetch(withToken(path), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) alert(await response.text());
  return response;
}

function card(room) {
  const known = cards.get(room.name);
  if (known) return known;
  const element = document.getElementById("room").content.firstElementChild.cloneNode(true);
  element.dataset.room = room.name;
  element.querySelector(".name").textContent = room.name;
  const select = element.querySelector(".preset");
  for (const name of presets) select.add(new Option(name, name));
  const path = `/dashboard/rooms/${encodeURIComponent(room.name)}`;
  element.querySelector(".mute").addEventListener("click", (event) => {
    post(path, { muted: event.currentTarget.getAttribute("aria-pressed") !== "true" });
  });
  const gain = element.querySelector(".gain");
  gain.addEventListener("input", () => {
    element.querySelector(".gain-value").textContent = `${gain.value > 0 ? "+" : ""}${gain.value} dB`;
  });
  gain.addEventListener("change", () => post(path, { gain_db: Number(gain.value) }));
  select.addEventListener("change", () => post(path, { preset: select.value || null }));
  element.querySelector(".end").addEventListener("click", () => post(`${path}/end`));
  element.querySelector(".unpair").addEventListener("click", () => {
    if (confirm(`Unpair ${room.name}? It must pair again to stream here.`)) post(`${path}/unpair`);
  });
  document.getElementById("rooms").append(element);
  const entry = { element, history: [], peak: -120, peakAt: 0 };
  cards.set(room.name, entry);
  return entry;
}

function show(room) {
  const entry = card(room);
  const { element } = entry;
  const live = room.streams.length > 0;
  const stream = room.streams[0] || {};
  const sum = (key) => room.streams.reduce((total, s) => total + (s[key] || 0), 0);
  element.dataset.live = String(live);
  element.dataset.muted = String(room.muted);
  element.querySelector(".state").textContent = live ? (room.muted ? "live, muted" : "live") : "idle";
  element.querySelector(".link").textContent = live
    ? `${stream.transport === "webrtc" ? "WebRTC" : "UDP"}, ${stream.encrypted ? "encrypted" : "plain"}`
    : room.paired ? "paired" : "";
  element.querySelector(".time").textContent = live ? clock(stream.seconds) : "";
  const level = live ? stream.level_db : -120;
  const now = performance.now();
  if (level >= entry.peak || now - entry.peakAt > PEAK_HOLD) {
    entry.peak = level;
    entry.peakAt = now;
  }
  element.querySelector(".bar").style.width = meterWidth(level);
  element.querySelector(".peak").style.left = meterWidth(entry.peak);
  element.querySelector(".level").textContent = live ? `${level.toFixed(0)} dBFS` : "-";
  element.querySelector(".delay").textContent =
    live && stream.delay_ms != null ? `${stream.delay_ms.toFixed(0)} ms` : "-";
  element.querySelector(".lost").textContent = live ? String(sum("lost")) : "-";
  element.querySelector(".repaired").textContent = live
    ? `${sum("recovered")} / ${sum("repaired")}`
    : "-";
  const gaps = element.querySelector(".gaps");
  gaps.textContent = live ? `${sum("gaps")}${sum("gaps") ? ` (${sum("gap_ms").toFixed(0)} ms)` : ""}` : "-";
  gaps.classList.toggle("bad", sum("gaps") > 0);
  element.querySelector(".mute").setAttribute("aria-pressed", String(room.muted));
  element.querySelector(".mute").textContent = room.muted ? "Muted" : "Mute";
  const gain = element.querySelector(".gain");
  if (document.activeElement !== gain) {
    gain.value = String(room.gain_db);
    element.querySelector(".gain-value").textContent = `${room.gain_db > 0 ? "+" : ""}${room.gain_db} dB`;
  }
  const select = element.querySelector(".preset");
  if (document.activeElement !== select) select.value = room.preset || "";
  element.querySelector(".unpair").hidden = !room.paired;
  element.querySelector(".end").disabled = !live;

  entry.history.push({ level, delay: live ? stream.delay_ms : null, lost: sum("lost") });
  if (entry.history.length > HISTORY) entry.history.shift();
  plot(element.querySelector(".history"), entry.history);
}

function plot(canvas, history) {
  // Level (green, -60 to 0 dBFS) and delay (blue, 0 to 200 ms) over the last five minutes;
  // a red tick where packets were lost.
  const g = canvas.getContext("2d");
  const { width, height } = canvas;
  g.clearRect(0, 0, width, height);
  const x = (i) => width - (history.length - 1 - i) * (width / HISTORY);
  const line = (value, color) => {
    g.strokeStyle = color;
    g.lineWidth = 1.5;
    g.beginPath();
    let drawing = false;
    history.forEach((point, i) => {
      const v = value(point);
      if (v == null) {
        drawing = false;
        return;
      }
      const y = height - Math.max(0, Math.min(1, v)) * (height - 4) - 2;
      if (drawing) g.lineTo(x(i), y);
      else g.moveTo(x(i), y);
      drawing = true;
    });
    g.stroke();
  };
  line((p) => (p.level > -119 ? (p.level + 60) / 60 : null), "#2fbf71");
  line((p) => (p.delay == null ? null : p.delay / 200), "#4c9aff");
  g.fillStyle = "#e5484d";
  history.forEach((point, i) => {
    if (i > 0 && point.lost > history[i - 1].lost) g.fillRect(x(i) - 1, 0, 2, 8);
  });
}

function connect() {
  const state = document.getElementById("connection");
  const events = new EventSource(withToken("/dashboard/events"));
  events.onopen = () => {
    state.textContent = "live";
    state.className = "pill live";
  };
  events.onerror = () => {
    state.textContent = "receiver not answering";
    state.className = "pill lost";
  };
  events.onmessage = (message) => {
    const update = JSON.parse(message.data);
    presets = update.presets;
    document.getElementById("empty").hidden = update.rooms.length > 0;
    for (const room of update.rooms) show(room);
  };
}

async function pair() {
  const response = await post("/dashboard/pair");
  if (!response.ok) return;
  const window = await response.json();
  document.getElementById("qr").innerHTML = window.qr;
  document.getElementById("code").textContent = window.code;
  document.getElementById("command").textContent = window.command;
  document.getElementById("pairing-hint").textContent =
    `The code is valid ${window.minutes} minutes; a device that types it wrong ${window.attempts} times is refused.`;
  document.getElementById("pairing").hidden = false;
}

document.getElementById("pair").addEventListener("click", pair);
document.getElementById("pair-close").addEventListener("click", () => {
  document.getElementById("pairing").hidden = true;
});
connect();
