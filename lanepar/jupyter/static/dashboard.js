// lanepar dashboard: a canvas timeline fed by binary deltas (see lanepar/jupyter/messages.py).
//
// One store per dashboard (keyed by its uid) lives for the page's lifetime, so a view created
// after data arrived (a re-rendered output, a second view) draws everything received so far.
// The same module also renders the static snapshot: the snapshot page strips the final export
// line and calls `mountStatic` with a plain object that mimics the model.

const KINDS = ["queued", "dispatch", "cpu", "wait", "gil", "runq"];
const OUTCOMES = ["ok", "error", "cancelled", "timeout"];
const DEFAULT_COLOURS = {
  queued: "#c7c7c7",
  dispatch: "#ff7f0e",
  cpu: "#d62728",
  wait: "#1f77b4",
  gil: "#e377c2",
  runq: "#8c564b",
};
const RUNNING_COLOUR = "rgba(148, 103, 189, 0.55)";
const ERROR_COLOUR = "#000000";
const GUTTER = 96; // px left of the plot for row labels
const AXIS_H = 22;
const STORES = new Map();

// ---------------------------------------------------------------------------------------------
// growable typed arrays
class Column {
  constructor(Type, cap = 1024) {
    this.Type = Type;
    this.a = new Type(cap);
    this.n = 0;
  }
  reserve(extra) {
    if (this.n + extra <= this.a.length) return;
    let cap = this.a.length * 2;
    while (cap < this.n + extra) cap *= 2;
    const b = new this.Type(cap);
    b.set(this.a.subarray(0, this.n));
    this.a = b;
  }
  push(v) {
    if (this.n === this.a.length) this.reserve(1);
    this.a[this.n++] = v;
  }
}

function view(dv, Type) {
  // copy: a comm buffer's byteOffset need not be aligned for 8-byte views
  if (!dv || dv.byteLength === 0) return new Type(0);
  const bytes = new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength).slice();
  return new Type(bytes.buffer, 0, bytes.byteLength / Type.BYTES_PER_ELEMENT);
}

// ---------------------------------------------------------------------------------------------
class Store {
  constructor() {
    this.views = new Set();
    this.reset(0);
  }

  reset(t0) {
    this.t0 = t0;
    this.seq = 0;
    this.lanes = [];
    this.names = [];
    this.sub = new Column(Float64Array);
    this.free = new Column(Float64Array);
    this.start = new Column(Float64Array);
    this.fin = new Column(Float64Array);
    this.cpu = new Column(Float64Array);
    this.wait = new Column(Float64Array);
    this.id = new Column(Float64Array);
    this.lane = new Column(Uint16Array);
    this.slot = new Column(Int32Array);
    this.outcome = new Column(Uint8Array);
    this.name = new Column(Uint16Array);
    this.seg0 = new Column(Uint32Array);
    this.nseg = new Column(Uint16Array);
    this.dom = new Column(Uint8Array); // the body's longest segment kind (for sub-pixel tasks)
    this.segEnd = new Column(Float64Array);
    this.segKind = new Column(Uint8Array);
    this.args = [];
    this.errors = new Map();
    this.rowOf = new Map(); // "lane:slot" -> row index
    this.rowKeys = []; // [lane, slot] per row, in display order
    this.rowTasks = []; // per row: task indices, in start order
    this.running = [];
    this.sampleT = new Column(Float32Array);
    this.sampleProc = new Column(Float32Array);
    this.sampleCores = new Column(Float32Array);
    this.sampleLanes = []; // per sample: Float32Array of (active, pending, limit) per lane
    this.nCores = 0;
    this.nowMs = 0;
    this.maxMs = 0;
    this.ended = false;
    this.done = 0;
    this.total = 0;
  }

  get n() {
    return this.sub.n;
  }

  row(lane, slot) {
    const key = lane + ":" + slot;
    let r = this.rowOf.get(key);
    if (r !== undefined) return r;
    this.rowKeys.push([lane, slot]);
    // rows sorted by lane index, then slot (a never-started task's row, slot -1, goes last)
    const order = this.rowKeys
      .map((k, i) => [k, i])
      .sort((x, y) => x[0][0] - y[0][0] || (x[0][1] < 0) - (y[0][1] < 0) || x[0][1] - y[0][1]);
    const oldTasks = this.rowTasks;
    const keys = [];
    const tasks = [];
    this.rowOf = new Map();
    order.forEach(([k, i], j) => {
      keys.push(k);
      tasks.push(i < oldTasks.length ? oldTasks[i] : []);
      this.rowOf.set(k[0] + ":" + k[1], j);
    });
    this.rowKeys = keys;
    this.rowTasks = tasks;
    return this.rowOf.get(key);
  }

  ingest(msg, buffers) {
    if (msg.type === "reset") {
      const { views, listening } = this;
      this.reset(Number(msg.t0_ns));
      Object.assign(this, { views, listening, seq: msg.seq - 1 });
      return;
    }
    if (msg.type === "end") {
      this.ended = true;
      this.running = [];
      this.nowMs = Math.max(this.nowMs, (Number(msg.now_ns) - this.t0) / 1e6);
      return;
    }
    if (msg.type !== "delta") return;
    if (!this.t0) this.t0 = Number(msg.t0_ns);
    this.seq = msg.seq;
    this.lanes = msg.lanes;
    for (const nm of msg.names) this.names.push(nm);
    const t0 = this.t0;
    // buffer 0: TaskRecord.packed back to back (head <7qiI, segments <Bq, UTF-8 args)
    const rec = buffers[0] && buffers[0].byteLength
      ? new DataView(buffers[0].buffer, buffers[0].byteOffset, buffers[0].byteLength)
      : new DataView(new ArrayBuffer(0));
    const ends = view(buffers[1], Uint32Array);
    const codes = view(buffers[2], Uint16Array);
    const bytes = new Uint8Array(rec.buffer, rec.byteOffset, rec.byteLength);
    const utf8 = new TextDecoder();
    const nt = msg.n_tasks;
    for (const col of [this.sub, this.free, this.start, this.fin, this.cpu, this.wait, this.id,
      this.lane, this.slot, this.outcome, this.name, this.seg0, this.nseg, this.dom]) col.reserve(nt);
    const base = this.n;
    let o = 0;
    const i64 = (at) => Number(rec.getBigInt64(at, true));
    for (let i = 0; i < nt; i++) {
      const end = ends[i];
      const sub = i64(o + 8);
      const finMs = (i64(o + 32) - t0) / 1e6;
      this.id.push(i64(o));
      this.sub.push((sub - t0) / 1e6);
      this.free.push((i64(o + 16) - t0) / 1e6);
      this.start.push((i64(o + 24) - t0) / 1e6);
      this.fin.push(finMs);
      this.cpu.push(i64(o + 40) / 1e6);
      this.wait.push(i64(o + 48) / 1e6);
      const slot = rec.getInt32(o + 72, true);
      const ns = rec.getUint32(o + 76, true);
      this.slot.push(slot);
      const lane = codes[i * 3];
      this.lane.push(lane);
      this.outcome.push(codes[i * 3 + 1]);
      this.name.push(codes[i * 3 + 2]);
      this.seg0.push(this.segEnd.n);
      this.nseg.push(ns);
      this.segEnd.reserve(ns);
      this.segKind.reserve(ns);
      let q = o + 80;
      let prevEnd = sub, dom = 0, domLen = -1;
      for (let j = 0; j < ns; j++, q += 9) {
        const kind = rec.getUint8(q);
        const endNs = sub + i64(q + 1);
        this.segKind.push(kind);
        this.segEnd.push((endNs - t0) / 1e6);
        if (kind !== 0 && endNs - prevEnd > domLen) { dom = kind; domLen = endNs - prevEnd; }
        prevEnd = endNs;
      }
      this.dom.push(dom);
      this.args.push(q < end ? utf8.decode(bytes.subarray(q, end)) : "");
      o = end;
      const r = this.row(lane, slot);
      const list = this.rowTasks[r];
      const k = base + i;
      // a slot runs its tasks one after another, so appending keeps start order (almost always)
      if (list.length && this.start.a[list[list.length - 1]] > this.start.a[k]) {
        let lo = 0, hi = list.length;
        while (lo < hi) {
          const m = (lo + hi) >> 1;
          if (this.start.a[list[m]] <= this.start.a[k]) lo = m + 1; else hi = m;
        }
        list.splice(lo, 0, k);
      } else list.push(k);
      if (finMs > this.maxMs) this.maxMs = finMs;
    }
    for (const [k, text] of msg.errors) this.errors.set(base + k, text);
    // running tasks: replaced wholesale (bounded by the lanes' limits)
    const run = view(buffers[3], BigInt64Array);
    this.running = [];
    for (let i = 0; i < msg.n_running; i++) {
      const o = i * 6;
      const lane = Number(run[o + 1]);
      const slot = Number(run[o + 2]);
      const started = Number(run[o + 5]);
      if (slot >= 0) this.row(lane, slot);
      this.running.push({
        id: Number(run[o]),
        lane,
        slot,
        name: Number(run[o + 3]),
        sub: (Number(run[o + 4]) - t0) / 1e6,
        start: started ? (started - t0) / 1e6 : NaN,
        args: msg.running_args[i] ?? "",
      });
    }
    // samples
    const w = msg.sample_width;
    const smp = view(buffers[4], Float32Array);
    if (msg.n_cores) this.nCores = msg.n_cores;
    const nc = this.nCores;
    const nl = (w - 2 - nc) / 3;
    for (let i = 0; i < msg.n_samples; i++) {
      const o = i * w;
      this.sampleT.push(smp[o]);
      this.sampleProc.push(smp[o + 1]);
      this.sampleCores.reserve(nc);
      for (let c = 0; c < nc; c++) this.sampleCores.push(smp[o + 2 + c]);
      this.sampleLanes.push(smp.slice(o + 2 + nc, o + 2 + nc + 3 * nl));
    }
    this.nowMs = Math.max(this.nowMs, (Number(msg.now_ns) - t0) / 1e6);
    this.done = msg.done;
    this.total = msg.total;
  }

  redraw() {
    for (const v of this.views) v.schedule();
  }
}

function storeFor(model) {
  const uid = model.get("uid");
  let st = STORES.get(uid);
  if (!st) {
    st = new Store();
    STORES.set(uid, st);
  }
  return st;
}

function listen(model) {
  const st = storeFor(model);
  if (st.listening) return st;
  st.listening = true;
  model.on("msg:custom", (msg, buffers) => {
    if (msg.type === "reset") st.resyncing = false;
    else if (st.resyncing) return;
    else if (msg.type === "delta" && msg.seq !== st.seq + 1) {
      // a message went missing (a view that loaded late): ask the kernel for everything
      st.resyncing = true;
      model.send({ type: "resync" });
      return;
    }
    st.ingest(msg, buffers || []);
    st.redraw();
  });
  return st;
}

// ---------------------------------------------------------------------------------------------
// formatting
function fmtMs(ms) {
  if (!isFinite(ms)) return "–";
  if (ms === 0) return "0";
  const a = Math.abs(ms);
  if (a >= 1000) return (ms / 1000).toFixed(a >= 10000 ? 1 : 2) + " s";
  if (a >= 1) return ms.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2) + " ms";
  return (ms * 1000).toFixed(a >= 0.1 ? 0 : 1) + " µs";
}
function fmtPct(x) {
  return isFinite(x) ? (x * 100).toFixed(0) + "%" : "–";
}
function niceStep(span, px) {
  const target = span / Math.max(2, px / 90);
  const p = Math.pow(10, Math.floor(Math.log10(target)));
  for (const m of [1, 2, 5, 10]) if (m * p >= target) return m * p;
  return 10 * p;
}
function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}
function div(cls, parent, text) {
  const d = document.createElement("div");
  if (cls) d.className = cls;
  if (text !== undefined) d.textContent = text;
  if (parent) parent.appendChild(d);
  return d;
}

// ---------------------------------------------------------------------------------------------
class DashboardView {
  constructor(model, el, store) {
    this.model = model;
    this.st = store;
    this.colours = Object.assign({}, DEFAULT_COLOURS, model.get("colours") || {});
    this.follow = true;
    this.v0 = 0;
    this.v1 = 1000;
    this.frame = 0;
    this.hover = null;

    const root = div("lanepar-dashboard", el);
    this.root = root;
    const head = div("lanepar-head", root);
    this.titleEl = div("lanepar-title", head, model.get("title") || "lanepar");
    this.statusEl = div("lanepar-status", head);
    const legend = div("lanepar-legend", head);
    for (const k of KINDS) {
      const item = div("lanepar-legend-item", legend);
      const sw = div("lanepar-swatch", item);
      sw.style.background = this.colours[k];
      item.appendChild(document.createTextNode(k));
    }
    for (const [label, colour] of [["running", RUNNING_COLOUR], ["error", ERROR_COLOUR]]) {
      const item = div("lanepar-legend-item", legend);
      const sw = div("lanepar-swatch", item);
      if (label === "error") sw.style.border = "2px solid " + colour;
      else sw.style.background = colour;
      item.appendChild(document.createTextNode(label));
    }
    const tools = div("lanepar-tools", head);
    for (const [label, title, fn] of [
      ["−", "zoom out", () => this.zoom(1.6, 0.5)],
      ["+", "zoom in", () => this.zoom(1 / 1.6, 0.5)],
      ["fit", "show everything and follow the live edge", () => this.fit()],
    ]) {
      const b = document.createElement("button");
      b.className = "lanepar-btn";
      b.textContent = label;
      b.title = title;
      b.addEventListener("click", fn);
      tools.appendChild(b);
    }

    const body = div("lanepar-body", root);
    const left = div("lanepar-plots", body);
    this.canvas = document.createElement("canvas");
    this.canvas.className = "lanepar-timeline";
    left.appendChild(this.canvas);
    this.coresWrap = div("lanepar-cores", left);
    this.coresCanvas = document.createElement("canvas");
    this.coresCanvas.className = "lanepar-cores-canvas";
    this.coresWrap.appendChild(this.coresCanvas);
    this.tip = div("lanepar-tip", root);
    this.tip.style.display = "none";

    const side = div("lanepar-side", body);
    this.figEl = div("lanepar-figures", side);
    this.lanesEl = div("lanepar-lanes", side);
    this.notesEl = div("lanepar-notes", side);
    this.buildFigures();

    this.bind();
    this.st.views.add(this);
    this.onChange = () => this.schedule();
    model.on("change:figures", this.onChange);
    model.on("change:lanes", this.onChange);
    model.on("change:status", this.onChange);
    model.on("change:notes", this.onChange);
    model.on("change:limit_history", this.onChange);
    this.ro = typeof ResizeObserver !== "undefined" ? new ResizeObserver(() => this.schedule()) : null;
    if (this.ro) this.ro.observe(root);
    this.schedule();
  }

  dispose() {
    this.st.views.delete(this);
    if (this.ro) this.ro.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
    this.model.off("change:figures", this.onChange);
    this.model.off("change:lanes", this.onChange);
    this.model.off("change:status", this.onChange);
    this.model.off("change:notes", this.onChange);
    this.model.off("change:limit_history", this.onChange);
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  // -- interaction -----------------------------------------------------------------------------
  bind() {
    const c = this.canvas;
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      const x = e.offsetX - GUTTER;
      const w = c.clientWidth - GUTTER;
      if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
        this.pan((e.deltaX / w) * (this.v1 - this.v0));
      } else {
        this.zoom(Math.exp(e.deltaY * 0.002), Math.min(1, Math.max(0, x / w)));
      }
    }, { passive: false });
    let drag = null;
    c.addEventListener("mousedown", (e) => {
      drag = { x: e.clientX, v0: this.v0, v1: this.v1 };
    });
    window.addEventListener("mouseup", () => (drag = null));
    c.addEventListener("mousemove", (e) => {
      if (drag) {
        const w = c.clientWidth - GUTTER;
        const dt = ((e.clientX - drag.x) / w) * (drag.v1 - drag.v0);
        this.follow = false;
        this.v0 = drag.v0 - dt;
        this.v1 = drag.v1 - dt;
        this.tip.style.display = "none";
        this.schedule();
        return;
      }
      this.showTip(e);
    });
    c.addEventListener("mouseleave", () => (this.tip.style.display = "none"));
    c.addEventListener("dblclick", () => this.fit());
  }

  zoom(factor, at) {
    const span = this.v1 - this.v0;
    const t = this.v0 + span * at;
    const ns = Math.max(span * factor, 0.001);
    this.follow = false;
    this.v0 = t - ns * at;
    this.v1 = this.v0 + ns;
    this.schedule();
  }

  pan(dt) {
    this.follow = false;
    this.v0 += dt;
    this.v1 += dt;
    this.schedule();
  }

  fit() {
    this.follow = true;
    this.schedule();
  }

  extent() {
    const st = this.st;
    let lo = 0;
    if (st.n) lo = Math.min(0, st.sub.a[0]);
    let hi = Math.max(st.maxMs, st.ended ? 0 : st.nowMs, 1);
    return [lo, hi * 1.02];
  }

  // -- drawing ---------------------------------------------------------------------------------
  draw() {
    const t = performance.now();
    if (this.follow) [this.v0, this.v1] = this.extent();
    this.drawTimeline();
    this.drawCores();
    this.drawFigures();
    this.drawLanes();
    this.root.dataset.drawMs = (performance.now() - t).toFixed(1); // read by the browser tests
  }

  sizeCanvas(canvas, h) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(200, canvas.parentElement.clientWidth || 800);
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
      canvas.style.width = w + "px";
      canvas.style.height = h + "px";
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return [ctx, w];
  }

  rowHeight() {
    const rows = Math.max(1, this.st.rowKeys.length);
    return Math.max(3, Math.min(18, Math.floor(360 / rows)));
  }

  drawTimeline() {
    const st = this.st;
    const rh = this.rowHeight();
    const rows = st.rowKeys.length;
    const h = Math.max(60, rows * rh) + AXIS_H + 4;
    const [ctx, w] = this.sizeCanvas(this.canvas, h);
    const pw = w - GUTTER;
    ctx.clearRect(0, 0, w, h);
    const v0 = this.v0, v1 = this.v1;
    const k = pw / Math.max(v1 - v0, 1e-9);
    const X = (t) => GUTTER + (t - v0) * k;
    this.geom = { rh, k, v0 };

    // row backgrounds and labels
    ctx.font = "11px sans-serif";
    ctx.textBaseline = "middle";
    let prevLane = -1;
    for (let r = 0; r < rows; r++) {
      const [lane, slot] = st.rowKeys[r];
      const y = r * rh;
      if (lane !== prevLane) {
        ctx.fillStyle = "#dddddd";
        ctx.fillRect(0, y, w, 1);
        ctx.fillStyle = "#333";
        ctx.fillText(st.lanes[lane] ?? "lane " + lane, 4, y + Math.max(rh, 12) / 2);
        prevLane = lane;
      } else if (rh >= 12) {
        ctx.fillStyle = "#888";
        ctx.fillText(slot < 0 ? "not started" : "#" + slot, 40, y + rh / 2);
      }
      if (r % 2) {
        ctx.fillStyle = "rgba(0,0,0,0.025)";
        ctx.fillRect(GUTTER, y, pw, rh);
      }
    }
    if (!rows) {
      ctx.fillStyle = "#888";
      ctx.fillText("waiting for tasks…", GUTTER + 8, 20);
    }

    // task bars: one Path2D per kind; sub-pixel segments binned per pixel column
    const paths = KINDS.map(() => new Path2D());
    const errPath = new Path2D();
    const gaps = new Path2D(); // a 1px gap where a task starts, so neighbours stay distinct
    const bins = new Float32Array(Math.ceil(pw + 2) * 4);
    const pad = rh >= 6 ? 1 : 0;
    const qh = Math.max(1, Math.round((rh - 2 * pad) * 0.2));
    for (let r = 0; r < rows; r++) {
      const list = st.rowTasks[r];
      const y = r * rh + pad;
      const bh = rh - 2 * pad;
      // first task that may be visible: tasks in a row are in start order and never overlap
      let lo = 0, hi = list.length;
      while (lo < hi) {
        const m = (lo + hi) >> 1;
        if (st.fin.a[list[m]] < v0) lo = m + 1; else hi = m;
      }
      let binned = false;
      let qa = -1, qb = -1; // the current run of merged queued underlines (one rect per run)
      const flushQueued = () => {
        if (qb - qa >= 1) paths[0].rect(qa, y + bh - qh, qb - qa, qh);
      };
      for (let j = Math.max(0, lo - 64); j < list.length; j++) {
        const i = list[j];
        if (st.start.a[i] > v1) break;
        if (st.fin.a[i] < v0) continue;
        const s0 = st.sub.a[i];
        const free = st.slot.a[i] >= 0 ? st.free.a[i] : st.fin.a[i];
        // queued time is a wait for capacity, not slot occupancy: it overlaps the tasks the slot
        // ran before, so it is a thin underline over them, merged into runs
        const q0 = Math.max(X(s0), GUTTER), q1 = Math.min(X(free), w);
        if (q1 > q0) {
          if (qa < 0) { qa = q0; qb = q1; }
          else if (q0 <= qb + 1) { qa = Math.min(qa, q0); qb = Math.max(qb, q1); }
          else { flushQueued(); qa = q0; qb = q1; }
        }
        const xa = X(free), xb = X(st.fin.a[i]);
        if (xb - xa < 1) {
          // the whole body fits in a pixel: count it for its dominant kind, skip its segments
          if (xb >= GUTTER && xa < w) {
            binned = true;
            bins[Math.floor(Math.max(xa, GUTTER) - GUTTER) * 4 + st.dom.a[i]] += Math.max(xb - xa, 0.05);
          }
        } else {
          let prev = s0;
          const a = st.seg0.a[i], n = st.nseg.a[i];
          for (let q = 0; q < n; q++) {
            const end = st.segEnd.a[a + q];
            const kind = st.segKind.a[a + q];
            const x0 = Math.max(X(prev), GUTTER), x1 = Math.min(X(end), w);
            prev = end;
            if (kind === 0 || x1 <= x0) continue;
            if (x1 - x0 >= 1) paths[kind].rect(x0, y, x1 - x0, bh);
            else {
              binned = true;
              bins[Math.floor(x0 - GUTTER) * 4 + kind] += x1 - x0;
            }
          }
          if (xb - xa >= 5 && xa >= GUTTER) gaps.rect(xa, y, 1, bh);
        }
        if (st.outcome.a[i] !== 0) {
          const x0 = Math.max(X(st.start.a[i] || s0), GUTTER), x1 = Math.min(X(st.fin.a[i]), w);
          errPath.rect(x0, y, Math.max(x1 - x0, 2), bh);
        }
      }
      flushQueued();
      if (binned) {
        for (let px = 0; px < bins.length / 4; px++) {
          let best = -1, bv = 0;
          for (let kk = 0; kk < 4; kk++) {
            const v = bins[px * 4 + kk];
            if (v > bv) { bv = v; best = kk; }
            bins[px * 4 + kk] = 0;
          }
          if (best >= 0) paths[best].rect(GUTTER + px, y, 1, bh);
        }
      }
    }
    for (const i of [1, 2, 3]) {
      ctx.fillStyle = this.colours[KINDS[i]];
      ctx.fill(paths[i]);
    }
    ctx.fillStyle = "#ffffff";
    ctx.fill(gaps);
    ctx.fillStyle = this.colours.queued;
    ctx.fill(paths[0]);
    // running tasks: queued part grey, body so far in the running colour
    const now = st.nowMs;
    for (const t of st.running) {
      if (t.slot < 0 || !isFinite(t.start)) continue;
      const r = st.rowOf.get(t.lane + ":" + t.slot);
      if (r === undefined) continue;
      const y = r * rh + pad, bh = rh - 2 * pad;
      const x0 = Math.max(X(t.start), GUTTER), x1 = Math.min(X(now), w);
      if (x1 > x0) {
        ctx.fillStyle = RUNNING_COLOUR;
        ctx.fillRect(x0, y, Math.max(x1 - x0, 1), bh);
      }
    }
    ctx.strokeStyle = ERROR_COLOUR;
    ctx.lineWidth = 1.5;
    ctx.stroke(errPath);

    // live edge
    if (!st.ended && st.nowMs >= v0 && st.nowMs <= v1) {
      ctx.fillStyle = "rgba(0,0,0,0.35)";
      ctx.fillRect(X(st.nowMs), 0, 1, rows * rh);
    }
    this.drawAxis(ctx, w, rows * rh + 2, X);
  }

  drawAxis(ctx, w, y, X) {
    const v0 = this.v0, v1 = this.v1;
    const step = niceStep(v1 - v0, w - GUTTER);
    ctx.fillStyle = "#444";
    ctx.fillRect(GUTTER, y, w - GUTTER, 1);
    ctx.font = "10px sans-serif";
    ctx.textBaseline = "top";
    for (let t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      const x = X(t);
      ctx.fillRect(x, y, 1, 4);
      ctx.fillText(fmtMs(t), x + 2, y + 5);
    }
  }

  drawCores() {
    const st = this.st;
    const nc = st.nCores;
    const ch = nc ? Math.max(3, Math.min(10, Math.floor(64 / nc))) : 0;
    const avgH = 36;
    const h = nc * ch + avgH + 6;
    const [ctx, w] = this.sizeCanvas(this.coresCanvas, h);
    ctx.clearRect(0, 0, w, h);
    const v0 = this.v0, v1 = this.v1;
    const k = (w - GUTTER) / Math.max(v1 - v0, 1e-9);
    const X = (t) => GUTTER + (t - v0) * k;
    ctx.font = "10px sans-serif";
    ctx.textBaseline = "middle";
    ctx.fillStyle = "#333";
    ctx.fillText("cores", 4, Math.min(10, (nc * ch) / 2 + 4));
    const n = st.sampleT.n;
    const T = st.sampleT.a, C = st.sampleCores.a;
    // each sample covers (previous sample, this sample]
    for (let i = 0; i < n; i++) {
      const prev = i ? T[i - 1] : n > 1 ? 2 * T[0] - T[1] : T[0] - 50;
      const x0 = Math.max(X(prev), GUTTER), x1 = Math.min(X(T[i]), w);
      if (x1 <= x0) continue;
      for (let c = 0; c < nc; c++) {
        const u = Math.min(1, Math.max(0, C[i * nc + c]));
        ctx.fillStyle = `rgba(214, 39, 40, ${0.08 + 0.92 * u})`;
        ctx.fillRect(x0, c * ch, Math.max(x1 - x0, 1), ch - (ch > 4 ? 1 : 0));
      }
    }
    // average line
    const y0 = nc * ch + 4, y1 = y0 + avgH;
    ctx.fillStyle = "#f4f4f4";
    ctx.fillRect(GUTTER, y0, w - GUTTER, avgH);
    ctx.fillStyle = "#333";
    ctx.fillText("avg", 4, y0 + avgH / 2);
    ctx.fillText("100%", GUTTER - 30, y0 + 5);
    ctx.save();
    ctx.beginPath();
    ctx.rect(GUTTER, 0, w - GUTTER, h);
    ctx.clip();
    ctx.beginPath();
    let started = false;
    for (let i = 0; i < n; i++) {
      let sum = 0;
      for (let c = 0; c < nc; c++) sum += C[i * nc + c];
      const x = X(T[i]);
      const y = y1 - (nc ? sum / nc : 0) * (avgH - 2) - 1;
      if (!started) { ctx.moveTo(x, y); started = true; } else ctx.lineTo(x, y);
    }
    ctx.strokeStyle = "#d62728";
    ctx.lineWidth = 1.5;
    ctx.stroke();
    ctx.restore();
  }

  buildFigures() {
    const f = this.figEl;
    const prog = div("lanepar-progress", f);
    this.barEl = div("lanepar-progress-bar", prog);
    const doneRow = div("lanepar-fig lanepar-fig-done", f);
    div("lanepar-fig-label", doneRow, "tasks");
    this.doneEl = div("lanepar-done", doneRow, "0 / 0");
    this.figCells = {};
    for (const [key, label] of [
      ["elapsed_s", "elapsed"],
      ["speedup", "speedup"],
      ["efficiency", "efficiency"],
      ["cpu_util", "CPU util"],
      ["dispatch_p50_ms", "dispatch p50"],
      ["dispatch_p99_ms", "dispatch p99"],
      ["queued_p50_ms", "queued p50"],
      ["errors", "errors"],
    ]) {
      const row = div("lanepar-fig lanepar-fig-" + key.replace(/_/g, "-"), f);
      div("lanepar-fig-label", row, label);
      this.figCells[key] = div("lanepar-fig-value", row, "–");
    }
  }

  drawFigures() {
    const fig = this.model.get("figures") || {};
    const st = this.st;
    const done = fig.done ?? st.done;
    const total = Math.max(fig.total ?? st.total, done);
    this.doneEl.textContent = `${done} / ${total}`;
    this.barEl.style.width = total ? ((100 * done) / total).toFixed(1) + "%" : "0%";
    const c = this.figCells;
    c.elapsed_s.textContent = fmtMs((fig.elapsed_s ?? 0) * 1000);
    c.speedup.textContent = (fig.speedup ?? 0).toFixed(2) + "×" +
      (fig.ideal_speedup ? ` of ${Number(fig.ideal_speedup).toFixed(0)}×` : "");
    c.efficiency.textContent = fmtPct(fig.efficiency ?? 0);
    c.cpu_util.textContent = fmtPct(fig.cpu_util ?? 0);
    c.dispatch_p50_ms.textContent = fmtMs(fig.dispatch_p50_ms ?? 0);
    c.dispatch_p99_ms.textContent = fmtMs(fig.dispatch_p99_ms ?? 0);
    c.queued_p50_ms.textContent = fmtMs(fig.queued_p50_ms ?? 0);
    c.errors.textContent = String(fig.errors ?? 0);
    c.errors.parentElement.classList.toggle("lanepar-bad", (fig.errors ?? 0) > 0);
    const status = this.model.get("status") || "";
    this.statusEl.textContent = status;
    this.statusEl.className = "lanepar-status lanepar-status-" + status;
    this.root.dataset.status = status;
  }

  drawLanes() {
    const lanes = this.model.get("lanes") || [];
    const el = this.lanesEl;
    while (el.children.length > lanes.length) el.removeChild(el.lastChild);
    lanes.forEach((ln, i) => {
      let row = el.children[i];
      if (!row) {
        row = div("lanepar-lane", el);
        div("lanepar-lane-name", row);
        const bar = div("lanepar-lane-bar", row);
        div("lanepar-lane-fill", bar);
        div("lanepar-lane-peak", bar);
        div("lanepar-lane-text", row);
      }
      const limit = Math.max(ln.limit || 0, 1);
      row.classList.toggle("lanepar-lane-idle", !ln.max_active && !ln.active && !ln.pending);
      row.children[0].textContent = ln.name;
      row.children[0].title = ln.kind;
      row.children[1].children[0].style.width = Math.min(100, (100 * ln.active) / limit) + "%";
      row.children[1].children[1].style.left = Math.min(100, (100 * ln.max_active) / limit) + "%";
      row.children[2].textContent =
        `${ln.active}/${ln.limit} active` + (ln.pending ? `, ${ln.pending} pending` : "") +
        ` · peak ${ln.max_active}`;
      this.drawLimitLine(row, (this.model.get("limit_history") || {})[ln.name]);
    });
    const notes = this.model.get("notes") || [];
    this.notesEl.textContent = "";
    for (const line of notes) div("lanepar-note", this.notesEl).textContent = line;
  }

  // The limit of an adaptive (or re-configured) lane over time: a step line under its row.
  drawLimitLine(row, points) {
    let cv = row.querySelector("canvas.lanepar-lane-limits");
    if (!points || points.length < 2) {
      if (cv) cv.remove();
      return;
    }
    if (!cv) {
      cv = document.createElement("canvas");
      cv.className = "lanepar-lane-limits";
      row.appendChild(cv);
    }
    const w = Math.max(40, row.clientWidth || 200), h = 20;
    if (cv.width !== w) cv.width = w;
    cv.height = h;
    const ctx = cv.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 1e-9);
    const top = Math.max(...points.map((p) => p[1]), 1);
    const x = (t) => ((w - 2) * (t - t0)) / (t1 - t0) + 1, y = (n) => h - 1 - ((h - 3) * n) / top;
    ctx.strokeStyle = "#555";
    ctx.lineWidth = 1.2;
    ctx.beginPath();
    ctx.moveTo(x(points[0][0]), y(points[0][1]));
    for (let k = 1; k < points.length; k++) {
      ctx.lineTo(x(points[k][0]), y(points[k - 1][1]));
      ctx.lineTo(x(points[k][0]), y(points[k][1]));
    }
    ctx.stroke();
    cv.dataset.points = String(points.length);
    cv.title = `limit over time: ${points.map((p) => p[1]).join(" → ")}`;
  }

  // -- hover -----------------------------------------------------------------------------------
  showTip(e) {
    const st = this.st;
    const g = this.geom;
    if (!g) return;
    const r = Math.floor(e.offsetY / g.rh);
    const t = g.v0 + (e.offsetX - GUTTER) / g.k;
    const slop = 3 / g.k;
    let html = null;
    if (r >= 0 && r < st.rowKeys.length && e.offsetX > GUTTER) {
      const list = st.rowTasks[r];
      let lo = 0, hi = list.length;
      while (lo < hi) {
        const m = (lo + hi) >> 1;
        if (st.fin.a[list[m]] < t - slop) lo = m + 1; else hi = m;
      }
      for (let j = lo; j < list.length && j < lo + 4; j++) {
        const i = list[j];
        const from = st.slot.a[i] >= 0 ? st.start.a[i] : st.sub.a[i];
        if (from - slop <= t && t <= st.fin.a[i] + slop) {
          html = this.taskTip(i);
          break;
        }
      }
      if (!html) {
        const [lane, slot] = st.rowKeys[r];
        for (const rt of st.running) {
          if (rt.lane === lane && rt.slot === slot && rt.start - slop <= t) {
            html = `<b>${esc(st.names[rt.name] ?? "?")}</b> <span class="lanepar-dim">running</span>` +
              `<br>${esc(rt.args)}<br>${esc(st.lanes[lane])} #${slot}` +
              `<br>queued ${fmtMs(rt.start - rt.sub)} · running for ${fmtMs(st.nowMs - rt.start)}`;
            break;
          }
        }
      }
    }
    if (!html) {
      this.tip.style.display = "none";
      return;
    }
    this.tip.innerHTML = html;
    this.tip.style.display = "block";
    const box = this.root.getBoundingClientRect();
    const cbox = this.canvas.getBoundingClientRect();
    let x = cbox.left - box.left + e.offsetX + 14;
    const y = cbox.top - box.top + e.offsetY + 14;
    if (x + 320 > box.width) x = Math.max(0, x - 340);
    this.tip.style.left = x + "px";
    this.tip.style.top = y + "px";
  }

  taskTip(i) {
    const st = this.st;
    const outcome = OUTCOMES[st.outcome.a[i]] ?? "?";
    const bad = outcome !== "ok";
    const slot = st.slot.a[i];
    const parts = [
      `<b>${esc(st.names[st.name.a[i]] ?? "?")}</b> <span class="lanepar-dim">#${st.id.a[i]}</span>`,
      esc(st.args[i] || ""),
      `${esc(st.lanes[st.lane.a[i]] ?? "?")} ${slot >= 0 ? "#" + slot : "(never started)"}`,
      `queued ${fmtMs(st.free.a[i] - st.sub.a[i])} · dispatch ${fmtMs(st.start.a[i] - st.free.a[i])}`,
      `cpu ${fmtMs(st.cpu.a[i])} · wait ${fmtMs(st.wait.a[i])} · wall ${fmtMs(st.fin.a[i] - st.start.a[i])}`,
      `at ${fmtMs(st.start.a[i])} → ${fmtMs(st.fin.a[i])}`,
      bad
        ? `<span class="lanepar-err">${esc(outcome)}: ${esc(st.errors.get(i) || "")}</span>`
        : `<span class="lanepar-ok">ok</span>`,
    ];
    return parts.join("<br>");
  }
}

// ---------------------------------------------------------------------------------------------
function initialize({ model }) {
  listen(model);
}

function render({ model, el }) {
  const st = listen(model);
  const fig = model.get("figures") || {};
  if (!st.seq && !st.resyncing && fig.done > 0) {
    // a page reloaded after (or during) a run: the kernel still has the data
    st.resyncing = true;
    model.send({ type: "resync" });
  }
  const v = new DashboardView(model, el, st);
  return () => v.dispose();
}

// Static snapshot: `data` = {state, messages: [[content, [base64 buffers]], ...]}.
function mountStatic(el, data) {
  const handlers = {};
  const model = {
    get: (k) => data.state[k],
    on: (ev, fn) => ((handlers[ev] = handlers[ev] || []).push(fn)),
    off: () => {},
    send: () => {},
  };
  const st = storeFor(model);
  for (const [msg, b64s] of data.messages) {
    const buffers = b64s.map((s) => {
      const bin = atob(s);
      const u = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
      return new DataView(u.buffer);
    });
    st.ingest(msg, buffers);
  }
  return new DashboardView(model, el, st);
}

export default { initialize, render };
