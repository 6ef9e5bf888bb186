/**
 * The live timeline painter: one row per worker slot, drawn from the store's columns.
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

/** Row height: tall rows when there are few, never under 3 px, about 360 px in all. */
export function rowHeight(rows: number): number {
  return Math.max(3, Math.min(18, Math.floor(360 / Math.max(1, rows))));
}

export function timelineHeight(rows: number): number {
  return Math.max(60, rows * rowHeight(rows)) + AXIS_H + 4;
}

export function drawTimeline(ctx: CanvasRenderingContext2D, st: Store, win: IWindow): void {
  const rows = st.rowKeys.length;
  const rh = rowHeight(rows);
  const w = win.width;
  const pw = w - GUTTER;
  const { t0, t1 } = win;
  const k = pw / Math.max(t1 - t0, 1e-9);
  const X = (t: number): number => GUTTER + (t - t0) * k;
  drawRowLabels(ctx, st, w, rh);

  const paths = KIND_CODES.map(() => new Path2D());
  const outlines = OUTCOME_CODES.map(() => new Path2D());
  const gaps = new Path2D(); // a 1 px gap where a task starts, so neighbours stay distinct
  const bins = new Float32Array(Math.ceil(pw + 2) * N_KINDS);
  const pad = rh >= 6 ? 1 : 0;
  const qh = Math.max(1, Math.round((rh - 2 * pad) * 0.2));
  for (let r = 0; r < rows; r++) {
    const list = st.rowTasks[r];
    const y = r * rh + pad;
    const bh = rh - 2 * pad;
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
    let qa = -1; // the current run of merged queued underlines (one rect per run)
    let qb = -1;
    const flushQueued = (): void => {
      if (qb - qa >= 1) {
        paths[0].rect(qa, y + bh - qh, qb - qa, qh);
      }
    };
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
      // queued time is a wait for capacity, not slot occupancy: it overlaps the tasks the slot
      // ran before, so it is a thin underline over them, merged into runs
      const q0 = Math.max(X(s0), GUTTER);
      const q1 = Math.min(X(free), w);
      if (q1 > q0) {
        if (qa < 0) {
          [qa, qb] = [q0, q1];
        } else if (q0 <= qb + 1) {
          [qa, qb] = [Math.min(qa, q0), Math.max(qb, q1)];
        } else {
          flushQueued();
          [qa, qb] = [q0, q1];
        }
      }
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
    flushQueued();
    if (binned) {
      flushBins(bins, paths, y, bh);
    }
  }
  for (let kind = 1; kind < N_KINDS; kind++) {
    ctx.fillStyle = COLORS[KIND_CODES[kind] as SegmentKind];
    ctx.fill(paths[kind]);
  }
  ctx.fillStyle = '#ffffff';
  ctx.fill(gaps);
  ctx.fillStyle = COLORS.queued;
  ctx.fill(paths[0]);
  drawRunning(ctx, st, X, w, rh, pad);
  drawOutlines(ctx, outlines);
  if (!st.ended && st.now >= t0 && st.now <= t1) {
    ctx.fillStyle = 'rgba(0,0,0,0.35)'; // the live edge
    ctx.fillRect(X(st.now), 0, 1, rows * rh);
  }
  drawAxis(ctx, win, rows * rh + 2);
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

function drawRowLabels(ctx: CanvasRenderingContext2D, st: Store, w: number, rh: number): void {
  ctx.font = '11px sans-serif';
  ctx.textBaseline = 'middle';
  let prevLane = -1;
  st.rowKeys.forEach(([lane, slot], r) => {
    const y = r * rh;
    if (lane !== prevLane) {
      ctx.fillStyle = '#dddddd';
      ctx.fillRect(0, y, w, 1);
      ctx.fillStyle = '#333';
      ctx.fillText(st.lanes[lane] ?? `lane ${lane}`, 4, y + Math.max(rh, 12) / 2);
      prevLane = lane;
    } else if (rh >= 12) {
      ctx.fillStyle = '#888';
      ctx.fillText(slot < 0 ? 'not started' : `#${slot}`, 40, y + rh / 2);
    }
    if (r % 2) {
      ctx.fillStyle = 'rgba(0,0,0,0.025)';
      ctx.fillRect(GUTTER, y, w - GUTTER, rh);
    }
  });
  if (!st.rowKeys.length) {
    ctx.fillStyle = '#888';
    ctx.fillText('waiting for tasks…', GUTTER + 8, 20);
  }
}

/** Running tasks: the body so far in the running colour, up to the live edge. */
function drawRunning(
  ctx: CanvasRenderingContext2D,
  st: Store,
  X: (t: number) => number,
  w: number,
  rh: number,
  pad: number
): void {
  ctx.fillStyle = RUNNING.colour;
  for (const t of st.running) {
    const r = st.rowOf.get(`${t.lane}:${t.slot}`);
    if (t.slot < 0 || !isFinite(t.started) || r === undefined) {
      continue;
    }
    const x0 = Math.max(X(t.started), GUTTER);
    const x1 = Math.min(X(st.now), w);
    if (x1 > x0) {
      ctx.fillRect(x0, r * rh + pad, Math.max(x1 - x0, 1), rh - 2 * pad);
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
  for (const t of ticks) {
    const x = X(t);
    ctx.fillRect(x, y, 1, 4);
    ctx.fillText(formatTick(t, step), x + 2, y + 5);
  }
}
