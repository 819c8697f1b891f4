// The phone page: publishes the microphone to this receiver by WHIP (RFC 9725).
// Plain ES module, no build step. State is mirrored on <body data-state> for styling,
// and on window.airmic for the tests that drive this page in Chromium and Firefox:
// idle, connecting, streaming, reconnecting, interrupted (the system took the mic), error.

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token") || "";
const saved = readSaved();

// Settings are remembered where the browser allows; with storage blocked (cookies off, some
// private modes) reading it throws, and the page works without it.
function readSaved() {
  try {
    return JSON.parse(localStorage.getItem("airmic") || "{}");
  } catch {
    return {};
  }
}

function save(values) {
  try {
    localStorage.setItem("airmic", JSON.stringify(values));
  } catch {
    // not remembered: nothing else depends on it
  }
}

const ui = {
  start: $("start"), mute: $("mute"), stop: $("stop"), state: $("state"),
  message: $("message"), receiverName: $("receiver-name"), device: $("device"),
  name: $("name"), preset: $("preset"), presetAbout: $("preset-about"),
  restartHint: $("restart-hint"), ec: $("ec"), ns: $("ns"), agc: $("agc"),
  level: $("level"), peak: $("peak"), levelText: $("level-text"),
  delay: $("delay"), lost: $("lost"), recovered: $("recovered"), heard: $("heard"),
  latency: $("latency"),
};
const FIGURES = [ui.delay, ui.lost, ui.recovered, ui.heard, ui.latency];

const RETRY_MS = [1000, 2000, 4000, 8000];  // reconnection back-off, then every 8 s
const DISCONNECTED_MS = 5000;  // "disconnected" often recovers by itself: wait this long
const MIC_RETRY_MS = 2000;  // a microphone taken away is asked for again this often
const SILENT_POLLS = 3;  // the receiver's view unanswered this many times: say so

let wanted = false;   // the user pressed Start and not Stop
let stream = null;    // the microphone
let pc = null;        // the current peer connection
let resource = null;  // the WHIP session's URL, for stats and DELETE
let retries = 0;
let retryTimer = null;
let dropTimer = null;  // a "disconnected" connection's grace period
let wakeLock = null;
let meterStop = null;
let muted = false;
let receiverName = "";
let unanswered = 0;   // polls of the receiver's view in a row that failed
let micTimer = null;  // asking for a microphone that was taken away
// The receiver's clock against this one, from each poll (NTP's way: the receiver's time
// against the middle of the round trip); the least delayed of the last few is sent back, so
// that the receiver can place this browser's RTCP sender reports, and with them each
// packet's capture, on its own clock: the end-to-end latency.
const CLOCK_SAMPLES = 8;
let clocks = [];

window.airmic = { state: "idle", stats: null, muted: false, microphone: () => stream };

function setState(state, text) {
  window.airmic.state = state;
  document.body.dataset.state = state;
  ui.state.textContent = text || state;
  ui.start.hidden = wanted;
  ui.mute.hidden = ui.stop.hidden = !wanted;
  if (state !== "streaming" && state !== "interrupted") clearFigures();
  showReceiver();
}

function showReceiver() {
  if (!receiverName) return;
  const streaming = window.airmic.state === "streaming" || window.airmic.state === "interrupted";
  ui.receiverName.textContent = streaming ? `Connected to ${receiverName}` :
    `Streams to ${receiverName}`;
}

// What the receiver last said is stale once the stream is not flowing: never shown as now.
function clearFigures() {
  window.airmic.stats = null;
  FIGURES.forEach((f) => { f.textContent = "-"; });
}

function say(text, kind = "error") {
  ui.message.hidden = !text;
  ui.message.textContent = text || "";
  ui.message.className = `message ${kind}`;
}

function settings() {
  return {
    name: ui.name.value.trim(), device: ui.device.value, preset: ui.preset.value,
    ec: ui.ec.checked, ns: ui.ns.checked, agc: ui.agc.checked,
  };
}

function restore() {
  ui.name.value = saved.name || "";
  ui.ec.checked = !!saved.ec;
  ui.ns.checked = !!saved.ns;
  ui.agc.checked = !!saved.agc;
}

async function listPresets() {
  const response = await fetch(`/presets?token=${encodeURIComponent(token)}`);
  if (!response.ok) return;
  const presets = await response.json();
  const about = Object.fromEntries(presets.map((p) => [p.name, p.about]));
  const general = ui.presetAbout.textContent;
  presets.forEach((p) => ui.preset.append(new Option(p.name, p.name)));
  ui.preset.value = about[saved.preset] !== undefined ? saved.preset : "";
  const explainPreset = () => { ui.presetAbout.textContent = about[ui.preset.value] || general; };
  ui.preset.addEventListener("change", explainPreset);
  explainPreset();
}

async function listDevices() {
  const devices = (await navigator.mediaDevices.enumerateDevices())
    .filter((d) => d.kind === "audioinput");
  const chosen = ui.device.value || saved.device || "";
  ui.device.replaceChildren(new Option("default", ""));
  devices.forEach((d, i) => {
    if (d.deviceId && d.deviceId !== "default") {
      ui.device.append(new Option(d.label || `microphone ${i + 1}`, d.deviceId));
    }
  });
  ui.device.value = [...ui.device.options].some((o) => o.value === chosen) ? chosen : "";
}

async function openMicrophone() {
  const s = settings();
  const audio = {
    echoCancellation: s.ec, noiseSuppression: s.ns, autoGainControl: s.agc,
    channelCount: 1, sampleRate: 48000,
  };
  if (s.device) audio.deviceId = { exact: s.device };
  return navigator.mediaDevices.getUserMedia({ audio });
}

function explain(error) {
  switch (error && error.name) {
    case "NotAllowedError":
      return "The browser refused the microphone. Allow it for this page (the lock or " +
        "settings icon next to the address), then press Start again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone found (or the chosen one is gone). Plug one in or pick " +
        "another under Settings.";
    case "NotReadableError":
      return "The microphone is in use by another app or the system. Close it and retry.";
    default:
      return `Could not start: ${error && error.message ? error.message : error}`;
  }
}

// The offer once ICE gathering is over: WHIP sends every candidate in one request.
async function gatheredOffer(connection) {
  await connection.setLocalDescription(await connection.createOffer());
  if (connection.iceGatheringState !== "complete") {
    await new Promise((resolve) => {
      const done = () => {
        if (connection.iceGatheringState === "complete") resolve();
      };
      connection.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 2000);  // enough on a LAN; send what there is
    });
  }
  return connection.localDescription.sdp;
}

async function connect() {
  clearTimeout(retryTimer);
  setState(retries ? "reconnecting" : "connecting", retries ? "reconnecting…" : "connecting…");
  const connection = new RTCPeerConnection({ iceServers: [] });
  pc = connection;
  const [track] = stream.getAudioTracks();
  track.enabled = !muted;
  const transceiver = connection.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  const opus = (RTCRtpSender.getCapabilities("audio")?.codecs || [])
    .filter((c) => c.mimeType.toLowerCase() === "audio/opus");
  if (opus.length && transceiver.setCodecPreferences) transceiver.setCodecPreferences(opus);
  connection.addEventListener("connectionstatechange", () => onConnectionState(connection));

  const { name, preset } = settings();
  const query = new URLSearchParams({ token, name, ...(preset && { preset }) });
  let response;
  try {
    response = await fetch(`/whip?${query}`, {
      method: "POST",
      headers: { "Content-Type": "application/sdp" },
      body: await gatheredOffer(connection),
    });
  } catch (error) {
    return retry(connection, "The receiver cannot be reached (Wi-Fi down, or it stopped).");
  }
  if (response.status === 401) {
    stop();
    return say("This link's token is not accepted: scan the receiver's QR code again.");
  }
  if (response.status !== 201) {
    return retry(connection, `The receiver refused the stream: ${await response.text()}`);
  }
  resource = new URL(response.headers.get("Location"), location.href).pathname;
  await connection.setRemoteDescription({ type: "answer", sdp: await response.text() });
}

function onConnectionState(connection) {
  if (connection !== pc) return;
  const state = connection.connectionState;
  clearTimeout(dropTimer);
  if (state === "connected") {
    retries = 0;
    if (!receiverName) learnReceiver().catch(() => {});  // its name, if the first ask failed
    if (window.airmic.state !== "interrupted") {
      setState("streaming", muted ? "muted" : "streaming");
      say("");
    }
  } else if (state === "disconnected") {
    // A short dropout (Wi-Fi roaming, a burst of loss): ICE often recovers within seconds,
    // and the stream goes on as one. Only a connection that stays down is replaced.
    setState("reconnecting", "connection unsteady…");
    dropTimer = setTimeout(() => retry(connection, "The connection dropped; reconnecting…"),
      DISCONNECTED_MS);
  } else if (state === "failed") {
    retry(connection, "The connection dropped; reconnecting…");
  }
}

// The receiver forgets a WHIP session when told (RFC 9725's DELETE), at once, rather than
// when it times out: `keepalive` lets the request outlive a page being closed.
function forget() {
  if (resource) {
    fetch(`${resource}?token=${encodeURIComponent(token)}`, { method: "DELETE", keepalive: true })
      .catch(() => {});
  }
  resource = null;
}

function retry(connection, text) {
  if (!wanted || connection !== pc) return;
  clearTimeout(dropTimer);
  forget();
  connection.close();
  pc = null;
  const wait = RETRY_MS[Math.min(retries, RETRY_MS.length - 1)];
  retries += 1;
  setState("reconnecting", "reconnecting…");
  say(`${text} Next try in ${wait / 1000} s.`, "info");
  retryTimer = setTimeout(() => wanted && reconnect(), wait);
}

// connect() and everything it awaits may throw (a browser without some API): never an
// unhandled rejection that leaves the page saying "connecting…" forever.
function reconnect() {
  connect().catch((error) => {
    if (pc) retry(pc, `Could not connect: ${error && error.message ? error.message : error}.`);
    else fail(`Could not connect: ${error && error.message ? error.message : error}`);
  });
}

function fail(text) {
  stop();
  setState("error", "cannot stream");
  say(text);
}

async function start() {
  say("");
  if (!window.isSecureContext || !navigator.mediaDevices) {
    return say("The microphone needs a secure page: open the https:// link from the " +
      "receiver's QR code, and accept its certificate when the browser warns.");
  }
  if (typeof RTCPeerConnection === "undefined") {
    return fail("This browser cannot stream: it has no WebRTC. Open the link in Safari, " +
      "Chrome or Firefox (an app's built-in browser may lack it).");
  }
  save(settings());
  ui.restartHint.hidden = true;
  const context = newAudioContext();  // made while the tap counts, so it may run
  wanted = true;
  setMuted(false);
  setState("connecting", "connecting…");
  try {
    stream = await openMicrophone();
  } catch (error) {
    context.close();
    stop();
    setState("error", "no microphone");
    return say(explain(error));
  }
  watch(stream);
  reconnect();  // first: nothing below may hold the stream back (a promise that never
  // settles, as a wake lock's may in a browser that cannot grant it, would)
  try {
    meterStop = startMeter(stream, context);
  } catch {
    // the meter is an extra: streaming goes on without
  }
  listDevices().catch(() => {});
  keepAwake();
}

function newAudioContext() {
  const Context = window.AudioContext || window.webkitAudioContext;  // older iOS
  return new Context();
}

// The system may take the microphone away (a phone call, another app, the screen
// locking): the track mutes, or ends. The page says so, keeps the stream (and the room),
// and carries on with the microphone as soon as it is back.
function watch(microphone) {
  const [track] = microphone.getAudioTracks();
  track.addEventListener("mute", () => {
    if (!wanted || microphone !== stream) return;
    setState("interrupted", "microphone paused");
    say("The system paused the microphone (a call, or another app?). Streaming resumes " +
      "when it comes back.", "info");
  });
  track.addEventListener("unmute", () => {
    if (!wanted || microphone !== stream) return;
    resumed();
  });
  track.addEventListener("ended", () => {
    if (!wanted || microphone !== stream) return;
    setState("interrupted", "microphone lost");
    say("The microphone was taken away (a call, another app, or the system). Getting it " +
      "back…", "info");
    switchMicrophone();
  });
}

function resumed() {
  if (pc && pc.connectionState === "connected") {
    setState("streaming", muted ? "muted" : "streaming");
  } else {
    setState("reconnecting", "reconnecting…");
  }
  say("");
}

// A new microphone (another device, other processing, or the old one back) on the same
// connection: the receiver hears one stream, in one room, with no reconnection.
async function switchMicrophone() {
  clearTimeout(micTimer);
  let next;
  try {
    next = await openMicrophone();
  } catch {
    if (wanted) micTimer = setTimeout(switchMicrophone, MIC_RETRY_MS);  // not back yet
    return;
  }
  if (!wanted) {
    next.getTracks().forEach((t) => t.stop());
    return;
  }
  const old = stream;
  stream = next;
  const [track] = next.getAudioTracks();
  track.enabled = !muted;
  watch(next);
  try {
    const sender = pc && pc.getSenders().find((s) => s.track && s.track.kind === "audio");
    if (sender) await sender.replaceTrack(track);
    if (meterStop) meterStop();
    meterStop = startMeter(next, newAudioContext());
  } catch {
    // the meter is an extra; a sender that refused the track is replaced at the next
    // reconnection, which takes the new stream
  }
  if (old) old.getTracks().forEach((t) => t.stop());
  if (window.airmic.state === "interrupted") resumed();
}

function setMuted(value) {
  muted = value;
  window.airmic.muted = value;
  if (stream) stream.getAudioTracks().forEach((t) => { t.enabled = !value; });
  ui.mute.textContent = value ? "Unmute" : "Mute";
  ui.mute.setAttribute("aria-pressed", String(value));
  document.body.dataset.muted = String(value);
  if (window.airmic.state === "streaming") ui.state.textContent = value ? "muted" : "streaming";
}

function stop() {
  wanted = false;
  clearTimeout(retryTimer);
  clearTimeout(dropTimer);
  clearTimeout(micTimer);
  retries = 0;
  forget();
  if (pc) pc.close();
  pc = null;
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  if (meterStop) meterStop();
  meterStop = null;
  if (wakeLock) wakeLock.release().catch(() => {});
  wakeLock = null;
  setMuted(false);
  setState("idle", "ready");
}

async function keepAwake() {
  if (!("wakeLock" in navigator) || document.visibilityState !== "visible") return;
  try {
    wakeLock = await navigator.wakeLock.request("screen");
    // The system lets go of it when the page is hidden: taken again on return.
    wakeLock.addEventListener("release", () => { wakeLock = null; });
  } catch {
    wakeLock = null;  // refused (battery saver): streaming goes on, the screen may sleep
  }
}

function startMeter(source, context) {
  context.resume();
  const analyser = context.createAnalyser();
  analyser.fftSize = 2048;
  context.createMediaStreamSource(source).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let peak = -90;
  let peakAt = 0;
  let frame = 0;
  const draw = (now) => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    let max = 0;
    for (const x of samples) {
      sum += x * x;
      max = Math.max(max, Math.abs(x));
    }
    const rms = 10 * Math.log10(sum / samples.length + 1e-12) + 3;  // dBFS, a sine's peak
    const top = 20 * Math.log10(max + 1e-12);
    if (top >= peak || now - peakAt > 1500) {
      peak = top;
      peakAt = now;
    }
    const pos = (db) => `${Math.max(0, Math.min(100, (db + 60) / 60 * 100))}%`;
    ui.level.style.width = pos(rms);
    ui.peak.style.left = pos(peak);
    ui.levelText.textContent = `level ${rms.toFixed(0)} dBFS, peak ${peak.toFixed(0)}` +
      (max >= 0.999 ? "  CLIP" : "");
    frame = requestAnimationFrame(draw);
  };
  frame = requestAnimationFrame(draw);
  return () => {
    cancelAnimationFrame(frame);
    context.close();
    ui.level.style.width = "0";
  };
}

function clockQuery() {
  if (!clocks.length) return "";
  const best = clocks.reduce((a, b) => (b.rtt < a.rtt ? b : a));
  return `&offset=${(best.offset / 1000).toFixed(4)}`;
}

async function pollStats() {
  if (!resource || !pc) return;
  try {
    const asked = Date.now();
    const response = await fetch(
      `${resource}?token=${encodeURIComponent(token)}${clockQuery()}`, { cache: "no-store" });
    if (!response.ok) throw new Error(`${response.status}`);
    const view = await response.json();
    const answered = Date.now();
    if (typeof view.clock === "number") {
      clocks = [...clocks, { rtt: answered - asked, offset: view.clock * 1000 - (asked + answered) / 2 }]
        .slice(-CLOCK_SAMPLES);
    }
    if (unanswered >= SILENT_POLLS && window.airmic.state === "streaming") say("");
    unanswered = 0;
    const s = view.stream;
    if (!s || window.airmic.state !== "streaming") return;
    window.airmic.stats = s;
    ui.delay.textContent = s.delay_ms != null ? `${Math.round(s.delay_ms)} ms` : "-";
    ui.lost.textContent = `${s.lost}`;
    ui.recovered.textContent = `${s.recovered}`;
    ui.heard.textContent = `${Math.round(s.heard_db ?? s.level_db)} dB`;
    ui.latency.textContent = s.end_to_end_ms != null ? `${Math.round(s.end_to_end_ms)} ms` : "-";
  } catch {
    unanswered += 1;
    if (unanswered === SILENT_POLLS && wanted) {
      clearFigures();
      say("The receiver does not answer (stopped, or the Wi-Fi is down): still trying…",
        "info");
    }
  }
}

async function learnReceiver() {
  const response = await fetch(`/about?token=${encodeURIComponent(token)}`);
  if (!response.ok) return;
  receiverName = (await response.json()).name || "";
  showReceiver();
}

ui.start.addEventListener("click", () => wanted || start());
ui.stop.addEventListener("click", () => wanted && stop());
ui.mute.addEventListener("click", () => wanted && setMuted(!muted));
// Settings while streaming: the microphone's apply at once, on the same stream; the name
// and the preset are the receiver's to apply, at the next start.
for (const input of [ui.device, ui.ec, ui.ns, ui.agc]) {
  input.addEventListener("change", () => {
    save(settings());
    if (wanted) switchMicrophone();
  });
}
for (const input of [ui.name, ui.preset]) {
  input.addEventListener("change", () => {
    if (wanted) ui.restartHint.hidden = false;
  });
}
document.addEventListener("visibilitychange", () => {
  if (wanted && document.visibilityState === "visible" && !wakeLock) keepAwake();
});
window.addEventListener("online", () => wanted && !pc && reconnect());
window.addEventListener("pagehide", () => wanted && stop());
setInterval(pollStats, 1000);
restore();
if (navigator.mediaDevices) listDevices().catch(() => {});
if (token) listPresets().catch(() => {});
if (token) learnReceiver().catch(() => {});
if (!token) say("This page needs the link from the receiver (it carries an access token).");
