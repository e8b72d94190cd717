// voiceprint browser page: record (or drop) audio, then enroll / verify / identify, or
// see who spoke when (diarize: a timeline of the speakers, named when enrolled).
// Vanilla JS, no build step. Recording: getUserMedia -> Web Audio graph; PCM is captured
// by an AudioWorklet (ScriptProcessor where worklets are missing), the level meter reads
// an AnalyserNode, and the clip is encoded client-side as 16-bit mono WAV at the
// context's native rate (the server resamples to the model's rate).
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_SECONDS = 30;

const state = {
  clip: null, // {blob, name}
  recorder: null, // active recording, see startRecording()
  health: null,
};

// ---------------------------------------------------------------- service calls

async function call(method, path, form) {
  const headers = {};
  const key = $("apikey").value.trim();
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(path, { method, body: form, headers });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    let detail = body && body.detail ? body.detail : response.statusText;
    if (Array.isArray(detail)) detail = detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

async function refresh() {
  try {
    state.health = await call("GET", "/health");
    const h = state.health;
    const threshold = h.threshold === null ? "no threshold" : `threshold ${h.threshold.toFixed(3)} (${h.rule})`;
    $("model").textContent =
      `model ${h.model_id} · ${h.backend} · ${threshold} · ${h.speakers} speaker(s)` +
      (h.api_key_required ? " · API key needed (client: verify/identify; admin: enroll, list)" : "");
    const ul = $("speakers");
    let list;
    try {
      list = await call("GET", "/v1/speakers");
    } catch (err) {
      // Listing who is enrolled needs an admin key when the service has keys.
      ul.replaceChildren();
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = `${h.speakers} enrolled (the list needs an admin key)`;
      ul.appendChild(li);
      return;
    }
    ul.replaceChildren();
    for (const s of list.speakers) {
      const li = document.createElement("li");
      li.textContent = `${s.name} (${s.count})` + (s.same_model ? "" : " — other model");
      ul.appendChild(li);
    }
    if (!list.speakers.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "nobody yet";
      ul.appendChild(li);
    }
  } catch (err) {
    $("model").textContent = `service not reachable: ${err.message}`;
  }
}

// ---------------------------------------------------------------- results

function showMessage(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "message error" : "message";
}

function showDecision(verdict, label) {
  const box = $("decision");
  box.textContent = verdict.decision;
  box.dataset.state = verdict.accepted === true ? "accept" : verdict.accepted === false ? "reject" : "none";
  const threshold = verdict.threshold === null ? "none" : verdict.threshold.toFixed(3);
  $("detail").textContent =
    `${label} — score ${verdict.score.toFixed(3)} · LLR ${verdict.llr.toFixed(2)} · threshold ${threshold}`;
}

// One row per speaker, a bar per turn, positioned in % of the recording's duration.
function showTimeline(result) {
  const box = $("timeline");
  box.replaceChildren();
  result.speakers.forEach((speaker, index) => {
    const row = document.createElement("div");
    row.className = "lane";
    const label = document.createElement("span");
    label.className = "who";
    label.textContent = speaker.speaker;
    const track = document.createElement("div");
    track.className = "track";
    for (const seg of result.segments.filter((s) => s.speaker === speaker.speaker)) {
      const bar = document.createElement("span");
      bar.className = "turn";
      bar.style.left = `${(100 * seg.start) / result.duration}%`;
      bar.style.width = `${(100 * (seg.end - seg.start)) / result.duration}%`;
      bar.style.background = `hsl(${(index * 137) % 360} 60% 48%)`;
      bar.title = `${speaker.speaker}: ${seg.start.toFixed(2)}-${seg.end.toFixed(2)} s`;
      track.appendChild(bar);
    }
    row.append(label, track);
    box.appendChild(row);
  });
  const axis = document.createElement("p");
  axis.className = "muted";
  axis.textContent = `0 s — ${result.duration.toFixed(1)} s`;
  box.appendChild(axis);
  box.hidden = result.speakers.length === 0;
}

function clearResult() {
  $("timeline").hidden = true;
  $("timeline").replaceChildren();
  $("decision").textContent = "…";
  $("decision").dataset.state = "none";
  $("detail").textContent = "";
  $("candidates").replaceChildren();
  showMessage("");
}

function needClip() {
  if (!state.clip) throw new Error("record or choose some audio first");
  return state.clip;
}

function needName() {
  const name = $("name").value.trim();
  if (!name) throw new Error("type a speaker name first");
  return name;
}

async function act(kind) {
  clearResult();
  setBusy(true);
  try {
    const clip = needClip();
    const form = new FormData();
    if (kind === "enroll") {
      const name = needName();
      form.append("name", name);
      form.append("file", clip.blob, clip.name);
      const r = await call("POST", "/v1/enroll", form);
      $("decision").textContent = "ENROLLED";
      $("decision").dataset.state = "accept";
      $("detail").textContent = `${r.name} now has ${r.count} recording(s)`;
    } else if (kind === "verify") {
      const name = needName();
      form.append("name", name);
      form.append("file", clip.blob, clip.name);
      const r = await call("POST", "/v1/verify", form);
      showDecision(r, `${r.name}?`);
    } else if (kind === "diarize") {
      form.append("file", clip.blob, clip.name);
      const r = await call("POST", "/v1/diarize", form);
      $("decision").textContent = `${r.num_speakers} SPEAKER${r.num_speakers === 1 ? "" : "S"}`;
      $("decision").dataset.state = "none";
      $("detail").textContent = r.speakers
        .map((s) => `${s.speaker} ${s.seconds.toFixed(1)} s`)
        .join(" · ") || "no speech found";
      showTimeline(r);
    } else {
      form.append("file", clip.blob, clip.name);
      form.append("top", "5");
      const r = await call("POST", "/v1/identify", form);
      showDecision(
        r.best,
        r.identified === "unknown"
          ? `unknown voice (closest of ${r.gallery_size}: ${r.best.name})`
          : `identified as ${r.identified}`,
      );
      for (const c of r.candidates) {
        const li = document.createElement("li");
        li.textContent = `${c.name} — score ${c.score.toFixed(3)} ${c.decision}`;
        $("candidates").appendChild(li);
      }
    }
  } catch (err) {
    $("decision").textContent = "—";
    $("decision").dataset.state = "none";
    showMessage(err.message, true);
  } finally {
    setBusy(false);
    refresh();
  }
}

function setBusy(busy) {
  for (const id of ["enroll", "verify", "identify", "diarize"]) $(id).disabled = busy;
}

// ---------------------------------------------------------------- audio clip

function setClip(blob, name, seconds) {
  state.clip = { blob, name };
  const kb = (blob.size / 1024).toFixed(0);
  $("clip").textContent = seconds === null ? `file ${name} (${kb} KB)` : `recording ${seconds.toFixed(1)} s (${kb} KB WAV)`;
  const player = $("player");
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(blob);
  player.hidden = false;
}

function encodeWav(samples, rate) {
  // 16-bit PCM mono RIFF/WAVE.
  const buffer = new ArrayBuffer(44 + samples.length * 2);
  const view = new DataView(buffer);
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF");
  view.setUint32(4, 36 + samples.length * 2, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true); // bytes per second
  view.setUint16(32, 2, true); // block align
  view.setUint16(34, 16, true); // bits per sample
  text(36, "data");
  view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([buffer], { type: "audio/wav" });
}

const WORKLET = `
class PcmCapture extends AudioWorkletProcessor {
  constructor() { super(); this.buffer = []; this.size = 0; }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      this.buffer.push(new Float32Array(channel));
      this.size += channel.length;
      if (this.size >= 4096) {
        const out = new Float32Array(this.size);
        let at = 0;
        for (const b of this.buffer) { out.set(b, at); at += b.length; }
        this.port.postMessage(out, [out.buffer]);
        this.buffer = []; this.size = 0;
      }
    }
    return true;
  }
}
registerProcessor("pcm-capture", PcmCapture);
`;

async function startRecording() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("this page needs https (or localhost) for the microphone; you can still choose a file");
  }
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const Context = window.AudioContext || window.webkitAudioContext;
  const ctx = new Context();
  await ctx.resume();
  const source = ctx.createMediaStreamSource(stream);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 2048;
  source.connect(analyser);
  const mute = ctx.createGain();
  mute.gain.value = 0;
  mute.connect(ctx.destination);
  const chunks = [];
  let node;
  if (ctx.audioWorklet && window.AudioWorkletNode) {
    const url = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
    await ctx.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    node = new AudioWorkletNode(ctx, "pcm-capture", { numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: "explicit" });
    node.port.onmessage = (event) => chunks.push(event.data);
  } else {
    node = ctx.createScriptProcessor(4096, 1, 1);
    node.onaudioprocess = (event) => chunks.push(new Float32Array(event.inputBuffer.getChannelData(0)));
  }
  source.connect(node);
  node.connect(mute);
  const rec = { stream, ctx, analyser, node, chunks, started: performance.now(), frame: 0 };
  const data = new Float32Array(analyser.fftSize);
  const tick = () => {
    analyser.getFloatTimeDomainData(data);
    let sum = 0;
    for (let i = 0; i < data.length; i++) sum += data[i] * data[i];
    const rms = Math.sqrt(sum / data.length);
    const db = 20 * Math.log10(rms + 1e-9); // -60 dBFS .. 0 dBFS fills the bar
    $("level").style.width = `${Math.max(0, Math.min(100, ((db + 60) / 60) * 100)).toFixed(0)}%`;
    const seconds = (performance.now() - rec.started) / 1000;
    $("timer").textContent = `${seconds.toFixed(1)} s`;
    if (seconds >= MAX_SECONDS) { stopRecording(); return; }
    rec.frame = requestAnimationFrame(tick);
  };
  rec.frame = requestAnimationFrame(tick);
  state.recorder = rec;
  $("record").textContent = "■ Stop";
  $("record").classList.add("recording");
  showMessage("recording… speak now, then press Stop");
}

async function stopRecording() {
  const rec = state.recorder;
  if (!rec) return;
  state.recorder = null;
  cancelAnimationFrame(rec.frame);
  rec.stream.getTracks().forEach((t) => t.stop());
  rec.node.disconnect();
  const rate = rec.ctx.sampleRate;
  await rec.ctx.close();
  $("level").style.width = "0%";
  $("record").textContent = "● Record";
  $("record").classList.remove("recording");
  const length = rec.chunks.reduce((n, c) => n + c.length, 0);
  const samples = new Float32Array(length);
  let at = 0;
  for (const c of rec.chunks) { samples.set(c, at); at += c.length; }
  if (length < rate * 0.3) {
    showMessage("recording too short: hold for at least a second", true);
    return;
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  setClip(encodeWav(samples, rate), `recording-${stamp}.wav`, length / rate);
  showMessage(`recorded ${(length / rate).toFixed(1)} s at ${rate} Hz`);
}

// ---------------------------------------------------------------- wiring

$("record").addEventListener("click", async () => {
  try {
    if (state.recorder) await stopRecording();
    else await startRecording();
  } catch (err) {
    showMessage(`microphone: ${err.message}`, true);
  }
});

$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) setClip(file, file.name, null);
});

const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) setClip(file, file.name, null);
});

$("enroll").addEventListener("click", () => act("enroll"));
$("verify").addEventListener("click", () => act("verify"));
$("identify").addEventListener("click", () => act("identify"));
$("diarize").addEventListener("click", () => act("diarize"));

try {
  $("apikey").value = sessionStorage.getItem("voiceprint-api-key") || "";
} catch (_) { /* storage may be disabled */ }
$("apikey").addEventListener("change", () => {
  try { sessionStorage.setItem("voiceprint-api-key", $("apikey").value); } catch (_) { /* ignore */ }
});

refresh();
