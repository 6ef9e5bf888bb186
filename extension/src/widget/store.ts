/**
 * One run as the dashboard holds it: task columns, worker-slot rows, running tasks and
 * samples, filled from the kernel's binary deltas.
 *
 * Times are ns relative to the run's origin (`t0_ns`) as plain numbers, as in the trace
 * viewer's model, so both front ends share the same formatting and tick code.
 */

import {
  Buffer,
  CODE_INTS,
  IDeltaMessage,
  KernelMessage,
  RUNNING_INTS,
  bytesOf,
  typedCopy
} from '../wire/messages';
import { KIND_CODES, RecordReader } from '../wire/records';
import { Column } from './columns';

/** Number of segment kinds; kind 0 is `queued`, the rest are slot-holding. */
export const N_KINDS = KIND_CODES.length;

export interface IRunning {
  id: number;
  lane: number;
  slot: number;
  name: number;
  submitted: number;
  /** NaN while still queued. */
  started: number;
  args: string;
}

export class Store {
  constructor() {
    this.clear(0n);
  }

  origin = 0n;
  seq = 0;
  lanes: string[] = [];
  names: string[] = [];
  // per task
  id = new Column(Float64Array);
  sub = new Column(Float64Array);
  free = new Column(Float64Array);
  start = new Column(Float64Array);
  fin = new Column(Float64Array);
  cpu = new Column(Float64Array);
  wait = new Column(Float64Array);
  gil = new Column(Float64Array);
  runq = new Column(Float64Array);
  lane = new Column(Uint16Array);
  slot = new Column(Int32Array);
  outcome = new Column(Uint8Array);
  name = new Column(Uint16Array);
  seg0 = new Column(Uint32Array);
  nseg = new Column(Uint32Array);
  /** The body's longest segment kind: the colour of a task narrower than a pixel. */
  dom = new Column(Uint8Array);
  args: string[] = [];
  errors = new Map<number, string>();
  // per segment
  segEnd = new Column(Float64Array);
  segKind = new Column(Uint8Array);
  // rows: one per (lane, slot), sorted by lane index then slot (never-started last)
  rowOf = new Map<string, number>();
  rowKeys: Array<[number, number]> = [];
  /** Per row: task indices in start order (a slot runs its tasks one after another). */
  rowTasks: number[][] = [];
  running: IRunning[] = [];
  // per sample
  sampleT = new Column(Float64Array);
  sampleProc = new Column(Float32Array);
  sampleCores = new Column(Float32Array);
  sampleLanes: Float32Array[] = [];
  nCores = 0;
  /** The kernel's clock at the last message (relative ns): the live edge. */
  now = 0;
  maxFinished = 0;
  ended = false;
  done = 0;
  total = 0;

  get n(): number {
    return this.id.n;
  }

  /** Drop everything (a reset, or the last view went away) and start over at `origin`. */
  clear(origin: bigint): void {
    this.origin = origin;
    this.seq = 0;
    this.lanes = [];
    this.names = [];
    for (const c of this._columns()) {
      c.clear();
    }
    this.args = [];
    this.errors = new Map();
    this.rowOf = new Map();
    this.rowKeys = [];
    this.rowTasks = [];
    this.running = [];
    this.sampleLanes = [];
    this.nCores = 0;
    this.now = 0;
    this.maxFinished = 0;
    this.ended = false;
    this.done = 0;
    this.total = 0;
  }

  /** Bytes held in columns (for tests and for the page's memory budget). */
  get byteSize(): number {
    let n = 0;
    for (const c of this._columns()) {
      n += c.a.byteLength;
    }
    return n;
  }

  ingest(msg: KernelMessage, buffers: Buffer[]): void {
    if (msg.type === 'reset') {
      this.clear(BigInt(msg.t0_ns));
      this.seq = msg.seq - 1;
    } else if (msg.type === 'end') {
      this.ended = true;
      this.running = [];
      this.now = Math.max(this.now, this._rel(msg.now_ns));
    } else if (msg.type === 'delta') {
      this._delta(msg, buffers);
    }
  }

  row(lane: number, slot: number): number {
    const key = `${lane}:${slot}`;
    const r = this.rowOf.get(key);
    if (r !== undefined) {
      return r;
    }
    this.rowKeys.push([lane, slot]);
    const order = this.rowKeys
      .map((k, i): [[number, number], number] => [k, i])
      .sort((x, y) => x[0][0] - y[0][0] || Number(x[0][1] < 0) - Number(y[0][1] < 0) || x[0][1] - y[0][1]);
    const old = this.rowTasks;
    this.rowOf = new Map();
    this.rowKeys = order.map(([k]) => k);
    this.rowTasks = order.map(([, i]) => (i < old.length ? old[i] : []));
    this.rowKeys.forEach((k, j) => this.rowOf.set(`${k[0]}:${k[1]}`, j));
    return this.rowOf.get(key)!;
  }

  private _rel(ns: number): number {
    return Number(BigInt(ns) - this.origin);
  }

  private _columns(): Column<any>[] {
    return [...this._taskColumns(), this.segEnd, this.segKind, this.sampleT, this.sampleProc, this.sampleCores];
  }

  private _taskColumns(): Column<any>[] {
    return [
      this.id, this.sub, this.free, this.start, this.fin, this.cpu, this.wait, this.gil, this.runq,
      this.lane, this.slot, this.outcome, this.name, this.seg0, this.nseg, this.dom
    ];
  }

  private _delta(msg: IDeltaMessage, buffers: Buffer[]): void {
    if (!this.origin) {
      this.origin = BigInt(msg.t0_ns);
    }
    this.seq = msg.seq;
    this.lanes = msg.lanes;
    this.names.push(...msg.names);
    const nt = msg.n_tasks;
    const base = this.n;
    this._tasks(bytesOf(buffers[0]), typedCopy(buffers[1], Uint32Array), typedCopy(buffers[2], Uint16Array), nt);
    for (const [k, text] of msg.errors) {
      this.errors.set(base + k, text);
    }
    this._running(msg, typedCopy(buffers[3], BigInt64Array));
    this._samples(msg, typedCopy(buffers[4], Float32Array));
    this.now = Math.max(this.now, this._rel(msg.now_ns));
    this.done = msg.done;
    this.total = msg.total;
  }

  private _tasks(bytes: Uint8Array, ends: Uint32Array, codes: Uint16Array, nt: number): void {
    const reader = new RecordReader(bytes, this.origin);
    for (const c of this._taskColumns()) {
      c.reserve(nt);
    }
    let o = 0;
    for (let i = 0; i < nt; i++) {
      const h = reader.head(o);
      const k = this.n;
      this.id.push(h.id);
      this.sub.push(h.submitted);
      this.free.push(h.slotFree);
      this.start.push(h.started);
      this.fin.push(h.finished);
      this.cpu.push(h.cpu);
      this.wait.push(h.wait);
      this.gil.push(h.gil);
      this.runq.push(h.runq);
      this.slot.push(h.slot);
      const lane = codes[i * CODE_INTS];
      this.lane.push(lane);
      this.outcome.push(codes[i * CODE_INTS + 1]);
      this.name.push(codes[i * CODE_INTS + 2]);
      this.seg0.push(this.segEnd.n);
      this.nseg.push(h.nSegments);
      this.segEnd.reserve(h.nSegments);
      this.segKind.reserve(h.nSegments);
      let prev = h.submitted;
      let dom = 0;
      let domLen = -1;
      for (let j = 0; j < h.nSegments; j++) {
        const kind = reader.segmentKind(o, j);
        const end = h.submitted + reader.segmentEnd(o, j);
        this.segKind.push(kind);
        this.segEnd.push(end);
        if (kind !== 0 && end - prev > domLen) {
          dom = kind;
          domLen = end - prev;
        }
        prev = end;
      }
      this.dom.push(dom);
      this.args.push(reader.args(o, h.nSegments, ends[i]));
      o = ends[i];
      this._addToRow(this.row(lane, h.slot), k);
      this.maxFinished = Math.max(this.maxFinished, h.finished);
    }
  }

  private _addToRow(r: number, k: number): void {
    const list = this.rowTasks[r];
    const start = this.start.a;
    if (!list.length || start[list[list.length - 1]] <= start[k]) {
      list.push(k); // the usual case: a slot's tasks arrive in start order
      return;
    }
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const m = (lo + hi) >> 1;
      if (start[list[m]] <= start[k]) {
        lo = m + 1;
      } else {
        hi = m;
      }
    }
    list.splice(lo, 0, k);
  }

  private _running(msg: IDeltaMessage, run: BigInt64Array): void {
    // replaced wholesale: bounded by the lanes' limits
    this.running = [];
    for (let i = 0; i < msg.n_running; i++) {
      const o = i * RUNNING_INTS;
      const lane = Number(run[o + 1]);
      const slot = Number(run[o + 2]);
      if (slot >= 0) {
        this.row(lane, slot);
      }
      this.running.push({
        id: Number(run[o]),
        lane,
        slot,
        name: Number(run[o + 3]),
        submitted: Number(run[o + 4] - this.origin),
        started: run[o + 5] ? Number(run[o + 5] - this.origin) : NaN,
        args: msg.running_args[i] ?? ''
      });
    }
  }

  private _samples(msg: IDeltaMessage, smp: Float32Array): void {
    const w = msg.sample_width;
    if (msg.n_cores) {
      this.nCores = msg.n_cores;
    }
    const nc = this.nCores;
    const nl = (w - 2 - nc) / 3;
    for (let i = 0; i < msg.n_samples; i++) {
      const o = i * w;
      this.sampleT.push(smp[o] * 1e6); // ms after t0 on the wire: float32 keeps 7 digits
      this.sampleProc.push(smp[o + 1]);
      this.sampleCores.reserve(nc);
      for (let c = 0; c < nc; c++) {
        this.sampleCores.push(smp[o + 2 + c]);
      }
      this.sampleLanes.push(smp.slice(o + 2 + nc, o + 2 + nc + 3 * nl));
    }
  }
}
