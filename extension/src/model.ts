/**
 * The viewer's own picture of a trace, and the reader of lanepar's native JSON.
 *
 * Every time is kept in nanoseconds *relative to the trace start* as a plain
 * number: absolute `perf_counter_ns()` values are too large to subtract from
 * each other on every frame without noise, and both input formats (native and
 * Chrome) can be mapped onto this one shape, so the renderer never branches on
 * where the data came from.
 */

export const MIME_TYPE = 'application/vnd.lanepar.trace+json';

export type SegmentKind = 'queued' | 'dispatch' | 'cpu' | 'wait' | 'gil' | 'runq';
/** In kind-code order (`lanepar/trace/layout.json`); a node test checks the two agree. */
export const SEGMENT_KINDS: readonly SegmentKind[] = ['queued', 'dispatch', 'cpu', 'wait', 'gil', 'runq'];
/** Slot-holding kinds a task body is made of. */
export const BODY_KINDS: readonly SegmentKind[] = ['cpu', 'wait', 'gil', 'runq'];

export type Outcome = 'ok' | 'error' | 'cancelled' | 'timeout';

/** [kind, start, end], relative ns. */
export type Segment = [SegmentKind, number, number];
/** [name, start, end], relative ns. */
export type Phase = [string, number, number];

export interface ILaneInfo {
  kind: string;
  priority: number;
  min_concurrency?: number;
  max_concurrency?: number;
  adaptive?: boolean;
}

export interface ITask {
  id: number;
  lane: string;
  name: string;
  args: string;
  outcome: string;
  submitted: number;
  slotFree: number;
  started: number;
  finished: number;
  cpuNs: number;
  waitNs: number;
  /** Runnable but waiting for the GIL or another lock; 0 when not observed. */
  gilNs: number;
  /** Runnable but waiting for a free core (OS run queue); 0 when not observed. */
  runqNs: number;
  /** Worker slot within the lane; -1 when the body never started. */
  slot: number;
  segments: Segment[];
  phases: Phase[];
  error: string | null;
  worker: string | null;
}

export interface ISample {
  t: number;
  /** Per-core utilisation, 0..1. */
  cores: number[];
  /** Process-tree CPU in cores; NaN when the source did not record it. */
  procCpu: number;
  lanes: Record<string, [number, number, number]>;
}

export interface ITraceEvent {
  t: number;
  type: string;
  fields: Record<string, unknown>;
}

export interface ITraceModel {
  source: 'lanepar' | 'chrome';
  /** Absolute start on the recording clock (ns); all other times are relative to it. */
  startNs: number;
  /** Relative end, i.e. the trace's wall time in ns. */
  end: number;
  nCores: number;
  dropped: number;
  lanes: Record<string, ILaneInfo>;
  events: ITraceEvent[];
  tasks: ITask[];
  samples: ISample[];
  summary: Record<string, unknown> | null;
}

/** Raised for input the viewer cannot show; the message is displayed to the user. */
export class TraceFormatError extends Error {}

type JSONObject = Record<string, unknown>;

export function isObject(v: unknown): v is JSONObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function num(v: unknown, fallback = 0): number {
  return typeof v === 'number' && isFinite(v) ? v : fallback;
}

export function str(v: unknown, fallback = ''): string {
  return typeof v === 'string' ? v : fallback;
}

function isSegmentKind(v: unknown): v is SegmentKind {
  return (SEGMENT_KINDS as readonly unknown[]).includes(v);
}

export function readLanes(raw: unknown): Record<string, ILaneInfo> {
  const out: Record<string, ILaneInfo> = {};
  if (!isObject(raw)) {
    return out;
  }
  for (const [name, info] of Object.entries(raw)) {
    const o = isObject(info) ? info : {};
    out[name] = {
      kind: str(o.kind, '?'),
      priority: num(o.priority, 99),
      min_concurrency: typeof o.min_concurrency === 'number' ? o.min_concurrency : undefined,
      max_concurrency: typeof o.max_concurrency === 'number' ? o.max_concurrency : undefined,
      adaptive: typeof o.adaptive === 'boolean' ? o.adaptive : undefined
    };
  }
  return out;
}

export function readEvents(raw: unknown, startNs: number): ITraceEvent[] {
  if (!Array.isArray(raw)) {
    return [];
  }
  const out: ITraceEvent[] = [];
  for (const e of raw) {
    if (!isObject(e) || typeof e.t_ns !== 'number') {
      continue;
    }
    const fields: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(e)) {
      if (k !== 't_ns' && k !== 'type') {
        fields[k] = v;
      }
    }
    out.push({ t: e.t_ns - startNs, type: str(e.type, 'event'), fields });
  }
  out.sort((a, b) => a.t - b.t);
  return out;
}

function readPhases(raw: unknown, startNs: number): Phase[] {
  if (!Array.isArray(raw)) {
    return [];
  }
  const out: Phase[] = [];
  for (const p of raw) {
    if (Array.isArray(p) && p.length >= 3 && typeof p[1] === 'number' && typeof p[2] === 'number') {
      out.push([String(p[0]), p[1] - startNs, p[2] - startNs]);
    }
  }
  return out;
}

function readTask(raw: unknown, startNs: number): ITask | null {
  if (!isObject(raw) || typeof raw.id !== 'number') {
    return null;
  }
  const rel = (v: unknown): number => num(v, startNs) - startNs;
  const segments: Segment[] = [];
  if (Array.isArray(raw.segments)) {
    for (const s of raw.segments) {
      if (Array.isArray(s) && isSegmentKind(s[0]) && typeof s[1] === 'number' && typeof s[2] === 'number') {
        segments.push([s[0], s[1] - startNs, s[2] - startNs]);
      }
    }
  }
  const extra = isObject(raw.extra) ? raw.extra : {};
  const submitted = rel(raw.submitted_ns);
  const finished = rel(raw.finished_ns);
  return {
    id: raw.id,
    lane: str(raw.lane, '?'),
    name: str(raw.name, '?'),
    args: str(raw.args),
    outcome: str(raw.outcome, 'ok'),
    submitted,
    slotFree: typeof raw.slot_free_ns === 'number' ? raw.slot_free_ns - startNs : submitted,
    started: typeof raw.started_ns === 'number' ? raw.started_ns - startNs : submitted,
    finished,
    cpuNs: num(raw.cpu_ns),
    waitNs: num(raw.wait_ns),
    gilNs: num(raw.gil_ns),
    runqNs: num(raw.runq_ns),
    slot: num(raw.slot, -1),
    segments,
    phases: readPhases(extra.phases, startNs),
    error: typeof extra.error === 'string' ? extra.error : null,
    worker: typeof extra.worker === 'string' ? extra.worker : null
  };
}

function readSample(raw: unknown, startNs: number): ISample | null {
  if (!Array.isArray(raw) || typeof raw[0] !== 'number') {
    return null;
  }
  const cores = Array.isArray(raw[1]) ? raw[1].map(c => num(c)) : [];
  const lanes: Record<string, [number, number, number]> = {};
  if (isObject(raw[3])) {
    for (const [k, v] of Object.entries(raw[3])) {
      if (Array.isArray(v)) {
        lanes[k] = [num(v[0]), num(v[1]), num(v[2])];
      }
    }
  }
  return { t: raw[0] - startNs, cores, procCpu: num(raw[2], NaN), lanes };
}

/** Read lanepar's native trace JSON (`Trace.to_dict()`), checking what the viewer relies on. */
export function readLaneparTrace(raw: unknown): ITraceModel {
  if (!isObject(raw)) {
    throw new TraceFormatError('a lanepar trace must be a JSON object');
  }
  if (raw.format !== 'lanepar-trace') {
    throw new TraceFormatError(
      `not a lanepar trace: "format" is ${JSON.stringify(raw.format)}, expected "lanepar-trace"`
    );
  }
  if (num(raw.version, 0) !== 1) {
    throw new TraceFormatError(
      `unsupported lanepar trace version ${JSON.stringify(raw.version)} (this viewer reads version 1)`
    );
  }
  const tasksRaw = Array.isArray(raw.tasks) ? raw.tasks : [];
  const firstSubmitted = tasksRaw.reduce<number>(
    (m, t) => (isObject(t) && typeof t.submitted_ns === 'number' ? Math.min(m, t.submitted_ns) : m),
    Infinity
  );
  const startNs = num(raw.start_ns, isFinite(firstSubmitted) ? firstSubmitted : 0);
  const tasks: ITask[] = [];
  for (const t of tasksRaw) {
    const task = readTask(t, startNs);
    if (task) {
      tasks.push(task);
    }
  }
  const samples: ISample[] = [];
  for (const s of Array.isArray(raw.samples) ? raw.samples : []) {
    const sample = readSample(s, startNs);
    if (sample) {
      samples.push(sample);
    }
  }
  samples.sort((a, b) => a.t - b.t);
  const lastFinish = tasks.reduce((m, t) => Math.max(m, t.finished), 0);
  return {
    source: 'lanepar',
    startNs,
    end: typeof raw.end_ns === 'number' ? raw.end_ns - startNs : lastFinish,
    nCores: num(raw.n_cores, samples.length ? samples[0].cores.length : 0),
    dropped: num(raw.dropped),
    lanes: readLanes(raw.lanes),
    events: readEvents(raw.events, startNs),
    tasks,
    samples,
    summary: isObject(raw.summary) ? raw.summary : null
  };
}
