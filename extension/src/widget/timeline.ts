/**
 * The live timeline painter: per lane a queue row (how many tasks wait for a slot, as a grey
 * bar whose height follows the count), then one labelled row per worker slot holding its
 * tasks' dispatch and body segments, drawn from the store's columns.
 *
 * Cost follows pixels, not tasks: each segment kind is one Path2D filled once; segments
 * narrower than a pixel are binned per pixel column and the column takes the colour of the
 * kind with the most time in it; rows are binary-searched to the visible window.
 */

import { formatTick, niceTicks } from '../format';
import { COLORS, OUTCOME_COLORS, OUTLINE, RUNNING } from '../palette';
import { OUTCOME_CODES, KIND_CODES } from '../wire/records';
import { N_KINDS, Store } from './store';
import type { Outcome, SegmentKind } from '../model';

/** px left of the plot for row labels. */
export const GUTTER = 96;
export const AXIS_H = 22;

export interface IWindow {
  /** Visible times (relative ns) mapped onto [GUTTER, width]. */
  t0: number;
  t1: number;
  width: number;
}

/** A line of the timeline: a lane's queue, or one of its worker slots (a store row). */
export interface IDisplayRow {
  lane: number;
  /** The store row of a slot; -1 for the lane's queue row. */
  r: number;
}

/** Per lane (in lane order): its queue row, then its slot rows. */
export function displayRows(st: Store): IDisplayRow[] {
  const lanes = new Set<number>();
  for (const [lane] of st.rowKeys) {
    lanes.add(lane);
  }
  for (const t of st.running) {
    lanes.add(t.lane);
  }
  const out: IDisplayRow[] = [];
  for (const lane of [...lanes].sort((a, b) => a - b)) {
    out.push({ lane, r: -1 });
    st.rowKeys.forEach(([l], r) => {
      if (l === lane) {
        out.push({ lane, r });
      }
    });
  }
  return out;
}

/** Row height: tall rows when there are few, never under 8 px so every label stays legible. */
export function rowHeight(rows: number): number {
  return Math.max(8, Math.min(18, Math.floor(360 / Math.max(1, rows))));
}

export function timelineHeight(rows: number): number {
  return Math.max(60, rows * rowHeight(rows)) + AXIS_H + 4;
}

/** How many tasks of `lane` wait for a slot, per pixel column of [t0, t1] (time-averaged). */
export function queueDepth(st: Store, lane: number, win: IWindow): Float32Array {
  const pw = Math.max(1, Math.ceil(win.width - GUTTER));
  const k = (win.width - GUTTER) / Math.max(win.t1 - win.t0, 1e-9);
  const diff = new Float32Array(pw + 2);
  const add = (a: number, b: number): void => {
    const x0 = Math.max((a - win.t0) * k, 0);
    const x1 = Math.min((b - win.t0) * k, pw);
    if (x1 <= x0) {
      return;
    }
    const i0 = Math.floor(x0);
    const i1 = Math.floor(x1);
    if (i0 === i1) {
      diff[i0] += x1 - x0;
      diff[i0 + 1] -= x1 - x0;
      return;
    }
    // partial first and last columns, whole columns in between (a difference array: O(1))
    diff[i0] += i0 + 1 - x0;
    diff[i0 + 1] -= i0 + 1 - x0;
    diff[i0 + 1] += 1;
    diff[i1] -= 1;
    diff[i1] += x1 - i1;
    diff[i1 + 1] -= x1 - i1;
  };
  st.rowKeys.forEach(([l], r) => {
    if (l !== lane) {
      return;
    }
    for (const i of st.rowTasks[r]) {
      if (st.free.a[i] > st.sub.a[i]) {
        add(st.sub.a[i], st.slot.a[i] >= 0 ? st.free.a[i] : st.fin.a[i]);
      }
    }
  });
  for (const t of st.running) {
    if (t.lane === lane) {
      add(t.submitted, isFinite(t.started) ? Math.min(t.started, st.now) : st.now);
    }
  }
  const out = new Float32Array(pw);
  let acc = 0;
  for (let i = 0; i < pw; i++) {
    acc += diff[i];
    out[i] = acc;
  }
  return out;
}

export function drawTimeline(ctx: CanvasRenderingContext2D, st: Store, win: IWindow): void {
  const shown = displayRows(st);
  const rh = rowHeight(shown.length);
  const w = win.width;
  const pw = w - GUTTER;
  const { t0, t1 } = win;
  const k = pw / Math.max(t1 - t0, 1e-9);
  const X = (t: number): number => GUTTER + (t - t0) * k;
  drawRowLabels(ctx, st, shown, w, rh);

  const paths = KIND_CODES.map(() => new Path2D());
  const outlines = OUTCOME_CODES.map(() => new Path2D());
  const gaps = new Path2D(); // a 1 px gap where a task starts, so neighbours stay distinct
  const bins = new Float32Array(Math.ceil(pw + 2) * N_KINDS);
  const pad = rh >= 6 ? 1 : 0;
  shown.forEach((row, d) => {
    const y = d * rh + pad;
    const bh = rh - 2 * pad;
    if (row.r < 0) {
      drawQueue(paths[0], queueDepth(st, row.lane, win), y, bh);
      return;
    }
    const list = st.rowTasks[row.r];
    // first task that may be visible: tasks in a row are in start order and never overlap
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const m = (lo + hi) >> 1;
      if (st.fin.a[list[m]] < t0) {
        lo = m + 1;
      } else {
        hi = m;
      }
    }
    let binned = false;
    for (let j = Math.max(0, lo - 64); j < list.length; j++) {
      const i = list[j];
      if (st.start.a[i] > t1) {
        break;
      }
      if (st.fin.a[i] < t0) {
        continue;
      }
      const s0 = st.sub.a[i];
      const free = st.slot.a[i] >= 0 ? st.free.a[i] : st.fin.a[i];
      const xa = X(free);
      const xb = X(st.fin.a[i]);
      if (xb - xa < 1) {
        // the whole body fits in a pixel: count it for its dominant kind, skip its segments
        if (xb >= GUTTER && xa < w) {
          binned = true;
          bins[Math.floor(Math.max(xa, GUTTER) - GUTTER) * N_KINDS + st.dom.a[i]] += Math.max(xb - xa, 0.05);
        }
      } else {
        let prev = s0;
        const a = st.seg0.a[i];
        const n = st.nseg.a[i];
        for (let q = 0; q < n; q++) {
          const end = st.segEnd.a[a + q];
          const kind = st.segKind.a[a + q];
          const x0 = Math.max(X(prev), GUTTER);
          const x1 = Math.min(X(end), w);
          prev = end;
          // queued time is drawn on the lane's queue row, never on a slot it did not hold
          if (kind === 0 || x1 <= x0 || kind >= N_KINDS) {
            continue;
          }
          if (x1 - x0 >= 1) {
            paths[kind].rect(x0, y, x1 - x0, bh);
          } else {
            binned = true;
            bins[Math.floor(x0 - GUTTER) * N_KINDS + kind] += x1 - x0;
          }
        }
        if (xb - xa >= 5 && xa >= GUTTER) {
          gaps.rect(xa, y, 1, bh);
        }
      }
      const oc = st.outcome.a[i];
      if (oc !== 0 && oc < outlines.length) {
        const x0 = Math.max(X(st.start.a[i] || s0), GUTTER);
        const x1 = Math.min(X(st.fin.a[i]), w);
        outlines[oc].rect(x0, y, Math.max(x1 - x0, 2), bh);
      }
    }
    if (binned) {
      flushBins(bins, paths, y, bh);
    }
  });
  for (let kind = 0; kind < N_KINDS; kind++) {
    ctx.fillStyle = COLORS[KIND_CODES[kind] as SegmentKind];
    ctx.fill(paths[kind]);
  }
  ctx.fillStyle = '#ffffff';
  ctx.fill(gaps);
  drawRunning(ctx, st, X, w, rh, pad, shown);
  drawOutlines(ctx, outlines);
  if (!st.ended && st.now >= t0 && st.now <= t1) {
    ctx.fillStyle = 'rgba(0,0,0,0.35)'; // the live edge
    ctx.fillRect(X(st.now), 0, 1, shown.length * rh);
  }
  drawAxis(ctx, win, shown.length * rh + 2);
}

/** Queue depth as grey bars: as tall as the count, at least a third of the row when any. */
function drawQueue(path: Path2D, depth: Float32Array, y: number, bh: number): void {
  let most = 0;
  for (const d of depth) {
    most = Math.max(most, d);
  }
  if (most <= 0) {
    return;
  }
  for (let i = 0; i < depth.length; i++) {
    const d = depth[i];
    if (d > 0.02) {
      const h = bh * Math.max(d / most, 0.34);
      path.rect(GUTTER + i, y + bh - h, 1, h);
    }
  }
}

/** Each pixel column of binned time takes the colour of the kind with the most time in it. */
function flushBins(bins: Float32Array, paths: Path2D[], y: number, bh: number): void {
  for (let px = 0; px < bins.length / N_KINDS; px++) {
    let best = -1;
    let bv = 0;
    for (let kk = 0; kk < N_KINDS; kk++) {
      const v = bins[px * N_KINDS + kk];
      if (v > bv) {
        bv = v;
        best = kk;
      }
      bins[px * N_KINDS + kk] = 0;
    }
    if (best >= 0) {
      paths[best].rect(GUTTER + px, y, 1, bh);
    }
  }
}

function drawRowLabels(ctx: CanvasRenderingContext2D, st: Store, shown: IDisplayRow[], w: number, rh: number): void {
  ctx.textBaseline = 'middle';
  const labels: string[] = []; // what each row says, for tests and assistive reading
  shown.forEach((row, d) => {
    const y = d * rh;
    if (row.r < 0) {
      // a lane starts: its name on its queue row, a rule above it
      ctx.fillStyle = '#dddddd';
      ctx.fillRect(0, y, w, 1);
      ctx.fillStyle = '#333';
      ctx.font = `bold ${Math.min(11, rh + 1)}px sans-serif`;
      ctx.fillText(st.lanes[row.lane] ?? `lane ${row.lane}`, 4, y + rh / 2, GUTTER - 44);
      ctx.fillStyle = '#888';
      ctx.font = `${Math.min(10, rh)}px sans-serif`;
      ctx.textAlign = 'right';
      ctx.fillText('queued', GUTTER - 4, y + rh / 2);
      ctx.textAlign = 'left';
      labels.push(`${st.lanes[row.lane] ?? row.lane} queued`);
      return;
    }
    const slot = st.rowKeys[row.r][1];
    ctx.fillStyle = '#666';
    ctx.font = `${Math.min(11, rh + 1)}px sans-serif`;
    ctx.textAlign = 'right';
    const label = slot < 0 ? 'never ran' : `#${slot}`;
    ctx.fillText(label, GUTTER - 4, y + rh / 2);
    labels.push(`${st.lanes[row.lane] ?? row.lane} ${label}`);
    ctx.textAlign = 'left';
    if (d % 2) {
      ctx.fillStyle = 'rgba(0,0,0,0.025)';
      ctx.fillRect(GUTTER, y, w - GUTTER, rh);
    }
  });
  if (!shown.length) {
    ctx.fillStyle = '#888';
    ctx.font = '11px sans-serif';
    ctx.fillText('waiting for tasks…', GUTTER + 8, 20);
  }
  ctx.canvas.dataset.rows = JSON.stringify(labels);
}

/** Running tasks: the body so far in the running colour, up to the live edge. */
function drawRunning(
  ctx: CanvasRenderingContext2D,
  st: Store,
  X: (t: number) => number,
  w: number,
  rh: number,
  pad: number,
  shown: IDisplayRow[]
): void {
  ctx.fillStyle = RUNNING.colour;
  for (const t of st.running) {
    const r = st.rowOf.get(`${t.lane}:${t.slot}`);
    const d = r === undefined ? -1 : shown.findIndex(row => row.r === r);
    if (t.slot < 0 || !isFinite(t.started) || d < 0) {
      continue;
    }
    const x0 = Math.max(X(t.started), GUTTER);
    const x1 = Math.min(X(st.now), w);
    if (x1 > x0) {
      ctx.fillRect(x0, d * rh + pad, Math.max(x1 - x0, 1), rh - 2 * pad);
    }
  }
}

/** Tasks that did not end ok: a dark outline, dashed for cancelled and timed-out ones. */
function drawOutlines(ctx: CanvasRenderingContext2D, outlines: Path2D[]): void {
  ctx.save();
  ctx.lineWidth = 1.5;
  OUTCOME_CODES.forEach((name, code) => {
    if (code === 0) {
      return;
    }
    const outcome = name as Outcome;
    ctx.strokeStyle = outcome === 'error' ? OUTLINE : OUTCOME_COLORS[outcome];
    ctx.setLineDash(outcome === 'error' ? [] : [3, 2]);
    ctx.stroke(outlines[code]);
  });
  ctx.restore();
}

function drawAxis(ctx: CanvasRenderingContext2D, win: IWindow, y: number): void {
  const { step, ticks } = niceTicks(win.t0, win.t1, Math.max(2, (win.width - GUTTER) / 90));
  const X = (t: number): number => GUTTER + ((t - win.t0) / Math.max(win.t1 - win.t0, 1e-9)) * (win.width - GUTTER);
  ctx.fillStyle = '#444';
  ctx.fillRect(GUTTER, y, win.width - GUTTER, 1);
  ctx.font = '10px sans-serif';
  ctx.textBaseline = 'top';
  ctx.textAlign = 'left';
  const drawn: Array<[string, number, number]> = [];
  for (const t of ticks) {
    const x = X(t);
    ctx.fillRect(x, y, 1, 4);
    // keep every label inside the canvas: the last one ends at the right edge, not past it
    const label = formatTick(t, step);
    const tw = ctx.measureText(label).width;
    const x0 = Math.min(x + 2, win.width - tw - 2);
    ctx.fillText(label, x0, y + 5);
    drawn.push([label, x0, x0 + tw]);
  }
  ctx.canvas.dataset.axis = JSON.stringify({ width: win.width, labels: drawn });
}
