/**
 * The side panel: progress, headline figures, one row per lane (active / limit / peak, and
 * the limit over time when it moved), and the scheduler's notes in words.
 */

import { SPEEDUP_MEANING, headline } from '../format';
import { IFigures, ILaneState, IWidgetModel } from '../wire/messages';
import { div } from './dom';
import { Store } from './store';

/** The figures panel shows the headline (`format.ts`) minus the task count (its own row). */
const SHOWN = ['wall_s', 'speedup', 'efficiency', 'cpu_util_avg', 'dispatch_p50_us', 'dispatch_p99_us', 'queued_p50_us', 'errors'];

/** The live figures under the names `summarize()` uses, so one formatter serves both. */
export function asSummary(fig: Partial<IFigures>): Record<string, number> {
  return {
    tasks: fig.done ?? 0,
    errors: fig.errors ?? 0,
    wall_s: fig.elapsed_s ?? 0,
    speedup: fig.speedup ?? 0,
    ideal_speedup: fig.ideal_speedup ?? 0,
    efficiency: fig.efficiency ?? 0,
    cpu_util_avg: fig.cpu_util ?? 0,
    dispatch_p50_us: (fig.dispatch_p50_ms ?? 0) * 1e3,
    dispatch_p99_us: (fig.dispatch_p99_ms ?? 0) * 1e3,
    queued_p50_us: (fig.queued_p50_ms ?? 0) * 1e3
  };
}

export class Panel {
  constructor(parent: HTMLElement, model: IWidgetModel) {
    this._model = model;
    const f = div('lanepar-figures', parent);
    this._bar = div('lanepar-progress-bar', div('lanepar-progress', f));
    const doneRow = div('lanepar-fig lanepar-fig-done', f);
    div('lanepar-fig-label', doneRow, 'tasks');
    this._done = div('lanepar-done', doneRow, '0 / 0');
    const labels = new Map(headline({}).map(h => [h.key, h.label]));
    for (const key of SHOWN) {
      const row = div(`lanepar-fig lanepar-fig-${key === 'wall_s' ? 'wall' : key.replace(/_/g, '-')}`, f);
      div('lanepar-fig-label', row, labels.get(key) ?? key);
      this._cells.set(key, div('lanepar-fig-value', row, '–'));
    }
    this._cells.get('speedup')!.parentElement!.title = SPEEDUP_MEANING;
    div('lanepar-fig-note', f, 'speedup = (CPU + I/O wait of every task) / wall');
    this._lanes = div('lanepar-lanes', parent);
    this._notes = div('lanepar-notes', parent);
  }

  /** The figures, status and lane rows as the model and store have them now. */
  draw(st: Store, root: HTMLElement, statusEl: HTMLElement): void {
    const fig = this._model.get('figures') ?? {};
    const done = fig.done ?? st.done;
    const total = Math.max(fig.total ?? st.total, done);
    this._done.textContent = `${done} / ${total}`;
    this._bar.style.width = total ? `${((100 * done) / total).toFixed(1)}%` : '0%';
    const text = new Map(headline(asSummary(fig)).map(h => [h.key, h.value]));
    if (!fig.final && done === 0) {
      // nothing has finished: a ratio of nothing is not 0×
      text.set('speedup', '–');
      text.set('efficiency', '–');
    }
    for (const [key, cell] of this._cells) {
      cell.textContent = text.get(key) ?? '–';
    }
    this._cells.get('errors')!.parentElement!.classList.toggle('lanepar-bad', (fig.errors ?? 0) > 0);
    const status = this._model.get('status') ?? '';
    statusEl.textContent = status;
    statusEl.className = `lanepar-status lanepar-status-${status}`;
    root.dataset.status = status;
    this._drawLanes(this._model.get('lanes') ?? []);
    this._notes.replaceChildren();
    for (const line of this._model.get('notes') ?? []) {
      div('lanepar-note', this._notes, line);
    }
  }

  private _drawLanes(lanes: ILaneState[]): void {
    const el = this._lanes;
    while (el.children.length > lanes.length) {
      el.lastChild!.remove();
    }
    const history = this._model.get('limit_history') ?? {};
    lanes.forEach((ln, i) => {
      let row = el.children[i] as HTMLDivElement | undefined;
      if (!row) {
        row = div('lanepar-lane', el);
        div('lanepar-lane-name', row);
        const bar = div('lanepar-lane-bar', row);
        div('lanepar-lane-fill', bar);
        div('lanepar-lane-peak', bar);
        div('lanepar-lane-text', row);
      }
      const limit = Math.max(ln.limit || 0, 1);
      const [name, bar, text] = Array.from(row.children) as HTMLElement[];
      const [fill, peak] = Array.from(bar.children) as HTMLElement[];
      row.classList.toggle('lanepar-lane-idle', !ln.max_active && !ln.active && !ln.pending);
      name.textContent = ln.name;
      name.title = ln.kind;
      fill.style.width = `${Math.min(100, (100 * ln.active) / limit)}%`;
      peak.style.left = `${Math.min(100, (100 * ln.max_active) / limit)}%`;
      text.textContent =
        `${ln.active}/${ln.limit} running` + (ln.pending ? `, ${ln.pending} queued` : '') + ` · peak ${ln.max_active} at once`;
      drawLimitLine(row, history[ln.name]);
    });
  }

  private _model: IWidgetModel;
  private _bar: HTMLDivElement;
  private _done: HTMLDivElement;
  private _cells = new Map<string, HTMLDivElement>();
  private _lanes: HTMLDivElement;
  private _notes: HTMLDivElement;
}

/** The limit of an adaptive (or re-configured) lane over time: a step line under its row. */
function drawLimitLine(row: HTMLElement, points: Array<[number, number]> | undefined): void {
  let cv = row.querySelector<HTMLCanvasElement>('canvas.lanepar-lane-limits');
  if (!points || points.length < 2) {
    cv?.remove();
    return;
  }
  if (!cv) {
    cv = document.createElement('canvas');
    cv.className = 'lanepar-lane-limits';
    row.appendChild(cv);
  }
  const w = Math.max(40, row.clientWidth || 200);
  const h = 20;
  if (cv.width !== w) {
    cv.width = w;
  }
  cv.height = h;
  const ctx = cv.getContext('2d')!;
  ctx.clearRect(0, 0, w, h);
  const t0 = points[0][0];
  const t1 = Math.max(points[points.length - 1][0], t0 + 1e-9);
  const top = Math.max(...points.map(p => p[1]), 1);
  const x = (t: number): number => ((w - 2) * (t - t0)) / (t1 - t0) + 1;
  const y = (n: number): number => h - 1 - ((h - 3) * n) / top;
  ctx.strokeStyle = '#555';
  ctx.lineWidth = 1.2;
  ctx.beginPath();
  ctx.moveTo(x(points[0][0]), y(points[0][1]));
  for (let k = 1; k < points.length; k++) {
    ctx.lineTo(x(points[k][0]), y(points[k - 1][1]));
    ctx.lineTo(x(points[k][0]), y(points[k][1]));
  }
  ctx.stroke();
  cv.dataset.points = String(points.length);
  cv.title = `limit over time: ${points.map(p => p[1]).join(' → ')}`;
}
