/**
 * Canvas painting of the timeline and the per-core strip: a canvas, not SVG/DOM, because a batch
 * can hold tens of thousands of segments and every wheel tick repaints them all; painting skips
 * what is off-screen and collapses sub-pixel runs of one colour, so cost follows the pixels.
 */

import { formatTick, niceTicks } from './format';
import { ILaneGroup } from './layout';
import { ITask, ITraceModel, SEGMENT_KINDS, SegmentKind } from './model';
import { COLORS, CORE_HEAT, OUTCOME_COLORS, OUTLINE, withAlpha } from './palette';

export { COLORS } from './palette';
export const ERROR_MARK = OUTCOME_COLORS.error;

export const GUTTER = 118;
export const PAD_RIGHT = 12;
export const AXIS_H = 22;
export const LANE_H = 18;
export const ROW_H = 16;
/** Under each lane's caption: how many of its tasks wait for a slot. */
export const QUEUE_H = 12;
/** Slot-holding segments fill most of a row. */
export const BODY_H = 12;

/** The visible window: times [t0, t1] (relative ns) mapped onto [GUTTER, width - PAD_RIGHT]. */
export interface IViewport {
  t0: number;
  t1: number;
  width: number;
}

export interface ITheme {
  fg: string;
  fgDim: string;
  grid: string;
  stripe: string;
  bg: string;
  font: string;
}

export function plotWidth(vp: IViewport): number {
  return Math.max(10, vp.width - GUTTER - PAD_RIGHT);
}

export function xOf(vp: IViewport, t: number): number {
  return GUTTER + ((t - vp.t0) / (vp.t1 - vp.t0)) * plotWidth(vp);
}

export function tOf(vp: IViewport, x: number): number {
  return vp.t0 + ((x - GUTTER) / plotWidth(vp)) * (vp.t1 - vp.t0);
}

export function timelineHeight(groups: ILaneGroup[]): number {
  return AXIS_H + groups.reduce((h, g) => h + LANE_H + QUEUE_H + g.rows.length * ROW_H, 0) + 4;
}

/** Which row (if any) is at canvas y; row -1 is the lane's queue row. */
export function rowAt(groups: ILaneGroup[], y: number): { group: ILaneGroup; row: number } | null {
  let top = AXIS_H;
  for (const g of groups) {
    top += LANE_H;
    if (y >= top && y < top + QUEUE_H) {
      return { group: g, row: -1 };
    }
    top += QUEUE_H;
    const i = Math.floor((y - top) / ROW_H);
    if (y >= top && i < g.rows.length) {
      return { group: g, row: i };
    }
    top += g.rows.length * ROW_H;
  }
  return null;
}

function drawGrid(ctx: CanvasRenderingContext2D, vp: IViewport, theme: ITheme, h: number, labels: boolean): void {
  const { step, ticks } = niceTicks(vp.t0, vp.t1, Math.max(2, plotWidth(vp) / 110));
  const drawn: Array<[string, number, number]> = [];
  ctx.strokeStyle = theme.grid;
  ctx.lineWidth = 1;
  ctx.fillStyle = theme.fgDim;
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'center';
  for (const t of ticks) {
    const x = Math.round(xOf(vp, t)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(x, labels ? AXIS_H - 4 : 0);
    ctx.lineTo(x, h);
    ctx.stroke();
    if (labels) {
      // centred on its tick, but never cut by either edge of the canvas
      const label = formatTick(t, step);
      const half = ctx.measureText(label).width / 2;
      const cx = Math.min(Math.max(x, GUTTER + half), vp.width - half - 1);
      ctx.fillText(label, cx, AXIS_H / 2 - 2);
      drawn.push([label, cx - half, cx + half]);
    }
  }
  if (labels) {
    ctx.canvas.dataset.axis = JSON.stringify({ width: vp.width, labels: drawn });
  }
  ctx.textAlign = 'left';
}

/**
 * Paint one task's slot-holding segments (dispatch and body). Its queued time is not on this
 * row: the task held no slot then, and it is drawn on the lane's queue row instead.
 */
function drawTask(
  ctx: CanvasRenderingContext2D,
  vp: IViewport,
  task: ITask,
  y: number,
  lastPx: Record<SegmentKind, number>
): void {
  const segs = task.segments.length
    ? task.segments
    : ([
        ['dispatch', task.slotFree, task.started],
        [task.cpuNs > task.waitNs ? 'cpu' : 'wait', task.started, task.finished]
      ] as [SegmentKind, number, number][]);
  for (const [kind, s, e] of segs) {
    if (kind === 'queued' || e < vp.t0 || s > vp.t1 || e <= s) {
      continue;
    }
    const x0 = Math.max(GUTTER, xOf(vp, s));
    const x1 = Math.min(vp.width - PAD_RIGHT, xOf(vp, e));
    let px0 = Math.floor(x0);
    const px1 = Math.max(px0 + 1, Math.ceil(x1));
    if (px1 <= lastPx[kind]) {
      continue; // this pixel column already carries this colour
    }
    px0 = Math.max(px0, lastPx[kind]);
    lastPx[kind] = px1;
    ctx.fillStyle = COLORS[kind];
    ctx.fillRect(px0, y + 2, px1 - px0, BODY_H);
  }
}

/** The lane's queue: grey bars as tall as the number of tasks waiting for a slot. */
function drawQueue(ctx: CanvasRenderingContext2D, vp: IViewport, g: ILaneGroup, y: number): number {
  const pw = Math.ceil(plotWidth(vp));
  const diff = new Float32Array(pw + 2);
  const k = plotWidth(vp) / (vp.t1 - vp.t0);
  for (const [a, b] of g.waits) {
    const x0 = Math.max((a - vp.t0) * k, 0);
    const x1 = Math.min((b - vp.t0) * k, pw);
    if (x1 <= x0) {
      continue;
    }
    const i0 = Math.floor(x0);
    const i1 = Math.floor(x1);
    if (i0 === i1) {
      diff[i0] += x1 - x0;
      diff[i0 + 1] -= x1 - x0;
    } else {
      diff[i0] += i0 + 1 - x0;
      diff[i0 + 1] += x0 - i0;
      diff[i1] += x1 - i1 - 1;
      diff[i1 + 1] -= x1 - i1;
    }
  }
  let most = 0;
  let acc = 0;
  const depth = new Float32Array(pw);
  for (let i = 0; i < pw; i++) {
    acc += diff[i];
    depth[i] = acc;
    most = Math.max(most, acc);
  }
  if (most > 0) {
    ctx.fillStyle = COLORS.queued;
    const h = QUEUE_H - 3;
    for (let i = 0; i < pw; i++) {
      if (depth[i] > 0.02) {
        const bh = h * Math.max(depth[i] / most, 0.34);
        ctx.fillRect(GUTTER + i, y + 1 + h - bh, 1, bh);
      }
    }
  }
  return most;
}

/** A hairline at each task's start (where there is room) so back-to-back tasks read apart. */
function drawSeparators(ctx: CanvasRenderingContext2D, vp: IViewport, tasks: ITask[], y: number, bg: string): void {
  ctx.fillStyle = bg;
  let prevX = -Infinity;
  for (const task of tasks) {
    if (task.slot < 0 || task.slotFree < vp.t0 || task.slotFree > vp.t1) {
      continue;
    }
    const x = Math.round(xOf(vp, task.slotFree));
    if (x - prevX >= 4 && xOf(vp, task.finished) - x >= 4) {
      ctx.fillRect(x, y + 2, 1, BODY_H);
    }
    prevX = x;
  }
}

function drawOutcome(ctx: CanvasRenderingContext2D, vp: IViewport, task: ITask, y: number, theme: ITheme): void {
  if (task.outcome === 'ok' || task.finished < vp.t0 || task.submitted > vp.t1) {
    return;
  }
  const h = task.slot >= 0 ? BODY_H : ROW_H - 4;
  const from = task.slot >= 0 ? task.slotFree : task.submitted;
  const x0 = Math.max(GUTTER - 1, xOf(vp, from));
  const x1 = Math.min(vp.width - PAD_RIGHT + 1, Math.max(xOf(vp, task.finished), x0 + 2));
  ctx.save();
  if (task.outcome === 'cancelled') {
    ctx.setLineDash([3, 2]);
    ctx.strokeStyle = theme.fgDim;
  } else {
    ctx.strokeStyle = OUTLINE;
    if (task.outcome === 'timeout') {
      ctx.setLineDash([4, 2]);
    }
  }
  ctx.lineWidth = 1.5;
  ctx.strokeRect(x0, y + 2, x1 - x0, h);
  if (task.outcome !== 'cancelled') {
    // A red triangle with a black rim at the end: visible even on a 1 px bar.
    ctx.setLineDash([]);
    ctx.fillStyle = ERROR_MARK;
    ctx.beginPath();
    ctx.moveTo(x1 - 1, y + 1);
    ctx.lineTo(x1 + 5, y + 1);
    ctx.lineTo(x1 - 1, y + 8);
    ctx.closePath();
    ctx.fill();
    ctx.lineWidth = 1;
    ctx.strokeStyle = OUTLINE;
    ctx.stroke();
  }
  ctx.restore();
}

function laneCaption(g: ILaneGroup): string {
  const i = g.info;
  const lim =
    i.min_concurrency !== undefined || i.max_concurrency !== undefined
      ? ` ${i.min_concurrency ?? '?'}–${i.max_concurrency ?? '?'}`
      : '';
  return `${g.lane}  ${i.kind}${lim}${i.adaptive ? ' adaptive' : ''}`;
}

export function drawTimeline(
  ctx: CanvasRenderingContext2D,
  vp: IViewport,
  groups: ILaneGroup[],
  model: ITraceModel,
  theme: ITheme,
  hover: ITask | null
): void {
  const h = timelineHeight(groups);
  ctx.clearRect(0, 0, vp.width, h);
  ctx.font = `11px ${theme.font}`;
  drawGrid(ctx, vp, theme, h, true);

  // Scheduler events (auto-mode decisions, limit changes) as ticks on the axis.
  ctx.fillStyle = theme.fg;
  for (const ev of model.events) {
    if (ev.t < vp.t0 || ev.t > vp.t1) {
      continue;
    }
    const x = xOf(vp, ev.t);
    ctx.beginPath();
    ctx.moveTo(x, AXIS_H - 1);
    ctx.lineTo(x - 4, AXIS_H - 7);
    ctx.lineTo(x + 4, AXIS_H - 7);
    ctx.closePath();
    ctx.fill();
  }

  let y = AXIS_H;
  const rowLabels: string[] = [];
  for (const g of groups) {
    ctx.fillStyle = theme.stripe;
    ctx.fillRect(0, y, vp.width, LANE_H);
    ctx.fillStyle = theme.fg;
    ctx.font = `bold 11px ${theme.font}`;
    ctx.fillText(laneCaption(g), 4, y + LANE_H / 2);
    ctx.font = `11px ${theme.font}`;
    y += LANE_H;
    ctx.save();
    ctx.beginPath();
    ctx.rect(GUTTER, y, plotWidth(vp), QUEUE_H);
    ctx.clip();
    const most = drawQueue(ctx, vp, g, y);
    ctx.restore();
    ctx.fillStyle = theme.fgDim;
    ctx.font = `10px ${theme.font}`;
    ctx.fillText(most > 0 ? 'queued' : 'queued (none)', 10, y + QUEUE_H / 2, GUTTER - 14);
    ctx.font = `11px ${theme.font}`;
    y += QUEUE_H;
    rowLabels.push(`${g.lane} queued`);
    for (const row of g.rows) {
      ctx.fillStyle = theme.fgDim;
      ctx.fillText(row.label, 10, y + ROW_H / 2, GUTTER - 14);
      rowLabels.push(row.label);
      ctx.save();
      ctx.beginPath();
      ctx.rect(GUTTER, y, plotWidth(vp), ROW_H);
      ctx.clip();
      const lastPx = Object.fromEntries(SEGMENT_KINDS.map(k => [k, -1])) as Record<SegmentKind, number>;
      for (const task of row.tasks) {
        drawTask(ctx, vp, task, y, lastPx);
      }
      drawSeparators(ctx, vp, row.tasks, y, theme.bg);
      ctx.restore();
      for (const task of row.tasks) {
        drawOutcome(ctx, vp, task, y, theme);
      }
      if (hover && row.tasks.includes(hover)) {
        const from = hover.slot >= 0 ? hover.slotFree : hover.submitted;
        const x0 = Math.max(GUTTER, xOf(vp, from));
        const x1 = Math.min(vp.width - PAD_RIGHT, Math.max(xOf(vp, hover.finished), x0 + 2));
        ctx.strokeStyle = theme.fg;
        ctx.lineWidth = 1;
        ctx.strokeRect(x0 - 1.5, y + 0.5, x1 - x0 + 3, BODY_H + 3);
      }
      y += ROW_H;
    }
  }
  ctx.canvas.dataset.rows = JSON.stringify(rowLabels);
}

/** Height of one core's row: taller when there are few cores, never under 5 px. */
export function coreRowHeight(nCores: number): number {
  return Math.max(5, Math.min(14, Math.floor(96 / Math.max(1, nCores))));
}

export function coresHeight(model: ITraceModel): number {
  const n = coreCount(model);
  return n ? 16 + n * coreRowHeight(n) + 2 + 14 : 0;
}

export function coreCount(model: ITraceModel): number {
  return model.samples.length ? Math.max(model.nCores, ...model.samples.map(s => s.cores.length)) : 0;
}

/**
 * Per-core utilisation as a heat strip. A sample reports the utilisation over the
 * interval that *ends* at its timestamp, so each cell spans from the previous sample.
 */
export function drawCores(ctx: CanvasRenderingContext2D, vp: IViewport, model: ITraceModel, theme: ITheme): void {
  const n = coreCount(model);
  const h = coresHeight(model);
  ctx.clearRect(0, 0, vp.width, h);
  if (!n) {
    return;
  }
  ctx.font = `11px ${theme.font}`;
  ctx.fillStyle = theme.fg;
  ctx.textBaseline = 'middle';
  ctx.fillText('core utilisation', 4, 8);
  const rh = coreRowHeight(n);
  const top = 16;
  ctx.fillStyle = theme.stripe;
  ctx.fillRect(GUTTER, top, plotWidth(vp), n * rh);
  const samples = model.samples;
  ctx.save();
  ctx.beginPath();
  ctx.rect(GUTTER, top, plotWidth(vp), n * rh);
  ctx.clip();
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i];
    const prev = i > 0 ? samples[i - 1].t : s.t - (samples.length > 1 ? samples[1].t - samples[0].t : 0);
    if (s.t < vp.t0 || prev > vp.t1) {
      continue;
    }
    const x0 = Math.floor(xOf(vp, prev));
    const x1 = Math.max(x0 + 1, Math.ceil(xOf(vp, s.t)));
    for (let c = 0; c < s.cores.length; c++) {
      const u = Math.max(0, Math.min(1, s.cores[c]));
      ctx.fillStyle = withAlpha(CORE_HEAT, 0.06 + 0.94 * u);
      ctx.fillRect(x0, top + c * rh, x1 - x0, rh - (rh > 6 ? 1 : 0));
    }
  }
  ctx.restore();
  if (rh >= 9 || n <= 16) {
    ctx.fillStyle = theme.fgDim;
    ctx.font = `${Math.min(10, rh)}px ${theme.font}`;
    for (let c = 0; c < n; c += rh >= 9 ? 1 : Math.ceil(9 / rh)) {
      ctx.fillText(`cpu${c}`, 10, top + c * rh + rh / 2);
    }
  }
  // the scale: what a pale and a full cell mean
  const sy = top + n * rh + 3;
  ctx.fillStyle = theme.fgDim;
  ctx.font = `10px ${theme.font}`;
  ctx.fillText('scale', GUTTER, sy + 5);
  for (let i = 0; i <= 10; i++) {
    ctx.fillStyle = withAlpha(CORE_HEAT, 0.06 + 0.094 * i);
    ctx.fillRect(GUTTER + 32 + i * 10, sy, 10, 9);
  }
  ctx.fillStyle = theme.fgDim;
  ctx.fillText('0% → 100% of one core (sampled)', GUTTER + 32 + 116, sy + 5);
  drawGrid(ctx, vp, theme, top + n * rh, false);
}
