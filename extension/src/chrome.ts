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
  BODY_KINDS,
  ILaneInfo,
  ISample,
  ITask,
  ITraceModel,
  Phase,
  Segment,
  SegmentKind,
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
 * Where the exporter's `ts` zero sits on the absolute `perf_counter_ns` clock of the
 * `*_ns` args: `otherData.lanepar.origin_ns` (earlier than `start_ns` when something
 * preceded the start, so that no `ts` is negative), else `start_ns`; estimated from a
 * task (its body starts at `ts`) when a file lost its metadata.
 */
function findOriginNs(meta: Record<string, unknown>, tasks: IChromeEvent[]): number {
  for (const k of ['origin_ns', 'start_ns']) {
    if (typeof meta[k] === 'number') {
      return meta[k] as number;
    }
  }
  for (const e of tasks) {
    if (typeof e.args.started_ns === 'number') {
      return e.args.started_ns - e.t;
    }
  }
  return 0;
}

/** Children of `task`: those tagged with its id, else (hand-written files) those inside its span. */
function childrenOf(task: ITask, byId: Map<number, IChromeEvent[]>, onThread: IChromeEvent[] | undefined): IChromeEvent[] {
  const tagged = byId.get(task.id);
  if (tagged) {
    return tagged;
  }
  return (onThread ?? []).filter(c => {
    const mid = c.t + c.dur / 2;
    return c.args.id === undefined && mid >= task.slotFree - SLACK_NS && mid <= task.finished + SLACK_NS;
  });
}

function bodySegments(task: ITask, children: IChromeEvent[]): Segment[] {
  const body: Segment[] = children.map((c): Segment => [c.cat as SegmentKind, c.t, c.t + c.dur]);
  body.sort((a, b) => a[1] - b[1]);
  if (body.length) {
    // Snap the outer edges back onto the exact body bounds when only µs rounding moved them.
    if (Math.abs(body[0][1] - task.started) <= SLACK_NS) {
      body[0][1] = task.started;
    }
    const last = body[body.length - 1];
    if (Math.abs(last[2] - task.finished) <= SLACK_NS) {
      last[2] = task.finished;
    }
    return body;
  }
  if (task.finished > task.started) {
    // No slices were exported: one segment of the dominant kind keeps the bar honest
    // about which of cpu/wait the body mostly was, without inventing boundaries.
    return [[task.cpuNs > task.waitNs ? 'cpu' : 'wait', task.started, task.finished]];
  }
  return [];
}

class Index {
  readonly byId = new Map<number, IChromeEvent[]>();
  readonly byThread = new Map<string, IChromeEvent[]>();

  add(e: IChromeEvent): void {
    const push = <K>(m: Map<K, IChromeEvent[]>, k: K): void => {
      const list = m.get(k);
      if (list) {
        list.push(e);
      } else {
        m.set(k, [e]);
      }
    };
    if (typeof e.args.id === 'number') {
      push(this.byId, e.args.id);
    }
    push(this.byThread, threadKey(e.pid, e.tid));
  }

  of(task: ITask, pid: number, tid: number): IChromeEvent[] {
    return childrenOf(task, this.byId, this.byThread.get(threadKey(pid, tid)));
  }
}

/** Counter events (`C`) of one timestamp merged into one sample, as the sampler wrote them. */
function readSamples(events: IChromeEvent[]): ISample[] {
  const byT = new Map<number, ISample>();
  const at = (t: number): ISample => {
    let s = byT.get(t);
    if (!s) {
      s = { t, cores: [], procCpu: NaN, lanes: {} };
      byT.set(t, s);
    }
    return s;
  };
  for (const e of events) {
    if (e.ph !== 'C') {
      continue;
    }
    if (e.name === 'cpu') {
      const cores: number[] = [];
      for (const [k, v] of Object.entries(e.args)) {
        const m = /^core(\d+)$/.exec(k);
        if (m) {
          cores[Number(m[1])] = num(v) / 100;
        }
      }
      at(e.t).cores = Array.from(cores, c => c ?? 0);
    } else if (e.name === 'process cpu') {
      at(e.t).procCpu = num(e.args.cores, NaN);
    } else if (e.name.startsWith('lane ')) {
      at(e.t).lanes[e.name.slice(5)] = [num(e.args.active), num(e.args.pending), num(e.args.limit)];
    }
  }
  return [...byT.values()].filter(s => s.cores.length).sort((a, b) => a.t - b.t);
}

/** Convert Chrome Trace Event JSON written by lanepar into the viewer's model. */
export function readChromeTrace(raw: unknown): ITraceModel {
  if (!isChromeTrace(raw)) {
    throw new TraceFormatError('not Chrome Trace Event JSON: no "traceEvents" array');
  }
  const doc = Array.isArray(raw) ? { traceEvents: raw } : (raw as Record<string, unknown>);
  const rawEvents = doc.traceEvents as unknown[];
  const other = isObject(doc.otherData) ? doc.otherData : {};
  const meta = isObject(other.lanepar) ? other.lanepar : {};
  if (meta.format !== undefined && meta.format !== 'lanepar-trace') {
    throw new TraceFormatError(`otherData.lanepar.format is ${JSON.stringify(meta.format)}`);
  }

  const events = rawEvents.map(readEvent).filter((e): e is IChromeEvent => e !== null);
  const taskEvents = events.filter(e => e.ph === 'X' && e.cat === 'task');
  if (!taskEvents.length && !events.some(e => e.ph === 'C' && e.name === 'cpu')) {
    throw new TraceFormatError('no lanepar tasks (X events with cat "task") in this trace');
  }
  const origin = findOriginNs(meta, taskEvents);
  const startNs = typeof meta.start_ns === 'number' ? meta.start_ns : origin;
  // Shift every `ts` so that times are relative to the trace start like the native reader's.
  const shift = origin - startNs;
  for (const e of events) {
    e.t += shift;
  }
  const rel = (v: unknown, fallback: number): number => (typeof v === 'number' ? v - startNs : fallback);

  const processNames = new Map<number, string>();
  const slices = new Index();
  const phases = new Index();
  const dispatch = new Index();
  const queuedBegin = new Map<string, number>();
  const queuedSpans = new Map<string, [number, number]>();
  for (const e of events) {
    if (e.ph === 'M' && e.name === 'process_name' && typeof e.args.name === 'string') {
      processNames.set(e.pid, e.args.name.replace(/^lane /, ''));
    } else if (e.ph === 'X' && (BODY_KINDS as readonly string[]).includes(e.cat)) {
      slices.add(e);
    } else if (e.ph === 'X' && e.cat === 'phase') {
      phases.add(e);
    } else if (e.ph === 'X' && e.cat === 'dispatch') {
      dispatch.add(e);
    } else if (e.cat === 'queued' && e.id !== null && (e.ph === 'b' || e.ph === 'B')) {
      queuedBegin.set(e.id, e.t);
    } else if (e.cat === 'queued' && e.id !== null && (e.ph === 'e' || e.ph === 'E')) {
      queuedSpans.set(e.id, [queuedBegin.get(e.id) ?? e.t, e.t]);
    }
  }

  const tasks: ITask[] = [];
  for (const e of taskEvents) {
    const a = e.args;
    const id = num(a.id, tasks.length + 1);
    const extra = isObject(a.extra) ? a.extra : {};
    const error = typeof a.error === 'string' ? a.error : null;
    const started = rel(a.started_ns, e.t);
    const task: ITask = {
      id,
      lane: str(a.lane, processNames.get(e.pid) ?? `pid ${e.pid}`),
      name: e.name,
      args: str(a.args),
      outcome: str(a.outcome, error ? 'error' : 'ok'),
      submitted: 0,
      slotFree: 0,
      started,
      finished: rel(a.finished_ns, e.t + e.dur),
      cpuNs: num(a.cpu_ns),
      waitNs: num(a.wait_ns),
      gilNs: num(a.gil_ns),
      runqNs: num(a.runq_ns),
      slot: num(a.slot, e.tid - 1),
      segments: [],
      phases: [],
      error,
      worker: typeof extra.worker === 'string' ? extra.worker : null
    };
    const d =
      dispatch.byId.get(id)?.[0] ??
      dispatch.byThread.get(threadKey(e.pid, e.tid))?.find(x => Math.abs(x.t + x.dur - started) <= SLACK_NS);
    const q = queuedSpans.get(String(id));
    task.slotFree = rel(a.slot_free_ns, d ? d.t : started);
    task.submitted = rel(a.submitted_ns, q ? q[0] : task.slotFree);
    const segs: Segment[] = [];
    if (task.slotFree > task.submitted) {
      segs.push(['queued', task.submitted, task.slotFree]);
    }
    if (task.started > task.slotFree) {
      segs.push(['dispatch', task.slotFree, task.started]);
    }
    task.segments = segs.concat(bodySegments(task, slices.of(task, e.pid, e.tid)));
    task.phases = phases.of(task, e.pid, e.tid + 10000).map((p): Phase => [p.name, p.t, p.t + p.dur]);
    tasks.push(task);
  }
  tasks.sort((a, b) => a.id - b.id);
  const samples = readSamples(events);

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
