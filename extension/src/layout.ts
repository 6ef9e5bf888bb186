/**
 * Pure geometry and bookkeeping of the timeline: which rows exist, which task is
 * under a point, which summary figures to print. Kept free of the DOM so that it
 * is tested under plain Node with the converters.
 */

import { IHeadline, formatDuration, headline } from './format';
import { ILaneInfo, ITask, ITraceModel } from './model';

export interface IRow {
  lane: string;
  /** Worker slot, or -1 for tasks that never got one (cancelled while queued). */
  slot: number;
  label: string;
  /** Sorted by `slotFree`; bodies in one slot never overlap, which hit-testing relies on. */
  tasks: ITask[];
}

export interface ILaneGroup {
  lane: string;
  info: ILaneInfo;
  rows: IRow[];
  /** [submitted, slot free] of every task that waited for a slot (drawn on the queue row). */
  waits: Array<[number, number]>;
}

/** One group per lane (by priority, then name), one row per worker slot used ("lane#slot"). */
export function buildGroups(model: ITraceModel): ILaneGroup[] {
  const byLane = new Map<string, Map<number, ITask[]>>();
  for (const t of model.tasks) {
    let slots = byLane.get(t.lane);
    if (!slots) {
      slots = new Map();
      byLane.set(t.lane, slots);
    }
    const slot = t.slot >= 0 ? t.slot : -1;
    const list = slots.get(slot);
    if (list) {
      list.push(t);
    } else {
      slots.set(slot, [t]);
    }
  }
  const groups: ILaneGroup[] = [];
  for (const [lane, slots] of byLane) {
    const rows: IRow[] = [...slots.entries()]
      .sort((a, b) => (a[0] < 0 ? 1 : b[0] < 0 ? -1 : a[0] - b[0]))
      .map(([slot, tasks]) => ({
        lane,
        slot,
        label: slot >= 0 ? `${lane}#${slot}` : `${lane} (never ran)`,
        tasks: tasks.slice().sort((a, b) => a.slotFree - b.slotFree)
      }));
    const waits: Array<[number, number]> = [];
    for (const row of rows) {
      for (const t of row.tasks) {
        const end = t.slot >= 0 ? t.slotFree : t.finished;
        if (end > t.submitted) {
          waits.push([t.submitted, end]);
        }
      }
    }
    groups.push({ lane, info: model.lanes[lane] ?? { kind: '?', priority: 99 }, rows, waits });
  }
  groups.sort((a, b) => a.info.priority - b.info.priority || a.lane.localeCompare(b.lane));
  return groups;
}

/**
 * The task whose bar covers time `t` in `row`, within `tol` ns. Slot-holding spans
 * (dispatch + body) win over queued spans, since queued spans of waiting tasks
 * overlap the task that holds the slot.
 */
export function taskAt(row: IRow, t: number, tol: number): ITask | null {
  const tasks = row.tasks;
  let lo = 0;
  let hi = tasks.length - 1;
  let idx = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (tasks[mid].slotFree <= t + tol) {
      idx = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  let best: ITask | null = null;
  let bestGap = Infinity;
  // A couple of neighbours are enough: bars narrower than the tolerance may sit side by side.
  for (let i = Math.max(0, idx - 2); i <= Math.min(tasks.length - 1, idx + 1); i++) {
    const task = tasks[i];
    const gap = t < task.slotFree ? task.slotFree - t : t > task.finished ? t - task.finished : 0;
    if (gap <= tol && gap < bestGap && task.slot >= 0) {
      best = task;
      bestGap = gap;
    }
  }
  if (best) {
    return best;
  }
  for (const task of tasks) {
    const queuedEnd = task.slot >= 0 ? task.slotFree : task.finished;
    if (task.submitted - tol <= t && t <= queuedEnd + tol) {
      return task;
    }
  }
  return null;
}

export type IFigure = IHeadline;

/**
 * The header line: the headline figures of the trace's own summary (the same function and
 * formatter as the dashboard's panel) when it has one, else what the tasks alone tell.
 */
export function summaryFigures(model: ITraceModel): IFigure[] {
  if (model.summary) {
    const out = headline(model.summary);
    const dropped = model.summary.dropped ?? model.dropped;
    if (typeof dropped === 'number' && dropped > 0) {
      out.push({ key: 'dropped', label: 'dropped', value: String(dropped) });
    }
    return out;
  }
  const errors = model.tasks.filter(t => t.outcome !== 'ok').length;
  const out: IFigure[] = [
    { key: 'tasks', label: 'tasks', value: String(model.tasks.length) },
    { key: 'errors', label: 'errors', value: String(errors) },
    { key: 'wall_s', label: 'wall', value: formatDuration(model.end) }
  ];
  if (model.dropped) {
    out.push({ key: 'dropped', label: 'dropped', value: String(model.dropped) });
  }
  return out;
}
