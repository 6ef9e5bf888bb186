/**
 * One view of a dashboard: header with legend and zoom buttons, the timeline and cores
 * canvases on one time axis, the side panel, a tooltip. It follows the live edge until the
 * user zooms or pans; "fit" (or a double-click) returns to following.
 */

import { COLORS, LABELS, OUTLINE, RUNNING } from '../palette';
import type { SegmentKind } from '../model';
import { IWidgetModel } from '../wire/messages';
import { KIND_CODES } from '../wire/records';
import { coresHeight, drawCores } from './cores';
import { div, sizeCanvas } from './dom';
import { Panel } from './panel';
import { Store } from './store';
import { queueTip, renderTip, tipAt } from './tooltip';
import { GUTTER, IWindow, displayRows, drawTimeline, rowHeight, timelineHeight } from './timeline';

const WATCHED = ['figures', 'lanes', 'status', 'notes', 'limit_history'];

export class DashboardView {
  constructor(model: IWidgetModel, el: HTMLElement) {
    this._model = model;
    const root = (this.root = div('lanepar-dashboard', el));
    const head = div('lanepar-head', root);
    div('lanepar-title', head, model.get('title') || 'lanepar');
    this._status = div('lanepar-status', head);
    this._legend(div('lanepar-legend', head));
    const tools = div('lanepar-tools', head);
    const buttons: Array<[string, string, () => void]> = [
      ['−', 'zoom out', () => this._zoom(1.6, 0.5)],
      ['+', 'zoom in', () => this._zoom(1 / 1.6, 0.5)],
      ['fit', 'show everything and follow the live edge', () => this._fit()]
    ];
    for (const [label, title, fn] of buttons) {
      const b = document.createElement('button');
      b.className = 'lanepar-btn';
      b.textContent = label;
      b.title = title;
      b.addEventListener('click', fn);
      tools.appendChild(b);
    }
    const body = div('lanepar-body', root);
    const plots = div('lanepar-plots', body);
    this._canvas = document.createElement('canvas');
    this._canvas.className = 'lanepar-timeline';
    plots.appendChild(this._canvas);
    this._cores = document.createElement('canvas');
    this._cores.className = 'lanepar-cores-canvas';
    div('lanepar-cores', plots).appendChild(this._cores);
    this._tip = div('lanepar-tip', root);
    this._tip.style.display = 'none';
    this._panel = new Panel(div('lanepar-side', body), model);
    this._bind();
    for (const name of WATCHED) {
      model.on(`change:${name}`, this.schedule);
    }
    if (typeof ResizeObserver !== 'undefined') {
      this._resize = new ResizeObserver(() => this.schedule());
      this._resize.observe(root);
    }
  }

  readonly root: HTMLDivElement;

  /** Show `store` (set once the registry has handed it over). */
  show(store: Store): void {
    this._st = store;
    this.schedule();
  }

  /** Redraw on the next frame; many deltas within one frame cost one paint. */
  schedule = (): void => {
    if (this._frame || this._disposed) {
      return;
    }
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this._draw();
    });
  };

  dispose(): void {
    this._disposed = true;
    this._resize?.disconnect();
    if (this._frame) {
      cancelAnimationFrame(this._frame);
    }
    for (const name of WATCHED) {
      this._model.off(`change:${name}`, this.schedule);
    }
    window.removeEventListener('mouseup', this._onMouseUp);
    this.root.remove();
  }

  private _legend(legend: HTMLElement): void {
    const item = (label: string, style: Partial<CSSStyleDeclaration>): void => {
      const it = div('lanepar-legend-item', legend);
      Object.assign(div('lanepar-swatch', it).style, style);
      it.appendChild(document.createTextNode(label));
    };
    for (const kind of KIND_CODES as SegmentKind[]) {
      item(LABELS[kind], { background: COLORS[kind] });
    }
    item(RUNNING.label, { background: RUNNING.colour });
    item('error', { border: `2px solid ${OUTLINE}` });
  }

  // -- interaction ----------------------------------------------------------------------

  private _bind(): void {
    const c = this._canvas;
    c.addEventListener(
      'wheel',
      e => {
        e.preventDefault();
        const w = c.clientWidth - GUTTER;
        if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
          this._pan((e.deltaX / w) * (this._win.t1 - this._win.t0));
        } else {
          this._zoom(Math.exp(e.deltaY * 0.002), Math.min(1, Math.max(0, (e.offsetX - GUTTER) / w)));
        }
      },
      { passive: false }
    );
    c.addEventListener('mousedown', e => {
      this._drag = { x: e.clientX, t0: this._win.t0, t1: this._win.t1 };
    });
    window.addEventListener('mouseup', this._onMouseUp);
    c.addEventListener('mousemove', e => {
      const d = this._drag;
      if (!d) {
        this._hover(e);
        return;
      }
      const dt = ((e.clientX - d.x) / (c.clientWidth - GUTTER)) * (d.t1 - d.t0);
      this._follow = false;
      this._win.t0 = d.t0 - dt;
      this._win.t1 = d.t1 - dt;
      this._tip.style.display = 'none';
      this.schedule();
    });
    c.addEventListener('mouseleave', () => (this._tip.style.display = 'none'));
    c.addEventListener('dblclick', () => this._fit());
  }

  private _onMouseUp = (): void => {
    this._drag = null;
  };

  private _zoom(factor: number, at: number): void {
    const span = this._win.t1 - this._win.t0;
    const t = this._win.t0 + span * at;
    const next = Math.max(span * factor, 1000); // no narrower than 1 µs
    this._follow = false;
    this._win.t0 = t - next * at;
    this._win.t1 = this._win.t0 + next;
    this.schedule();
  }

  private _pan(dt: number): void {
    this._follow = false;
    this._win.t0 += dt;
    this._win.t1 += dt;
    this.schedule();
  }

  private _fit(): void {
    this._follow = true;
    this.schedule();
  }

  /** Everything received so far, up to the live edge while the run goes on. */
  private _extent(st: Store): [number, number] {
    const lo = st.n ? Math.min(0, st.sub.a[0]) : 0;
    const hi = Math.max(st.maxFinished, st.ended ? 0 : st.now, 1e6);
    return [lo, hi * 1.02];
  }

  private _hover(e: MouseEvent): void {
    const st = this._st;
    const shown = st ? displayRows(st) : [];
    const rh = rowHeight(shown.length);
    const w = this._win;
    const k = (w.width - GUTTER) / Math.max(w.t1 - w.t0, 1e-9);
    const row = shown[Math.floor(e.offsetY / rh)];
    const t = w.t0 + (e.offsetX - GUTTER) / k;
    const tip =
      !st || !row || e.offsetX <= GUTTER ? null : row.r < 0 ? queueTip(st, row.lane, t) : tipAt(st, row.r, t, 3 / k);
    if (!tip) {
      this._tip.style.display = 'none';
      return;
    }
    renderTip(this._tip, tip);
    this._tip.style.display = 'block';
    const box = this.root.getBoundingClientRect();
    const cbox = this._canvas.getBoundingClientRect();
    let x = cbox.left - box.left + e.offsetX + 14;
    if (x + 320 > box.width) {
      x = Math.max(0, x - 340);
    }
    this._tip.style.left = `${x}px`;
    this._tip.style.top = `${cbox.top - box.top + e.offsetY + 14}px`;
  }

  // -- drawing --------------------------------------------------------------------------

  private _draw(): void {
    const st = this._st;
    if (!st || this._disposed) {
      return;
    }
    const t = performance.now();
    if (this._follow) {
      [this._win.t0, this._win.t1] = this._extent(st);
    }
    const [ctx, w] = sizeCanvas(this._canvas, timelineHeight(displayRows(st).length));
    this._win.width = w;
    ctx.clearRect(0, 0, w, this._canvas.height);
    drawTimeline(ctx, st, this._win);
    const [cctx] = sizeCanvas(this._cores, coresHeight(st.nCores));
    drawCores(cctx, st, this._win);
    this._panel.draw(st, this.root, this._status);
    this.root.dataset.tasks = String(st.n);
    this.root.dataset.drawMs = (performance.now() - t).toFixed(1);
    // bumped after every paint: tests wait for it (and a benchmark times it) instead of sleeping
    this.root.dataset.draws = String(++this._draws);
  }

  private _model: IWidgetModel;
  private _st: Store | null = null;
  private _win: IWindow = { t0: 0, t1: 1e9, width: 800 };
  private _follow = true;
  private _frame = 0;
  private _draws = 0;
  private _disposed = false;
  private _drag: { x: number; t0: number; t1: number } | null = null;
  private _resize: ResizeObserver | null = null;
  private _status: HTMLDivElement;
  private _canvas: HTMLCanvasElement;
  private _cores: HTMLCanvasElement;
  private _tip: HTMLDivElement;
  private _panel: Panel;
}
