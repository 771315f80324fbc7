// Wan Stream: the live player and steering controls on the Live Sampler node.
//
// The job sends, to the client that queued it only: `wanstream.live.start` {node, prompt_id, token,
// fps, can_switch, switch_refusal, max_chunks}, `wanstream.live.progress` per denoising step {chunk,
// step, num_steps, frames, seconds, state}, `wanstream.live.preview` per chunk {chunk, first_frame, fps,
// width, height, frames: [base64 JPEG], sent_ms}, `wanstream.live.prompt` {chunk, text, weight} or
// {error}, `wanstream.live.end` {chunks, frames, ended_by}. The controls call the steering API
// (POST /wanstream/live/<prompt_id>/{prompt,pause,resume,stop}, docs/live.md) with the job's token.
// Playback: frames are played at the preset's fps from a small jitter buffer (JITTER_MS of video is
// buffered before playing, and again after the buffer ran dry; when generation outruns real time and
// more than MAX_LAG_MS waits, playback speeds up to catch up); nothing is kept once shown.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE_TYPE = "WanStreamLiveSampler";
const JITTER_MS = 250; // video buffered before playback starts (and restarts after running dry)
const MAX_LAG_MS = 1000; // more video than this waiting: play faster (up to 4x) to catch up, drop none
const MAX_QUEUED = 600; // frames waiting to be shown, at most (older ones are dropped)

function el(tag, style = {}, props = {}) {
  const e = document.createElement(tag);
  Object.assign(e.style, style);
  Object.assign(e, props);
  return e;
}

class WanStreamLivePlayer {
  constructor() {
    this.element = el("div", {
      display: "flex", flexDirection: "column", gap: "4px", width: "100%", height: "100%", minHeight: "220px",
      boxSizing: "border-box",
    }, { className: "wanstream-live" });
    this.canvas = el("canvas", {
      flex: "1 1 0", width: "100%", height: "0", minHeight: "0", objectFit: "contain", background: "#111",
      borderRadius: "4px",
    });
    this.status = el("div", { font: "11px sans-serif", color: "#ccc", whiteSpace: "nowrap", overflow: "hidden", textOverflow: "ellipsis" });
    this.message = el("div", { font: "11px sans-serif", color: "#f88", minHeight: "13px", whiteSpace: "nowrap", overflow: "hidden" });
    this.prompt = el("textarea", { font: "12px sans-serif", height: "38px", resize: "none", boxSizing: "border-box", width: "100%" }, {
      placeholder: "new prompt (applied from the next chunk)", maxLength: 2000,
    });
    this.prompt.dataset.role = "prompt";
    const row = el("div", { display: "flex", gap: "4px", alignItems: "center", font: "11px sans-serif", color: "#ccc" });
    this.transition = el("input", { width: "44px" }, { type: "number", min: 0, max: 64, value: 0, title: "transition over N chunks (0: at once)" });
    this.transition.dataset.role = "transition";
    this.applyButton = this.button("Apply", "prompt", () => this.sendPrompt());
    this.pauseButton = this.button("Pause", "pause", () => this.togglePause());
    this.stopButton = this.button("Stop", "stop", () => this.act("stop"));
    row.append("blend", this.transition, "chunks", this.applyButton, this.pauseButton, this.stopButton);
    this.element.append(this.canvas, this.status, this.prompt, row, this.message);
    // the textarea must keep its keys (ComfyUI's canvas shortcuts would take them)
    for (const t of ["keydown", "keyup", "keypress"]) this.prompt.addEventListener(t, (e) => e.stopPropagation());
    this.timer = null;
    this.reset(null);
  }

  button(label, action, onClick) {
    const b = el("button", { font: "11px sans-serif", padding: "1px 6px" }, { textContent: label, disabled: true });
    b.dataset.action = action;
    b.addEventListener("click", (e) => { e.stopPropagation(); onClick(); });
    return b;
  }

  reset(promptId) {
    this.promptId = promptId;
    this.token = null;
    this.queue = []; // [{img, chunk, sentMs}] waiting to be shown
    this.received = 0; // frames received
    this.dropped = 0; // frames dropped unseen (more than MAX_QUEUED waiting: far behind real time)
    this.shown = 0; // frames drawn
    this.chunks = 0;
    this.fps = 16;
    this.state = promptId ? "starting" : "idle";
    this.ended = false;
    this.buffering = true;
    this.latencies = []; // per chunk: ms from the server sending it to its first frame on screen
    this.arrivals = []; // per chunk: ms from the server sending it to its event in this page
    this.canSwitch = false;
    this.stopTimer();
    this.setControls(false);
    this.setStatus(promptId ? "starting…" : "idle");
    this.message.textContent = "";
    this.updateDataset();
  }

  updateDataset(extra = {}) {
    const d = this.element.dataset;
    Object.assign(d, {
      promptId: this.promptId ?? "", state: this.state, received: String(this.received), shown: String(this.shown), dropped: String(this.dropped), chunks: String(this.chunks),
      queued: String(this.queue.length), ended: String(this.ended),
      latencyMs: this.latencies.length ? String(Math.round(this.latencies[this.latencies.length - 1])) : "",
      latencies: JSON.stringify(this.latencies.map((x) => Math.round(x))),
      arrivals: JSON.stringify(this.arrivals.map((x) => Math.round(x))),
    }, extra);
  }

  setStatus(text) { this.status.textContent = text; }

  setControls(on) {
    this.applyButton.disabled = !on || !this.canSwitch;
    this.prompt.disabled = !on || !this.canSwitch;
    this.pauseButton.disabled = !on;
    this.stopButton.disabled = !on;
  }

  describe(extra = "") {
    const seconds = (this.received / this.fps).toFixed(1);
    const lat = this.latencies.length ? ` · ${Math.round(this.latencies[this.latencies.length - 1])} ms to screen` : "";
    return `${this.state} · ${this.chunks} chunks · ${this.received} frames · ${seconds} s${lat}${extra}`;
  }

  onStart(d) {
    this.reset(d.prompt_id);
    this.token = d.token;
    this.fps = d.fps || this.fps;
    this.canSwitch = !!d.can_switch;
    this.state = "running";
    this.setControls(true);
    if (!this.canSwitch) this.message.textContent = d.switch_refusal || "this preset cannot switch prompts";
    this.setStatus(this.describe());
    this.updateDataset();
  }

  onProgress(d) {
    if (d.prompt_id !== this.promptId) return;
    this.state = d.state;
    this.setStatus(this.describe(` · chunk ${d.chunk + 1} step ${d.step}/${d.num_steps}`));
    this.updateDataset();
  }

  onChunk(d) {
    if (d.prompt_id !== this.promptId) return;
    this.arrivals.push(Date.now() - d.sent_ms);
    this.fps = d.fps || this.fps;
    if (this.canvas.width !== d.width || this.canvas.height !== d.height) {
      this.canvas.width = d.width;
      this.canvas.height = d.height;
    }
    d.frames.forEach((b64, k) => {
      const img = new Image();
      img.src = `data:image/jpeg;base64,${b64}`;
      this.queue.push({ img, chunk: d.chunk, sentMs: k === 0 ? d.sent_ms : null });
    });
    if (this.queue.length > MAX_QUEUED) this.dropped += this.queue.splice(0, this.queue.length - MAX_QUEUED).length;
    this.received += d.frames.length;
    this.chunks += 1;
    this.setStatus(this.describe());
    this.updateDataset();
    this.play();
  }

  onPrompt(d) {
    if (d.prompt_id !== this.promptId) return;
    if (d.error) this.message.textContent = d.error;
    else this.updateDataset({ appliedChunk: String(d.chunk), appliedText: d.text, appliedWeight: String(d.weight) });
  }

  onEnd(d) {
    if (d.prompt_id !== this.promptId) return;
    this.ended = true;
    this.state = `ended (${d.ended_by})`;
    this.setControls(false);
    this.setStatus(this.describe());
    this.updateDataset({ endedBy: d.ended_by, endFrames: String(d.frames), endChunks: String(d.chunks) });
    this.play();
  }

  // -- playback: a jitter buffer at the preset's fps ---------------------------------------------
  play() {
    if (this.timer) return;
    const period = 1000 / Math.max(1, this.fps);
    const need = Math.max(1, Math.ceil(JITTER_MS / period));
    if (this.buffering && this.queue.length < need && !this.ended) return; // wait for more frames
    this.buffering = false;
    let next = performance.now();
    const tick = () => {
      this.timer = null;
      if (!this.queue.length) {
        this.buffering = true; // ran dry: buffer again before playing on
        this.updateDataset();
        return;
      }
      const f = this.queue.shift();
      const draw = () => {
        this.canvas.getContext("2d").drawImage(f.img, 0, 0, this.canvas.width, this.canvas.height);
        this.shown += 1;
        if (f.sentMs != null) this.latencies.push(Date.now() - f.sentMs);
        this.updateDataset();
      };
      if (f.img.complete) draw();
      else f.img.onload = draw;
      const waitingMs = this.queue.length * period;
      next += waitingMs > MAX_LAG_MS ? period / Math.min(4, waitingMs / MAX_LAG_MS) : period;
      this.timer = setTimeout(tick, Math.max(0, next - performance.now()));
    };
    tick();
  }

  stopTimer() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  // -- steering ----------------------------------------------------------------------------------
  async post(action, body = {}) {
    if (!this.promptId || !this.token) return null; // the token (from wanstream.live.start) is the only credential
    const res = await api.fetchApi(`/wanstream/live/${encodeURIComponent(this.promptId)}/${action}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-WanStream-Token": this.token },
      body: JSON.stringify(body),
    });
    const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
    this.message.textContent = res.ok ? "" : data.error || `HTTP ${res.status}`;
    this.updateDataset({ lastAction: action, lastStatus: String(res.status) });
    return { ok: res.ok, data };
  }

  async sendPrompt() {
    const text = this.prompt.value;
    const chunks = Math.max(0, Math.min(64, parseInt(this.transition.value, 10) || 0));
    const r = await this.post("prompt", { prompt: text, transition_chunks: chunks });
    if (r?.ok) this.updateDataset({ appliesFrom: String(r.data.applies_from_chunk), sentPrompt: r.data.prompt });
  }

  async togglePause() {
    const paused = this.state === "paused";
    const r = await this.post(paused ? "resume" : "pause");
    if (r?.ok) {
      this.state = r.data.state;
      this.pauseButton.textContent = this.state === "paused" ? "Resume" : "Pause";
      this.setStatus(this.describe());
      this.updateDataset();
    }
  }

  act(action) { return this.post(action); }
}

function nodeFor(id) {
  const graph = app.graph;
  if (!graph) return null;
  return graph.getNodeById(Number.isNaN(+id) ? id : +id) ?? graph.getNodeById(id);
}

app.registerExtension({
  name: "WanStream.LivePlayer",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_TYPE) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      const player = new WanStreamLivePlayer();
      const widget = this.addDOMWidget("wanstream_live", "wanstream_live", player.element, {
        serialize: false, hideOnZoom: false, getValue: () => "", setValue: () => {}, getMinHeight: () => 260,
      });
      widget.serialize = false;
      this.wanStreamLive = player;
      const onRemoved = this.onRemoved;
      this.onRemoved = function () {
        player.stopTimer();
        return onRemoved?.apply(this, arguments);
      };
      const [w, h] = this.size;
      this.setSize([Math.max(w, 360), Math.max(h, 560)]);
      return result;
    };
  },

  async setup() {
    const on = (event, method) =>
      api.addEventListener(event, ({ detail }) => nodeFor(detail.node)?.wanStreamLive?.[method](detail));
    on("wanstream.live.start", "onStart");
    on("wanstream.live.progress", "onProgress");
    on("wanstream.live.preview", "onChunk");
    on("wanstream.live.prompt", "onPrompt");
    on("wanstream.live.end", "onEnd");
  },
});
