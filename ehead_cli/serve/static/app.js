// The ehead page: microphone and an agent audio file -> /ws; motion back -> the built-in head
// (glTF from /head.glb: 100 expression morph targets, jaw/eye/neck joints) or server-rendered JPEGs.
// The protocol is docs/serve-protocol.md. Everything is served by ehead itself: no CDN.
import {
  AmbientLight, Color, DirectionalLight, LinearSRGBColorSpace, PerspectiveCamera, Scene, Vector3,
  WebGLRenderer, GLTFLoader,
} from "./three.bundle.min.js";

const FPS = 25, SAMPLES_PER_FRAME = 640, RATE = 16000;
const RECORD_FLOATS = 117;  // per frame: frame index u32, state i32, 115 float32 (468 bytes)
const HEADER_BYTES = 16;
const LEAD_S = 0.25;        // playback starts this long after the first window arrives
const $ = (id) => document.getElementById(id);

const st = {
  ws: null, session: null, connected: false,
  frames: new Map(),        // frame index -> {state, motion: Float32Array(115)}
  jpegs: new Map(),         // frame index -> object URL
  windows: 0, framesReceived: 0, jpegsReceived: 0, shown: -1, shownState: 0,
  base: null,               // playback clock: frame f is shown at out.currentTime == base + f / FPS
  out: null,                // the AudioContext that plays the agent's voice and keeps the clock
  mic: null, micNode: null, silence: null,
  agentQueue: [], agentTail: new Float32Array(0),  // agent frames (640 samples) sent, not yet played
  agentSending: null, error: "", jpegShown: false,
  micSent: 0, micMarks: [],  // microphone samples sent; [samples sent so far, performance.now()] per chunk
  drawLatency: [],          // ms from sending the chunk that completed a frame's audio to drawing that frame
};

// --- the 3D head --------------------------------------------------------------------------------
const canvas = $("canvas");
const renderer = new WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
renderer.setPixelRatio(1);
renderer.setSize(512, 512, false);
renderer.outputColorSpace = LinearSRGBColorSpace;  // the head's colours shown as ehead's renderer shows them
const scene = new Scene();
scene.background = new Color(0.93, 0.93, 0.95);
scene.add(new AmbientLight(0xffffff, 0.35 * Math.PI));
const key = new DirectionalLight(0xffffff, 0.7 * Math.PI);
key.position.set(0.35, 0.45, 1.0);
scene.add(key);
const camera = new PerspectiveCamera(18, 1, 0.01, 10);
const rig = { mesh: null, neck: null, jaw: null, eyeL: null, eyeR: null, pivot: new Vector3() };

function aaToQuat(m, i, q) {  // axis-angle (radians) at m[i..i+3] -> quaternion
  const x = m[i], y = m[i + 1], z = m[i + 2], a = Math.hypot(x, y, z);
  if (a < 1e-8) return q.set(x / 2, y / 2, z / 2, 1).normalize();
  const s = Math.sin(a / 2) / a;
  return q.set(x * s, y * s, z * s, Math.cos(a / 2));
}

function applyMotion(m) {  // m: Float32Array(115) = expression 100, jaw 3, eyes 3 + 3, rotation 3, translation 3
  const w = rig.mesh.morphTargetInfluences;
  for (let i = 0; i < 100; i++) w[i] = m[i];
  aaToQuat(m, 100, rig.jaw.quaternion);
  aaToQuat(m, 103, rig.eyeL.quaternion);
  aaToQuat(m, 106, rig.eyeR.quaternion);
  aaToQuat(m, 109, rig.neck.quaternion);
  rig.neck.position.set(rig.pivot.x + m[112], rig.pivot.y + m[113], rig.pivot.z + m[114]);
}

async function loadHead() {
  const gltf = await new GLTFLoader().loadAsync("/head.glb");
  scene.add(gltf.scene);
  gltf.scene.traverse((o) => {
    if (o.isSkinnedMesh) rig.mesh = o;
    if (o.isBone || o.type === "Object3D" || o.isGroup) {
      if (o.name === "neck") rig.neck = o;
      if (o.name === "jaw") rig.jaw = o;
      if (o.name === "eye_left") rig.eyeL = o;
      if (o.name === "eye_right") rig.eyeR = o;
    }
  });
  rig.mesh.frustumCulled = false;  // the skinned bounds move with the neck
  rig.pivot.copy(rig.neck.position);
  // framed as ehead's renderer frames it: the bounding sphere fills 0.8 of an 18-degree view
  rig.mesh.geometry.computeBoundingSphere();
  const centre = rig.mesh.geometry.boundingSphere.center.clone(), radius = rig.mesh.geometry.boundingSphere.radius;
  const dist = radius / Math.sin(Math.atan(0.8 * Math.tan((18 * Math.PI) / 360)));
  camera.position.set(centre.x, centre.y, centre.z + dist);
  camera.lookAt(centre);
  renderer.render(scene, camera);
}

// --- the connection ------------------------------------------------------------------------------
function connect() {
  return new Promise((resolve, reject) => {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      const token = $("token").value || new URLSearchParams(location.hash.slice(1)).get("token") || undefined;
      // protocol 2: the server's hop (ehead serve --hop): windows of a few frames, each out soon after its speech
      ws.send(JSON.stringify({ type: "hello", protocol: 2, token, frames: $("jpeg").checked,
                               format: "pcm16", sample_rate: RATE, channels: 1 }));
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        const msg = JSON.parse(ev.data);
        if (msg.type === "ready") { st.session = msg.session; st.connected = true; resolve(ws); }
        if (msg.type === "reset") clearPlayback();
        return;
      }
      const magic = new TextDecoder().decode(new Uint8Array(ev.data, 0, 4));
      if (magic === "EHMO") onMotion(ev.data);
      else if (magic === "EHJP") onJpeg(ev.data);
    };
    ws.onclose = (ev) => {
      st.connected = false;
      st.error = ev.code === 1000 ? "" : `closed: ${ev.code} ${ev.reason}`;
      stopAudio();
      setButtons(false);
      reject(new Error(st.error || "closed"));
    };
    st.ws = ws;
  });
}

function sendAudio(source, pcm16) {  // source 0 = mic, 1 = agent
  if (!st.ws || st.ws.readyState !== WebSocket.OPEN) return;
  const msg = new Uint8Array(2 + pcm16.byteLength);
  msg[0] = source;
  msg.set(new Uint8Array(pcm16.buffer, pcm16.byteOffset, pcm16.byteLength), 2);
  st.ws.send(msg);
  if (source === 0) {
    st.micSent += pcm16.length;
    st.micMarks.push([st.micSent, performance.now()]);
  }
}

function noteDrawn(frame) {  // the latency of a frame drawn now, from its microphone time's chunk
  const need = (frame + 1) * SAMPLES_PER_FRAME;
  while (st.micMarks.length > 1 && st.micMarks[0][0] < need) st.micMarks.shift();
  if (!st.micMarks.length || st.micMarks[0][0] < need) return;
  st.drawLatency.push(performance.now() - st.micMarks[0][1]);
  if (st.drawLatency.length > 2000) st.drawLatency.shift();
}

function percentile(values, p) {
  if (!values.length) return null;
  const v = [...values].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))];
}

function onMotion(buf) {
  const n = new DataView(buf).getUint32(8, true);
  const u32 = new Uint32Array(buf, HEADER_BYTES), i32 = new Int32Array(buf, HEADER_BYTES);
  const f32 = new Float32Array(buf, HEADER_BYTES);
  const now = st.out.currentTime;
  const first = u32[0];
  if (st.base === null || now > st.base + first / FPS) {
    st.base = now + LEAD_S - first / FPS;  // first window, or a late one: the head waits for it
  }
  for (let r = 0; r < n; r++) {
    const o = r * RECORD_FLOATS, frame = u32[o], state = i32[o + 1];
    st.frames.set(frame, { state, motion: f32.slice(o + 2, o + 2 + 115) });
    if (state === 1) playAgentFrame(st.base + frame / FPS);
  }
  st.windows += 1;
  st.framesReceived += n;
}

function onJpeg(buf) {
  const frame = new DataView(buf).getUint32(4, true);
  st.jpegs.set(frame, URL.createObjectURL(new Blob([new Uint8Array(buf, 8)], { type: "image/jpeg" })));
  st.jpegsReceived += 1;
}

// A speaking frame is the next 640 samples of agent audio the client sent (the server's scheduler
// consumes the agent's speech in order), so the voice plays in sync with the frames that say it.
function playAgentFrame(when) {
  const samples = st.agentQueue.shift();
  if (!samples || when < st.out.currentTime) return;
  const buffer = st.out.createBuffer(1, SAMPLES_PER_FRAME, RATE);
  buffer.copyToChannel(samples, 0);
  const src = st.out.createBufferSource();
  src.buffer = buffer;
  src.connect(st.out.destination);
  src.start(when);
}

function queueAgent(samples, endOfUtterance) {  // mirrors the server's speaking queue (Q_S)
  let buf = new Float32Array(st.agentTail.length + samples.length);
  buf.set(st.agentTail);
  buf.set(samples, st.agentTail.length);
  if (endOfUtterance && buf.length % SAMPLES_PER_FRAME) {
    const padded = new Float32Array(Math.ceil(buf.length / SAMPLES_PER_FRAME) * SAMPLES_PER_FRAME);
    padded.set(buf);
    buf = padded;
  }
  let i = 0;
  for (; i + SAMPLES_PER_FRAME <= buf.length; i += SAMPLES_PER_FRAME) st.agentQueue.push(buf.slice(i, i + SAMPLES_PER_FRAME));
  st.agentTail = buf.slice(i);
}

function clearPlayback() {
  st.frames.clear();
  for (const url of st.jpegs.values()) URL.revokeObjectURL(url);
  st.jpegs.clear();
  st.base = null;
  st.shown = -1;
  st.agentQueue = [];
  st.agentTail = new Float32Array(0);
  st.micSent = 0;  // the server's session clock restarts too
  st.micMarks = [];
  st.drawLatency = [];
}

// --- audio in ------------------------------------------------------------------------------------
async function startAudio() {
  st.out = new AudioContext();
  await st.out.audioWorklet.addModule("/static/capture-worklet.js");
  try {
    st.mic = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true,
                                                                   noiseSuppression: true } });
    const src = st.out.createMediaStreamSource(st.mic);
    st.micNode = new AudioWorkletNode(st.out, "capture-16k");
    st.micNode.port.onmessage = (ev) => sendAudio(0, ev.data);
    src.connect(st.micNode);
    const mute = st.out.createGain();  // the worklet must reach the destination to run; silently
    mute.gain.value = 0;
    st.micNode.connect(mute).connect(st.out.destination);
  } catch (err) {  // no microphone: the session clock still needs one, so send silence in real time
    st.error = `no microphone (${err.name}): sending silence as the user`;
    const start = performance.now();
    let sent = 0;
    st.silence = setInterval(() => {
      const due = Math.floor(((performance.now() - start) / 1000) * RATE / 320);
      for (; sent < due; sent++) sendAudio(0, new Int16Array(320));
    }, 20);
  }
}

function stopAudio() {
  if (st.silence) clearInterval(st.silence);
  if (st.agentSending) clearInterval(st.agentSending);
  if (st.mic) st.mic.getTracks().forEach((t) => t.stop());
  st.silence = st.agentSending = st.mic = null;
}

async function decodeAgentFile(file) {  // any format the browser decodes -> 16 kHz mono float32
  const data = await file.arrayBuffer();
  const decoded = await st.out.decodeAudioData(data);
  const off = new OfflineAudioContext(1, Math.ceil(decoded.duration * RATE), RATE);
  const src = off.createBufferSource();
  src.buffer = decoded;
  src.connect(off.destination);
  src.start();
  return (await off.startRendering()).getChannelData(0);
}

async function streamAgent() {  // the file's samples, in 20 ms chunks at real-time pace, as a TTS would
  const file = $("agent-file").files[0];
  if (!file || !st.connected) return;
  const samples = await decodeAgentFile(file);
  if (st.agentSending) clearInterval(st.agentSending);
  const start = performance.now();
  let pos = 0;
  st.agentSending = setInterval(() => {
    const due = Math.min(samples.length, Math.floor(((performance.now() - start) / 1000) * RATE));
    while (pos < due) {
      const chunk = samples.subarray(pos, Math.min(due, pos + 320));
      const pcm = new Int16Array(chunk.length);
      for (let i = 0; i < chunk.length; i++) pcm[i] = Math.round(Math.max(-1, Math.min(1, chunk[i])) * 32767);
      sendAudio(1, pcm);
      queueAgent(Float32Array.from(pcm, (v) => v / 32768), false);
      pos += chunk.length;
    }
    if (pos >= samples.length) {
      st.ws.send(JSON.stringify({ type: "end_of_utterance" }));
      queueAgent(new Float32Array(0), true);
      clearInterval(st.agentSending);
      st.agentSending = null;
    }
  }, 20);
}

// --- the display loop ------------------------------------------------------------------------------
function tick() {
  requestAnimationFrame(tick);
  if (!rig.mesh) return;
  const useJpeg = $("jpeg").checked;
  if (st.base !== null && st.out) {
    const f = Math.floor((st.out.currentTime - st.base) * FPS);
    let show = -1;  // the newest frame at or before f that has arrived
    for (let g = f; g > st.shown && g >= 0; g--) if (st.frames.has(g)) { show = g; break; }
    if (show > st.shown) {
      const rec = st.frames.get(show);
      applyMotion(rec.motion);
      noteDrawn(show);
      st.shown = show;
      st.shownState = rec.state;
      for (const k of st.frames.keys()) if (k < show - 2 * FPS) st.frames.delete(k);
      st.jpegShown = useJpeg && st.jpegs.has(show);  // this frame's JPEG, else the 3D head
      if (st.jpegShown) $("frame").src = st.jpegs.get(show);
      for (const [k, url] of st.jpegs) if (k < show - 2 * FPS) { URL.revokeObjectURL(url); st.jpegs.delete(k); }
    }
  }
  $("frame").style.display = useJpeg && st.jpegShown ? "block" : "none";
  renderer.render(scene, camera);
  const badge = $("badge");
  badge.textContent = !st.connected ? "not connected" : st.shown < 0 ? "waiting for the first window"
    : st.shownState === 1 ? "speaking" : "listening";
  badge.className = st.shown < 0 || !st.connected ? "" : st.shownState === 1 ? "speak" : "listen";
  $("status").textContent = [
    `session     ${st.session ?? "-"}${st.connected ? "" : " (closed)"}`,
    `windows     ${st.windows}   frames ${st.framesReceived}   jpegs ${st.jpegsReceived}`,
    `showing     frame ${st.shown}`,
    `latency     ${st.drawLatency.length ? `${percentile(st.drawLatency, 50).toFixed(0)} / ` +
                 `${percentile(st.drawLatency, 95).toFixed(0)} ms p50 / p95, speech to face` : "-"}`,
    `agent audio ${(st.agentQueue.length / FPS).toFixed(1)} s queued`,
    st.error,
  ].join("\n");
}

function setButtons(running) {
  $("start").disabled = running;
  $("reset").disabled = !running;
  $("stop").disabled = !running;
  $("agent-play").disabled = !running || !$("agent-file").files.length;
}

$("start").onclick = async () => {
  setButtons(true);
  st.error = "";
  try {
    await startAudio();
    await connect();
  } catch (err) {
    st.error = String(err.message || err);
    setButtons(false);
  }
};
$("stop").onclick = () => { stopAudio(); if (st.ws) st.ws.close(1000); };
$("reset").onclick = () => { if (st.ws) st.ws.send(JSON.stringify({ type: "reset" })); };
$("agent-file").onchange = () => setButtons(st.connected);
$("agent-play").onclick = () => streamAgent();
$("jpeg").onchange = () => {
  if (st.ws && st.connected) st.ws.send(JSON.stringify({ type: "frames", value: $("jpeg").checked }));
};

// what the browser test reads
window.ehead = {
  ready: false,
  status: () => ({ connected: st.connected, windows: st.windows, frames: st.framesReceived, shown: st.shown,
                   jpegs: st.jpegsReceived, state: st.shownState, error: st.error }),
  latency: () => ({ p50: percentile(st.drawLatency, 50), p95: percentile(st.drawLatency, 95),
                    n: st.drawLatency.length }),
  signature: () => {  // a coarse fingerprint of the canvas: changes when the head moves
    const c = document.createElement("canvas");
    c.width = c.height = 64;
    const g = c.getContext("2d");
    g.drawImage(canvas, 0, 0, 64, 64);
    return Array.from(g.getImageData(0, 0, 64, 64).data.filter((_, i) => i % 4 !== 3));
  },
  streamAgent,
};

loadHead().then(() => {
  window.ehead.ready = true;
  $("status").textContent = "ready: press Start";
  requestAnimationFrame(tick);
}).catch((err) => { $("status").textContent = `could not load the head model: ${err}`; });
