/**
 * The static snapshot: the same dashboard, frozen, on a page without a kernel. Built as a
 * classic script (`lanepar/jupyter/static/snapshot.js`, an IIFE setting the global
 * `laneparSnapshot`) because the page is a data: URL in an iframe where module scripts and
 * network imports are not worth the risk; `lanepar.jupyter.snapshot` inlines it.
 */

import { IResyncRequest, IWidgetModel, IWidgetState, KernelMessage } from '../wire/messages';
import { Registry } from './registry';
import { DashboardView } from './view';

/** What the page carries: the widget's state and the kernel's messages, buffers in base64. */
export interface ISnapshotData {
  state: IWidgetState;
  messages: Array<[KernelMessage, string[]]>;
}

function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) {
    out[i] = bin.charCodeAt(i);
  }
  return out;
}

/** Draw `data` into `el`, replaying the messages a live view would have received. */
export function mountStatic(el: HTMLElement, data: ISnapshotData): DashboardView {
  const model: IWidgetModel = {
    get: <K extends keyof IWidgetState>(k: K): IWidgetState[K] => data.state[k],
    on: () => undefined,
    off: () => undefined,
    send: (_: IResyncRequest) => undefined
  };
  const registry = new Registry();
  for (const [msg, b64s] of data.messages) {
    registry.receive(model, msg, b64s.map(fromBase64)); // before attach: no resync request
  }
  const view = new DashboardView(model, el);
  view.show(registry.attach(model, view.schedule));
  return view;
}
