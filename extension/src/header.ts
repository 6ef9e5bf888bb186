/** The trace viewer's header line: title, headline figures, legend, reset button. */

import { summaryFigures } from './layout';
import { ITraceModel, SEGMENT_KINDS } from './model';
import { COLORS, LABELS, OUTCOME_COLORS, OUTCOME_LABELS } from './palette';

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  e.className = cls;
  if (text !== undefined) {
    e.textContent = text; // never innerHTML: args summaries are arbitrary user text
  }
  return e;
}

export function renderHeader(h: HTMLElement, model: ITraceModel, onReset: () => void): void {
  h.replaceChildren();
  h.append(el('span', 'lanepar-trace-title', model.source === 'chrome' ? 'lanepar trace (Chrome JSON)' : 'lanepar trace'));
  const figures = el('span', 'lanepar-trace-figures');
  for (const f of summaryFigures(model)) {
    const fig = el('span', 'lanepar-trace-figure');
    fig.dataset.key = f.key;
    fig.append(el('span', 'lanepar-trace-figure-label', f.label), el('b', 'lanepar-trace-figure-value', f.value));
    figures.append(fig);
  }
  const legend = el('span', 'lanepar-trace-legend');
  for (const k of SEGMENT_KINDS) {
    const sw = el('span', 'lanepar-trace-swatch');
    sw.style.background = COLORS[k];
    sw.dataset.kind = k;
    legend.append(sw, el('span', 'lanepar-trace-legend-label', LABELS[k]));
  }
  const err = el('span', 'lanepar-trace-swatch lanepar-trace-swatch-error');
  err.style.background = OUTCOME_COLORS.error;
  legend.append(err, el('span', 'lanepar-trace-legend-label', OUTCOME_LABELS.error));
  const reset = el('button', 'lanepar-trace-reset jp-mod-styled', 'Reset zoom');
  reset.addEventListener('click', onReset);
  h.append(figures, legend, reset);
}
