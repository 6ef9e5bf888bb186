/**
 * The trace viewer widget: header, two canvases on one time axis, a tooltip.
 *
 * It needs no kernel: everything it shows is in the JSON it was given, so a saved
 * notebook or a `*.lanetrace.json` file renders the same anywhere JupyterLab runs.
 */

import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import {
  GUTTER,
  ITheme,
  IViewport,
  PAD_RIGHT,
  coresHeight,
  drawCores,
  drawTimeline,
  rowAt,
  tOf,
  timelineHeight,
  xOf
} from './draw';
import { formatDuration } from './format';
import { el, renderHeader } from './header';
import { ILaneGroup, buildGroups, taskAt } from './layout';
import { ITask, ITraceModel, MIME_TYPE, TraceFormatError } from './model';
import { readTrace } from './read';
import { coreLines, queueLines, taskLines } from './tips';

const MIN_SPAN_NS = 200;


export class TraceView extends Widget implements IRenderMime.IRenderer {
  constructor(options?: IRenderMime.IRendererOptions) {
    super();
    this._mimeType = options?.mimeType ?? MIME_TYPE;
    this.addClass('lanepar-trace-view');
    this._header = el('div', 'lanepar-trace-header');
    this._body = el('div', 'lanepar-trace-body');
    this._timeline = el('canvas', 'lanepar-timeline');
    this._cores = el('canvas', 'lanepar-cores');
    this._tooltip = el('div', 'lanepar-tooltip');
    this._tooltip.style.display = 'none';
    this._body.append(this._timeline, this._cores, this._tooltip);
    const hint = el('div', 'lanepar-trace-hint', 'wheel: zoom · drag: pan · double-click: reset');
    this.node.append(this._header, this._body, hint);

    this._body.addEventListener('wheel', this._onWheel, { passive: false });
    for (const c of [this._timeline, this._cores]) {
      c.addEventListener('pointerdown', this._onPointerDown);
      c.addEventListener('pointermove', this._onPointerMove);
      c.addEventListener('pointerup', this._onPointerUp);
      c.addEventListener('pointerleave', this._onPointerLeave);
      c.addEventListener('dblclick', this._onDoubleClick);
    }
    if (typeof ResizeObserver !== 'undefined') {
      this._resize = new ResizeObserver(() => this._scheduleDraw());
      this._resize.observe(this._body);
    }
  }

  /** The trace on show, or null before the first successful render. */
  get trace(): ITraceModel | null {
    return this._model;
  }

  /** The visible time window (relative ns), for tests and for linking views. */
  get viewport(): { t0: number; t1: number } {
    return { t0: this._vp.t0, t1: this._vp.t1 };
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const data = model.data[this._mimeType];
    try {
      this.setTrace(readTrace(data));
    } catch (err) {
      this._showError(err instanceof TraceFormatError ? err.message : `cannot show this trace: ${String(err)}`);
    }
  }

  /** Show a trace; keeps the zoom when the same time range is shown again (live re-render). */
  setTrace(model: ITraceModel): void {
    const [lo, hi] = this._fullRange(model);
    const sameRange = this._model !== null && this._fullRange(this._model)[1] === hi;
    this._model = model;
    this._groups = buildGroups(model);
    this._hover = null;
    if (!sameRange) {
      this._vp.t0 = lo;
      this._vp.t1 = hi;
    }
    this.node.classList.remove('lanepar-trace-invalid');
    this._body.style.display = '';
    this.node.dataset.tasks = String(model.tasks.length);
    this.node.dataset.rows = String(this._groups.reduce((n, g) => n + g.rows.length, 0));
    this.node.dataset.source = model.source;
    this._renderHeader(model);
    this._scheduleDraw();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._resize?.disconnect();
    if (this._frame) {
      cancelAnimationFrame(this._frame);
    }
    super.dispose();
  }

  protected onAfterShow(): void {
    this._scheduleDraw();
  }

  protected onAfterAttach(): void {
    this._scheduleDraw();
  }

  // -- header ---------------------------------------------------------------------------

  private _renderHeader(model: ITraceModel): void {
    renderHeader(this._header, model, () => this._resetZoom());
  }

  private _showError(message: string): void {
    this._model = null;
    this._groups = [];
    this.node.classList.add('lanepar-trace-invalid');
    this._header.replaceChildren(el('div', 'lanepar-trace-error', message));
    this._body.style.display = 'none';
  }

  // -- drawing --------------------------------------------------------------------------

  private _fullRange(model: ITraceModel): [number, number] {
    let lo = 0;
    let hi = model.end;
    for (const t of model.tasks) {
      lo = Math.min(lo, t.submitted);
      hi = Math.max(hi, t.finished);
    }
    if (!model.tasks.length && model.samples.length) {
      // samples alone (a trace of the machine only): show them all; with tasks the picture
      // ends with the run, as the dashboard's does, not with the sampler's last tick
      hi = Math.max(hi, model.samples[model.samples.length - 1].t);
    }
    const span = Math.max(hi - lo, 1000);
    return [lo - span * 0.01, lo + span * 1.01];
  }

  private _theme(): ITheme {
    const cs = getComputedStyle(this.node);
    const v = (name: string, fallback: string): string => cs.getPropertyValue(name).trim() || fallback;
    return {
      fg: v('--jp-ui-font-color1', '#222'),
      fgDim: v('--jp-ui-font-color2', '#666'),
      grid: v('--jp-border-color2', '#e0e0e0'),
      stripe: v('--jp-layout-color2', '#f3f3f3'),
      bg: v('--jp-layout-color0', '#fff'),
      font: v('--jp-ui-font-family', 'sans-serif')
    };
  }

  private _scheduleDraw(): void {
    if (this._frame || this.isDisposed) {
      return;
    }
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this._draw();
    });
  }

  private _sizeCanvas(c: HTMLCanvasElement, w: number, h: number): CanvasRenderingContext2D | null {
    const dpr = window.devicePixelRatio || 1;
    c.style.width = `${w}px`;
    c.style.height = `${h}px`;
    c.style.display = h ? '' : 'none';
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const ctx = c.getContext('2d');
    ctx?.setTransform(dpr, 0, 0, dpr, 0, 0);
    return ctx;
  }

  private _draw(): void {
    const model = this._model;
    const width = this._body.clientWidth;
    if (!model || width <= GUTTER + PAD_RIGHT) {
      return; // hidden or not attached yet: the resize observer calls back when visible
    }
    this._vp.width = width;
    const theme = this._theme();
    const tctx = this._sizeCanvas(this._timeline, width, timelineHeight(this._groups));
    if (tctx) {
      drawTimeline(tctx, this._vp, this._groups, model, theme, this._hover);
    }
    const cctx = this._sizeCanvas(this._cores, width, coresHeight(model));
    if (cctx) {
      drawCores(cctx, this._vp, model, theme);
    }
    this.node.dataset.viewStartNs = String(Math.round(this._vp.t0));
    this.node.dataset.viewEndNs = String(Math.round(this._vp.t1));
    // bumped after every paint: tests wait for it instead of sleeping
    this.node.dataset.draws = String(++this._draws);
  }

  // -- interaction ----------------------------------------------------------------------

  private _resetZoom(): void {
    if (this._model) {
      [this._vp.t0, this._vp.t1] = this._fullRange(this._model);
      this._scheduleDraw();
    }
  }

  /** Apply a new window, keeping it on the data and no narrower than MIN_SPAN_NS. */
  private _setWindow(t0: number, t1: number): void {
    if (!this._model) {
      return;
    }
    const [lo, hi] = this._fullRange(this._model);
    const full = hi - lo;
    const span = Math.min(Math.max(t1 - t0, MIN_SPAN_NS), full * 4);
    // Keep the centre when the span was clamped, and keep at least 10% of the data on screen.
    let start = t0 + (t1 - t0 - span) / 2;
    const minStart = lo - span * 0.9;
    const maxStart = hi - span * 0.1;
    start = minStart > maxStart ? (lo + hi - span) / 2 : Math.min(Math.max(start, minStart), maxStart);
    this._vp.t0 = start;
    this._vp.t1 = start + span;
    this._scheduleDraw();
  }

  private _localX(e: MouseEvent, c: HTMLElement): number {
    return e.clientX - c.getBoundingClientRect().left;
  }

  private _onWheel = (e: WheelEvent): void => {
    if (!this._model) {
      return;
    }
    e.preventDefault();
    const scale = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
    const dx = e.deltaX * scale;
    const dy = e.deltaY * scale;
    const span = this._vp.t1 - this._vp.t0;
    const pw = Math.max(10, this._vp.width - GUTTER - PAD_RIGHT);
    if (e.shiftKey || Math.abs(dx) > Math.abs(dy)) {
      const shift = ((Math.abs(dx) > Math.abs(dy) ? dx : dy) / pw) * span;
      this._setWindow(this._vp.t0 + shift, this._vp.t1 + shift);
      return;
    }
    const x = Math.min(Math.max(this._localX(e, this._body), GUTTER), this._vp.width - PAD_RIGHT);
    const anchor = tOf(this._vp, x);
    const f = Math.exp(Math.max(-300, Math.min(300, dy)) * 0.002);
    this._setWindow(anchor - (anchor - this._vp.t0) * f, anchor + (this._vp.t1 - anchor) * f);
  };

  private _onPointerDown = (e: PointerEvent): void => {
    if (e.button !== 0 || !this._model) {
      return;
    }
    const c = e.currentTarget as HTMLElement;
    this._drag = { x: e.clientX, t0: this._vp.t0, t1: this._vp.t1, moved: false };
    c.setPointerCapture?.(e.pointerId);
    this.node.classList.add('lanepar-dragging');
  };

  private _onPointerMove = (e: PointerEvent): void => {
    const d = this._drag;
    if (d) {
      const pw = Math.max(10, this._vp.width - GUTTER - PAD_RIGHT);
      const dt = ((e.clientX - d.x) / pw) * (d.t1 - d.t0);
      d.moved = d.moved || Math.abs(e.clientX - d.x) > 2;
      this._setWindow(d.t0 - dt, d.t1 - dt);
      this._hideTooltip();
      return;
    }
    this._hoverAt(e, e.currentTarget as HTMLCanvasElement);
  };

  private _onPointerUp = (e: PointerEvent): void => {
    (e.currentTarget as HTMLElement).releasePointerCapture?.(e.pointerId);
    this._drag = null;
    this.node.classList.remove('lanepar-dragging');
  };

  private _onPointerLeave = (): void => {
    if (!this._drag) {
      this._hideTooltip();
    }
  };

  private _onDoubleClick = (): void => {
    this._resetZoom();
  };

  private _hideTooltip(): void {
    this._tooltip.style.display = 'none';
    if (this._hover) {
      this._hover = null;
      delete this.node.dataset.hoverTask;
      this._scheduleDraw();
    }
  }

  private _hoverAt(e: PointerEvent, canvas: HTMLCanvasElement): void {
    const model = this._model;
    if (!model) {
      return;
    }
    const rect = canvas.getBoundingClientRect();
    const x = e.clientX - rect.left;
    const y = e.clientY - rect.top;
    if (x < GUTTER) {
      this._hideTooltip();
      return;
    }
    const t = tOf(this._vp, x);
    const tol = (4 / Math.max(10, this._vp.width - GUTTER - PAD_RIGHT)) * (this._vp.t1 - this._vp.t0);
    let lines: Array<[string, string]> | null = null;
    let task: ITask | null = null;
    if (canvas === this._timeline) {
      const hit = rowAt(this._groups, y);
      task = hit && hit.row >= 0 ? taskAt(hit.group.rows[hit.row], t, tol) : null;
      if (task) {
        lines = taskLines(task, hit!.group);
      } else if (hit && hit.row < 0) {
        lines = queueLines(hit.group, t);
      } else if (y < 24) {
        const ev = model.events.find(ev => Math.abs(xOf(this._vp, ev.t) - x) <= 5);
        if (ev) {
          lines = [[ev.type, `at ${formatDuration(ev.t)}`]];
          for (const [k, v] of Object.entries(ev.fields)) {
            lines.push([k, typeof v === 'string' ? v : JSON.stringify(v)]);
          }
        }
      }
    } else {
      lines = coreLines(model, t, y);
    }
    if (task !== this._hover) {
      this._hover = task;
      if (task) {
        this.node.dataset.hoverTask = String(task.id);
      } else {
        delete this.node.dataset.hoverTask;
      }
      this._scheduleDraw();
    }
    if (!lines) {
      this._tooltip.style.display = 'none';
      return;
    }
    this._showTooltip(lines, e);
  }

  private _showTooltip(lines: Array<[string, string]>, e: PointerEvent): void {
    const tip = this._tooltip;
    tip.replaceChildren();
    lines.forEach(([k, v], i) => {
      const line = el('div', i === 0 ? 'lanepar-tooltip-title' : 'lanepar-tooltip-line');
      line.append(el(i === 0 ? 'b' : 'span', 'lanepar-tooltip-key', k), el('span', 'lanepar-tooltip-value', v));
      tip.append(line);
    });
    tip.style.display = 'block';
    const body = this._body.getBoundingClientRect();
    const x = e.clientX - body.left;
    const y = e.clientY - body.top;
    const w = tip.offsetWidth;
    tip.style.left = `${x + 14 + w > body.width ? Math.max(0, x - 14 - w) : x + 14}px`;
    tip.style.top = `${y + 14}px`;
  }

  private _mimeType: string;
  private _model: ITraceModel | null = null;
  private _groups: ILaneGroup[] = [];
  private _vp: IViewport = { t0: 0, t1: 1, width: 0 };
  private _hover: ITask | null = null;
  private _drag: { x: number; t0: number; t1: number; moved: boolean } | null = null;
  private _frame = 0;
  private _draws = 0;
  private _resize: ResizeObserver | null = null;
  private _header: HTMLDivElement;
  private _body: HTMLDivElement;
  private _timeline: HTMLCanvasElement;
  private _cores: HTMLCanvasElement;
  private _tooltip: HTMLDivElement;
}
