/**
 * The live dashboard widget, as an anywidget ESM module (built into
 * `lanepar/jupyter/static/widget.js`; `lanepar.jupyter.dashboard.Dashboard` serves it).
 */

import { IWidgetModel } from '../wire/messages';
import { Registry } from './registry';
import { DashboardView } from './view';

export const registry = new Registry();

function initialize({ model }: { model: IWidgetModel }): void {
  registry.listen(model);
}

function render({ model, el }: { model: IWidgetModel; el: HTMLElement }): () => void {
  const view = new DashboardView(model, el);
  view.show(registry.attach(model, view.schedule));
  return () => {
    registry.detach(model, view.schedule);
    view.dispose();
  };
}

export default { initialize, render };
