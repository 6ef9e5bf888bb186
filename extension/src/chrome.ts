/**
 * Chrome Trace Event JSON (lanepar's Perfetto export) -> the viewer's model.
 *
 * The exporter writes each task body as an `X` event whose `args` carry the exact
 * nanosecond timestamps, so those are preferred over the microsecond `ts`/`dur`
 * of the child events; the children (`cpu`/`wait` slices, `dispatch` slices,
 * `queued` async spans) are only used for what `args` cannot give back: the
 * cpu/wait segment boundaries, or queued/dispatch spans when a hand-written or
 * trimmed file lacks the `*_ns` arguments.
 */

import {
  ILaneInfo,
  ISample,
  ITask,
  ITraceModel,
  Phase,
  Segment,
  TraceFormatError,
  isObject,
  num,
  readEvents,
  readLanes,
  str
} from './model';

interface IChromeEvent {
  ph: string;
  name: string;
  cat: string;
  pid: number;
  tid: number;
  /** Relative ns (converted from µs at read time). */
  t: number;
  dur: number;
  id: string | null;
  args: Record<string, unknown>;
}

/** Time slack when matching child slices to their task: `ts` is rounded to the µs. */
const SLACK_NS = 1500;

function readEvent(raw: unknown): IChromeEvent | null {
  if (!isObject(raw) || typeof raw.ph !== 'string') {
    return null;
  }
  return {
    ph: raw.ph,
    name: str(raw.name),
    cat: str(raw.cat),
    pid: num(raw.pid),
    tid: num(raw.tid),
    t: num(raw.ts) * 1000,
    dur: num(raw.dur) * 1000,
    id: raw.id === undefined || raw.id === null ? null : String(raw.id),
    args: isObject(raw.args) ? raw.args : {}
  };
}

/** True when the JSON looks like Chrome Trace Event data (object or bare array form). */
export function isChromeTrace(raw: unknown): boolean {
  if (Array.isArray(raw)) {
    return raw.length === 0 || (isObject(raw[0]) && typeof raw[0].ph === 'string');
  }
  return isObject(raw) && Array.isArray(raw.traceEvents);
}

function threadKey(pid: number, tid: number): string {
  return `${pid}:${tid}`;
}

/**
 * Where the exporter's relative clock (`ts` µs from the start) sits on the absolute
 * `perf_counter_ns` clock of the `*_ns` args. Given in `otherData.lanepar.start_ns`;
 * estimated from a task (its body starts at `ts`) when a file lost its metadata.
 */
function findStartNs(meta: Record<string, unknown>, tasks: IChromeEvent[]): number {
  if (typeof meta.start_ns === 'number') {
    return meta.start_ns;
  }
  for (const e of tasks) {
    if (typeof e.args.started_ns === 'number') {
      return e.args.started_ns - e.t;
    }
  }
  return 0;
}

function bodySegments(task: ITask, children: IChromeEvent[] | undefined): Segment[] {
  const body: Segment[] = [];
  for (const c of children ?? []) {
    const mid = c.t + c.dur / 2;
    if (mid >= task.started - SLACK_NS && mid <= task.finished + SLACK_NS) {
      body.push([c.cat as 'cpu' | 'wait', c.t, c.t + c.dur]);
    }
  }
  body.sort((a, b) => a[1] - b[1]);
  if (body.length) {
    // Snap the outer edges back onto the exact body bounds the µs rounding blurred.
    body[0][1] = task.started;
    body[body.length - 1][2] = task.finished;
    return body;
  }
  if (task.finished > task.started) {
    // No slices were exported: one segment of the dominant kind keeps the bar honest
    // about which of cpu/wait the body mostly was, without inventing boundaries.
    return [[task.cpuNs > task.waitNs ? 'cpu' : 'wait', task.started, task.finished]];
  }
  return [];
}

/** Convert Chrome Trace Event JSON written by lanepar into the viewer's model. */
export function readChromeTrace(raw: unknown): ITraceModel {
  if (!isChromeTrace(raw)) {
    throw new TraceFormatError('not Chrome Trace Event JSON: no "traceEvents" array');
  }
  const rawEvents: unknown[] = Array.isArray(raw) ? raw : ((raw as Record<string, unknown>).traceEvents as unknown[]);
  const other = !Array.isArray(raw) && isObject((raw as Record<string, unknown>).otherData)
    ? ((raw as Record<string, unknown>).otherData as Record<string, unknown>)
    : {};
  const meta = isObject(other.lanepar) ? other.lanepar : {};
  if (meta.format !== undefined && meta.format !== 'lanepar-trace') {
    throw new TraceFormatError(`otherData.lanepar.format is ${JSON.stringify(meta.format)}`);
  }

  const events = rawEvents.map(readEvent).filter((e): e is IChromeEvent => e !== null);
  const taskEvents = events.filter(e => e.ph === 'X' && e.cat === 'task');
  if (!taskEvents.length && !events.some(e => e.ph === 'C')) {
    throw new TraceFormatError('no lanepar tasks (X events with cat "task") in this trace');
  }
  const startNs = findStartNs(meta, taskEvents);
  const rel = (v: unknown, fallback: number): number =>
    typeof v === 'number' ? v - startNs : fallback;

  // Lane names by pid, for files whose task args lack "lane".
  const processNames = new Map<number, string>();
  // Children indexed by thread so that each task scans only its own row.
  const slices = new Map<string, IChromeEvent[]>();
  const phases = new Map<string, IChromeEvent[]>();
  const dispatch = new Map<string, IChromeEvent[]>();
  const queuedBegin = new Map<string, number>();
  const queuedSpans = new Map<string, [number, number]>();
  const samples: ISample[] = [];

  const push = (m: Map<string, IChromeEvent[]>, e: IChromeEvent): void => {
    const k = threadKey(e.pid, e.tid);
    const list = m.get(k);
    if (list) {
      list.push(e);
    } else {
      m.set(k, [e]);
    }
  };

  for (const e of events) {
    if (e.ph === 'M' && e.name === 'process_name' && typeof e.args.name === 'string') {
      processNames.set(e.pid, e.args.name);
    } else if (e.ph === 'X' && (e.cat === 'cpu' || e.cat === 'wait')) {
      push(slices, e);
    } else if (e.ph === 'X' && e.cat === 'phase') {
      push(phases, e);
    } else if (e.ph === 'X' && e.cat === 'dispatch') {
      push(dispatch, e);
    } else if (e.cat === 'queued' && e.id !== null && (e.ph === 'b' || e.ph === 'B')) {
      queuedBegin.set(e.id, e.t);
    } else if (e.cat === 'queued' && e.id !== null && (e.ph === 'e' || e.ph === 'E')) {
      queuedSpans.set(e.id, [queuedBegin.get(e.id) ?? e.t, e.t]);
    } else if (e.ph === 'C' && e.name === 'cpu') {
      const cores: number[] = [];
      for (const [k, v] of Object.entries(e.args)) {
        const m = /^core(\d+)$/.exec(k);
        if (m) {
          cores[Number(m[1])] = num(v) / 100;
        }
      }
      const proc = e.args.proc_cpu ?? e.args.proc;
      samples.push({
        t: e.t,
        cores: Array.from(cores, c => c ?? 0),
        procCpu: num(proc, NaN),
        lanes: {}
      });
    }
  }

  const tasks: ITask[] = [];
  for (const e of taskEvents) {
    const a = e.args;
    const key = threadKey(e.pid, e.tid);
    const id = num(a.id, tasks.length + 1);
    const started = rel(a.started_ns, e.t);
    const finished = rel(a.finished_ns, e.t + e.dur);
    const q = queuedSpans.get(String(id));
    const d = (dispatch.get(key) ?? []).find(
      x => Math.abs(x.t + x.dur - started) <= SLACK_NS
    );
    const slotFree = rel(a.slot_free_ns, d ? d.t : started);
    const submitted = rel(a.submitted_ns, q ? q[0] : slotFree);
    const extraError = typeof a.error === 'string' ? a.error : null;
    const task: ITask = {
      id,
      lane: str(a.lane, processNames.get(e.pid) ?? `pid ${e.pid}`),
      name: e.name,
      args: str(a.args),
      outcome: str(a.outcome, extraError ? 'error' : 'ok'),
      submitted,
      slotFree,
      started,
      finished,
      cpuNs: num(a.cpu_ns),
      waitNs: num(a.wait_ns),
      slot: num(a.slot, e.tid - 1),
      segments: [],
      phases: [],
      error: extraError,
      worker: typeof a.worker === 'string' ? a.worker : null
    };
    const segs: Segment[] = [];
    if (slotFree > submitted) {
      segs.push(['queued', submitted, slotFree]);
    }
    if (started > slotFree) {
      segs.push(['dispatch', slotFree, started]);
    }
    task.segments = segs.concat(bodySegments(task, slices.get(key)));
    task.phases = (phases.get(key) ?? [])
      .filter(p => p.t >= started - SLACK_NS && p.t + p.dur <= finished + SLACK_NS)
      .map((p): Phase => [p.name, p.t, p.t + p.dur]);
    tasks.push(task);
  }
  tasks.sort((a, b) => a.id - b.id);
  samples.sort((a, b) => a.t - b.t);

  let lanes: Record<string, ILaneInfo> = readLanes(meta.lanes);
  if (!Object.keys(lanes).length) {
    lanes = {};
    for (const t of tasks) {
      lanes[t.lane] = lanes[t.lane] ?? { kind: '?', priority: 99 };
    }
  }
  const lastFinish = tasks.reduce((m, t) => Math.max(m, t.finished), 0);
  const lastSample = samples.length ? samples[samples.length - 1].t : 0;
  return {
    source: 'chrome',
    startNs,
    end: typeof meta.end_ns === 'number' ? meta.end_ns - startNs : Math.max(lastFinish, lastSample),
    nCores: num(meta.n_cores, samples.length ? samples[0].cores.length : 0),
    dropped: num(meta.dropped),
    lanes,
    events: readEvents(meta.events, startNs),
    tasks,
    samples,
    summary: isObject(meta.summary) ? meta.summary : null
  };
}
