/** Tooltip lines of the trace viewer: a task's story, or the cores at one instant. */

import { coreCount, coreRowHeight } from './draw';
import { formatDuration, trim } from './format';
import { ILaneGroup } from './layout';
import { ITask, ITraceModel } from './model';
import { LABELS } from './palette';

export function taskLines(task: ITask, group: ILaneGroup): Array<[string, string]> {
  const f = formatDuration;
  const lines: Array<[string, string]> = [[task.name, `#${task.id}`]];
  if (task.args) {
    lines.push(['args', task.args]);
  }
  lines.push(['lane', task.slot >= 0 ? `${task.lane}#${task.slot} (${group.info.kind})` : `${task.lane} (never ran)`]);
  lines.push(['outcome', task.error ? `${task.outcome}: ${task.error}` : task.outcome]);
  lines.push(['queued', f(task.slotFree - task.submitted)]);
  if (task.slot >= 0) {
    lines.push(['dispatch', f(task.started - task.slotFree)]);
    const parts = [`${LABELS.cpu} ${f(task.cpuNs)}`, `${LABELS.wait} ${f(task.waitNs)}`];
    if (task.gilNs > 0) {
      parts.push(`${LABELS.gil} ${f(task.gilNs)}`);
    }
    if (task.runqNs > 0) {
      parts.push(`${LABELS.runq} ${f(task.runqNs)}`);
    }
    lines.push(['body', `${f(task.finished - task.started)} = ${parts.join(' + ')}`]);
  }
  for (const [name, s, e] of task.phases) {
    lines.push([`phase ${name}`, f(e - s)]);
  }
  if (task.worker) {
    lines.push(['worker', task.worker]);
  }
  lines.push(['submitted', `at ${f(task.submitted)}`]);
  return lines;
}

/** The queue row of a lane at time `t`: how many of its tasks waited for a slot. */
export function queueLines(group: ILaneGroup, t: number): Array<[string, string]> {
  const waiting = group.waits.filter(([a, b]) => a <= t && t < b).length;
  return [
    [`${group.lane} queue`, `at ${formatDuration(t)}`],
    ['waiting for a slot', String(waiting)],
    ['queued', 'every slot of the lane was taken (a free slot not yet used counts as dispatch)']
  ];
}

export function coreLines(model: ITraceModel, t: number, y: number): Array<[string, string]> | null {
  const s = model.samples.find(s => s.t >= t);
  const n = coreCount(model);
  const core = Math.floor((y - 16) / coreRowHeight(n));
  if (!s || core < 0 || core >= n) {
    return null;
  }
  const lines: Array<[string, string]> = [
    [`cpu${core}`, `${trim((s.cores[core] ?? 0) * 100)}%`],
    ['all cores', `${trim((s.cores.reduce((a, b) => a + b, 0) / Math.max(1, s.cores.length)) * 100)}%`]
  ];
  if (isFinite(s.procCpu)) {
    lines.push(['process', `${trim(s.procCpu)} cores`]);
  }
  for (const [lane, [active, pending, limit]] of Object.entries(s.lanes)) {
    lines.push([lane, `${active} active, ${pending} pending, limit ${limit}`]);
  }
  lines.push(['at', formatDuration(s.t)]);
  return lines;
}
