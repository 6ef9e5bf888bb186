/** What the pointer is over: a finished task, a running one, or nothing. Lines of plain text. */

import { formatDuration } from '../format';
import { LABELS, OUTCOME_LABELS } from '../palette';
import type { Outcome } from '../model';
import { OUTCOME_CODES } from '../wire/records';
import { div, span } from './dom';
import { Store } from './store';

/** A tooltip: a title (bold name + dim detail), then lines; `cls` colours a line. */
export interface ITip {
  title: [string, string];
  lines: Array<[string, string?]>;
}

/** The task under time `t` (relative ns) in row `r`, within `slop` ns, as a tooltip. */
export function tipAt(st: Store, r: number, t: number, slop: number): ITip | null {
  if (r < 0 || r >= st.rowKeys.length) {
    return null;
  }
  const list = st.rowTasks[r];
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (st.fin.a[list[m]] < t - slop) {
      lo = m + 1;
    } else {
      hi = m;
    }
  }
  for (let j = lo; j < list.length && j < lo + 4; j++) {
    const i = list[j];
    const from = st.slot.a[i] >= 0 ? st.start.a[i] : st.sub.a[i];
    if (from - slop <= t && t <= st.fin.a[i] + slop) {
      return taskTip(st, i);
    }
  }
  const [lane, slot] = st.rowKeys[r];
  for (const rt of st.running) {
    if (rt.lane === lane && rt.slot === slot && rt.started - slop <= t) {
      return {
        title: [st.names[rt.name] ?? '?', 'running'],
        lines: [
          [rt.args],
          [`${st.lanes[lane]} #${slot}`],
          [`queued ${formatDuration(rt.started - rt.submitted)} · running for ${formatDuration(st.now - rt.started)}`]
        ]
      };
    }
  }
  return null;
}

/** The queue row of `lane` at time `t`: how many tasks waited there for a slot. */
export function queueTip(st: Store, lane: number, t: number): ITip {
  let waiting = 0;
  for (let i = 0; i < st.n; i++) {
    const end = st.slot.a[i] >= 0 ? st.free.a[i] : st.fin.a[i];
    if (st.lane.a[i] === lane && st.sub.a[i] <= t && t < end) {
      waiting++;
    }
  }
  for (const rt of st.running) {
    if (rt.lane === lane && rt.submitted <= t && !(rt.started <= t)) {
      waiting++;
    }
  }
  return {
    title: [st.lanes[lane] ?? '?', 'queue'],
    lines: [
      [`${waiting} task${waiting === 1 ? '' : 's'} waiting for a slot at ${formatDuration(t)}`],
      ['queued = every slot of the lane was taken (time a slot was free counts as dispatch)']
    ]
  };
}

export function taskTip(st: Store, i: number): ITip {
  const f = formatDuration;
  const outcome = (OUTCOME_CODES[st.outcome.a[i]] ?? 'error') as Outcome;
  const slot = st.slot.a[i];
  const body = [`${LABELS.cpu} ${f(st.cpu.a[i])}`, `${LABELS.wait} ${f(st.wait.a[i])}`];
  if (st.gil.a[i] > 0) {
    body.push(`${LABELS.gil} ${f(st.gil.a[i])}`);
  }
  if (st.runq.a[i] > 0) {
    body.push(`${LABELS.runq} ${f(st.runq.a[i])}`);
  }
  body.push(`wall ${f(st.fin.a[i] - st.start.a[i])}`);
  const lines: Array<[string, string?]> = [
    [st.args[i] || ''],
    [`${st.lanes[st.lane.a[i]] ?? '?'} ${slot >= 0 ? `#${slot}` : '(never started)'}`],
    [`queued ${f(st.free.a[i] - st.sub.a[i])} · dispatch ${f(st.start.a[i] - st.free.a[i])}`],
    [body.join(' · ')],
    [`at ${f(st.start.a[i])} → ${f(st.fin.a[i])}`]
  ];
  if (outcome === 'ok') {
    lines.push([OUTCOME_LABELS.ok, 'lanepar-ok']);
  } else {
    lines.push([`${OUTCOME_LABELS[outcome]}: ${st.errors.get(i) ?? ''}`, 'lanepar-err']);
  }
  return { title: [st.names[st.name.a[i]] ?? '?', `#${st.id.a[i]}`], lines };
}

/** Fill `el` with `tip` (text nodes only: args summaries are arbitrary user text). */
export function renderTip(el: HTMLElement, tip: ITip): void {
  el.replaceChildren();
  const title = div('lanepar-tip-title', el);
  const name = document.createElement('b');
  name.textContent = tip.title[0];
  title.append(name, ' ', span('lanepar-dim', tip.title[1]));
  for (const [text, cls] of tip.lines) {
    div(cls ?? 'lanepar-tip-line', el, text);
  }
}
