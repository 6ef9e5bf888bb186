/**
 * Which run's data the page holds, and for how long.
 *
 * A widget model's messages go to one `Store` per dashboard (keyed by its uid), shared by
 * all views of it, so a second view of a running cell draws what the first one received.
 * The store is freed when the last view of it is removed (cleared output, closed notebook):
 * a page that showed fifty runs must not keep fifty runs of columns. A view created later
 * finds no store and asks the kernel to send everything again (`resync`).
 */

import { Buffer, IWidgetModel, KernelMessage } from '../wire/messages';
import { Store } from './store';

interface IEntry {
  store: Store;
  views: number;
  /** Skip deltas until the kernel's `reset` arrives: we asked for a full resend. */
  resyncing: boolean;
  /** Redraw callbacks of the views on show. */
  listeners: Set<() => void>;
}

export class Registry {
  /** Stores alive now, by dashboard uid (read by tests). */
  readonly entries = new Map<string, IEntry>();

  /**
   * Start taking `model`'s messages (anywidget's `initialize`, once per model). Messages
   * that arrive before any view exists are kept: the view is usually a moment away.
   */
  listen(model: IWidgetModel): void {
    if (this._listening.has(model)) {
      return;
    }
    this._listening.add(model);
    model.on('msg:custom', (msg: KernelMessage, buffers?: Buffer[]) => this.receive(model, msg, buffers ?? []));
  }

  receive(model: IWidgetModel, msg: KernelMessage, buffers: Buffer[]): void {
    const uid = model.get('uid') ?? '';
    let e = this.entries.get(uid);
    if (!e) {
      if (this._released.has(uid)) {
        return; // nobody shows this run any more; a new view will resync
      }
      e = this._create(uid);
    }
    if (msg.type === 'reset') {
      e.resyncing = false;
    } else if (e.resyncing) {
      return;
    } else if (msg.type === 'delta' && msg.seq !== e.store.seq + 1) {
      // a message went missing (a view that loaded late): ask the kernel for everything
      this._resync(model, e);
      return;
    }
    e.store.ingest(msg, buffers);
    for (const redraw of e.listeners) {
      redraw();
    }
  }

  /** A view appears: its store (created or re-created), resynced when data is missing. */
  attach(model: IWidgetModel, redraw: () => void): Store {
    const uid = model.get('uid') ?? '';
    this.listen(model);
    this._released.delete(uid);
    let e = this.entries.get(uid);
    if (!e) {
      e = this._create(uid);
    }
    e.views += 1;
    e.listeners.add(redraw);
    const done = model.get('figures')?.done ?? 0;
    if (e.store.seq === 0 && !e.resyncing && done > 0) {
      // a page reloaded after (or during) a run, or a view after a freed one: the kernel has it
      this._resync(model, e);
    }
    return e.store;
  }

  /** A view goes away; the last one takes the run's columns with it. */
  detach(model: IWidgetModel, redraw: () => void): void {
    const uid = model.get('uid') ?? '';
    const e = this.entries.get(uid);
    if (!e) {
      return;
    }
    e.listeners.delete(redraw);
    e.views -= 1;
    if (e.views <= 0) {
      e.store.clear(0n);
      this.entries.delete(uid);
      this._released.add(uid);
    }
  }

  private _create(uid: string): IEntry {
    const e: IEntry = { store: new Store(), views: 0, resyncing: false, listeners: new Set() };
    this.entries.set(uid, e);
    return e;
  }

  private _resync(model: IWidgetModel, e: IEntry): void {
    e.resyncing = true;
    model.send({ type: 'resync' });
  }

  private _listening = new WeakSet<IWidgetModel>();
  /** uids whose last view went away: their later messages are dropped, not stored. */
  private _released = new Set<string>();
}
