// Wan Stream: a live video player on the Streaming AR Sampler node.
//
// The sampler sends, over ComfyUI's websocket, one `wanstream.progress` event per denoising step
// ({node, prompt_id, chunk, num_chunks, step, num_steps}) and one `wanstream.preview` event per
// finished chunk ({node, prompt_id, chunk, num_chunks, fps, width, height, frames: [base64 JPEG]}).
// This extension adds a player widget to that node only (not serialized, no other UI change): it
// plays the frames as they arrive, loops over the whole video once it is done, and shows progress.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE_TYPE = "WanStreamARSampler";
const MAX_FRAMES = 2000; // frames kept per run (older ones are dropped: long videos stay bounded)

class WanStreamPlayer {
  constructor() {
    this.element = document.createElement("div");
    this.element.className = "wanstream-player";
    Object.assign(this.element.style, {
      display: "flex", flexDirection: "column", gap: "4px", width: "100%", height: "100%",
      minHeight: "120px", boxSizing: "border-box",
    });
    this.canvas = document.createElement("canvas");
    Object.assign(this.canvas.style, {
      flex: "1 1 0", width: "100%", height: "0", minHeight: "0", objectFit: "contain", background: "#111",
      borderRadius: "4px",
    });
    this.status = document.createElement("div");
    Object.assign(this.status.style, {
      font: "11px sans-serif", color: "#ccc", whiteSpace: "nowrap", overflow: "hidden", textOverflow: "ellipsis",
      flex: "0 0 auto", lineHeight: "14px",
    });
    this.bar = document.createElement("div");
    Object.assign(this.bar.style, { flex: "0 0 auto", height: "3px", width: "0%", background: "#4a9eff", transition: "width 0.1s" });
    this.element.append(this.canvas, this.bar, this.status);
    this.reset();
    this.timer = null;
  }

  reset(promptId = null) {
    this.promptId = promptId;
    this.frames = [];
    this.chunksReceived = 0;
    this.lastChunk = -1;
    this.numChunks = 0;
    this.step = 0;
    this.numSteps = 0;
    this.fps = 16;
    this.position = 0;
    this.done = false;
    this.setStatus(promptId ? "waiting for the first chunk…" : "idle");
    this.bar.style.width = "0%";
    this.updateDataset();
  }

  updateDataset() {
    const d = this.element.dataset;
    d.frames = String(this.frames.length);
    d.chunks = String(this.chunksReceived);
    d.lastChunk = String(this.lastChunk);
    d.numChunks = String(this.numChunks);
    d.done = String(this.done);
  }

  setStatus(text) {
    this.status.textContent = text;
  }

  describe() {
    const chunk = this.numChunks ? `chunk ${Math.min(this.lastChunk + 2, this.numChunks)}/${this.numChunks}` : "";
    const step = this.numSteps ? ` · step ${this.step}/${this.numSteps}` : "";
    return `${chunk}${step} · ${this.frames.length} frames`;
  }

  onProgress(d) {
    if (d.prompt_id !== this.promptId) this.reset(d.prompt_id);
    this.numChunks = d.num_chunks;
    this.step = d.step;
    this.numSteps = d.num_steps;
    const total = d.num_chunks * d.num_steps;
    const doneSteps = d.chunk * d.num_steps + d.step;
    this.bar.style.width = `${(100 * doneSteps) / Math.max(1, total)}%`;
    this.setStatus(`chunk ${d.chunk + 1}/${d.num_chunks} · step ${d.step}/${d.num_steps} · ${this.frames.length} frames`);
    this.updateDataset();
  }

  onChunk(d) {
    if (d.prompt_id !== this.promptId) this.reset(d.prompt_id);
    this.fps = d.fps || this.fps;
    this.numChunks = d.num_chunks;
    this.lastChunk = d.chunk;
    this.chunksReceived += 1;
    for (const b64 of d.frames) {
      const img = new Image();
      img.src = `data:image/jpeg;base64,${b64}`;
      this.frames.push(img);
    }
    if (this.frames.length > MAX_FRAMES) {
      const drop = this.frames.length - MAX_FRAMES;
      this.frames.splice(0, drop);
      this.position = Math.max(0, this.position - drop);
    }
    if (this.canvas.width !== d.width || this.canvas.height !== d.height) {
      this.canvas.width = d.width;
      this.canvas.height = d.height;
    }
    if (d.chunk + 1 >= d.num_chunks) this.done = true;
    this.setStatus(this.done ? `done · ${this.numChunks} chunks · ${this.frames.length} frames` : this.describe());
    this.updateDataset();
    this.play();
  }

  play() {
    if (this.timer) return;
    const tick = () => {
      this.timer = null;
      if (!this.frames.length) return;
      if (this.position >= this.frames.length) {
        if (!this.done) return; // live: wait for the next chunk (onChunk restarts playback)
        this.position = 0; // finished: loop
      }
      const img = this.frames[this.position];
      const draw = () => {
        const ctx = this.canvas.getContext("2d");
        ctx.drawImage(img, 0, 0, this.canvas.width, this.canvas.height);
        this.element.dataset.shown = String(this.position);
      };
      if (img.complete) draw();
      else img.onload = draw;
      this.position += 1;
      this.timer = setTimeout(tick, 1000 / Math.max(1, this.fps));
    };
    tick();
  }

  stop() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

function nodeFor(id) {
  const graph = app.graph;
  if (!graph) return null;
  return graph.getNodeById(Number.isNaN(+id) ? id : +id) ?? graph.getNodeById(id);
}

app.registerExtension({
  name: "WanStream.Player",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_TYPE) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      const player = new WanStreamPlayer();
      const widget = this.addDOMWidget("wanstream_player", "wanstream_player", player.element, {
        serialize: false,
        hideOnZoom: false,
        getValue: () => "",
        setValue: () => {},
        getMinHeight: () => 180,
      });
      widget.serialize = false;
      this.wanStreamPlayer = player;
      const onRemoved = this.onRemoved;
      this.onRemoved = function () {
        player.stop();
        return onRemoved?.apply(this, arguments);
      };
      const [w, h] = this.size;
      this.setSize([Math.max(w, 340), Math.max(h, 480)]);
      return result;
    };
  },

  async setup() {
    api.addEventListener("wanstream.progress", ({ detail }) => {
      nodeFor(detail.node)?.wanStreamPlayer?.onProgress(detail);
    });
    api.addEventListener("wanstream.preview", ({ detail }) => {
      nodeFor(detail.node)?.wanStreamPlayer?.onChunk(detail);
    });
  },
});
