/**
 * The widget's data lifecycle under Node: a run's columns live while a view shows them and
 * are freed with the last view; the shared declarations (layout, palette) agree.
 */

import * as assert from 'assert';
import { test } from 'node:test';

import palette from '../../lanepar/trace/palette.json';
import { SEGMENT_KINDS } from '../src/model';
import { COLORS, LABELS } from '../src/palette';
import { IDeltaMessage, IResyncRequest, IWidgetModel } from '../src/wire/messages';
import { KIND_CODES, OUTCOME_CODES } from '../src/wire/records';
import { Registry } from '../src/widget/registry';

function fakeModel(uid: string, done = 0): IWidgetModel & { sent: IResyncRequest[] } {
  const sent: IResyncRequest[] = [];
  const state: Record<string, unknown> = { uid, figures: { done } };
  return {
    sent,
    get: (k: string) => state[k] as any,
    on: () => undefined,
    off: () => undefined,
    send: (m: IResyncRequest) => void sent.push(m)
  };
}

/** A delta with `n` samples of 4 cores and no tasks: enough to fill columns. */
function samplesDelta(seq: number, n: number): [IDeltaMessage, Uint8Array[]] {
  const width = 2 + 4 + 3;
  const smp = new Float32Array(n * width).map((_, i) => (i % width === 0 ? i : 0.5));
  const msg: IDeltaMessage = {
    type: 'delta', seq, t0_ns: 1_000_000, now_ns: 2_000_000, n_tasks: 0, n_running: 0,
    n_samples: n, n_cores: 4, sample_width: width, lanes: ['query'], names: [], errors: [],
    running_args: [], done: 0, total: 0
  };
  const empty = new Uint8Array(0);
  return [msg, [empty, empty, empty, empty, new Uint8Array(smp.buffer)]];
}

test('the last view removed frees the run and later messages are not stored', () => {
  const reg = new Registry();
  const model = fakeModel('run-1');
  const redrawA = (): void => undefined;
  const redrawB = (): void => undefined;
  const store = reg.attach(model, redrawA);
  reg.attach(model, redrawB);
  reg.receive(model, ...samplesDelta(1, 5000));
  assert.strictEqual(store.sampleT.n, 5000);
  assert.ok(store.byteSize > 5000 * 4 * 4);
  reg.detach(model, redrawA);
  assert.strictEqual(reg.entries.size, 1, 'one view still shows it');
  reg.detach(model, redrawB);
  assert.strictEqual(reg.entries.size, 0);
  assert.strictEqual(store.sampleT.n, 0);
  assert.strictEqual(store.byteSize, 0);
  reg.receive(model, ...samplesDelta(2, 10));
  assert.strictEqual(reg.entries.size, 0, 'a released run does not come back by itself');
});

test('a view after the run was freed asks the kernel to send everything again', () => {
  const reg = new Registry();
  const model = fakeModel('run-2', 7);
  const redraw = (): void => undefined;
  reg.receive(model, ...samplesDelta(1, 3));
  reg.attach(model, redraw);
  assert.deepStrictEqual(model.sent, [], 'data is there: no resync');
  reg.detach(model, redraw);
  const again = reg.attach(model, redraw);
  assert.deepStrictEqual(model.sent, [{ type: 'resync' }]);
  reg.receive(model, ...samplesDelta(3, 3));
  assert.strictEqual(again.sampleT.n, 0, 'deltas wait for the reset');
  reg.receive(model, { type: 'reset', seq: 3, t0_ns: 1_000_000 }, []);
  reg.receive(model, ...samplesDelta(3, 3));
  assert.strictEqual(again.sampleT.n, 3);
});

test('a gap in the sequence asks for a resync', () => {
  const reg = new Registry();
  const model = fakeModel('run-3');
  reg.attach(model, () => undefined);
  reg.receive(model, ...samplesDelta(2, 1));
  assert.deepStrictEqual(model.sent, [{ type: 'resync' }]);
});

test('layout, palette and the TypeScript kinds agree', () => {
  assert.deepStrictEqual(KIND_CODES, SEGMENT_KINDS);
  assert.deepStrictEqual(Object.keys(palette.segments), [...SEGMENT_KINDS]);
  assert.deepStrictEqual(Object.keys(palette.outcomes), [...OUTCOME_CODES]);
  assert.strictEqual(COLORS.gil, palette.segments.gil.colour);
  assert.strictEqual(LABELS.runq, 'run-queue wait');
});
