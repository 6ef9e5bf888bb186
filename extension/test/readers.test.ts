/**
 * Behaviour of the pure parts of the viewer: both readers, row layout, hit-testing,
 * number formatting. Run with `jlpm test` (Node's built-in test runner).
 */

import * as assert from 'assert';
import { test } from 'node:test';

import { readChromeTrace } from '../src/chrome';
import { formatDuration, formatTick, niceTicks } from '../src/format';
import { buildGroups, summaryFigures, taskAt } from '../src/layout';
import { TraceFormatError, readLaneparTrace } from '../src/model';
import { readTrace } from '../src/read';

const S = 5_000_000_000; // absolute start on the perf_counter clock

function nativeTrace(): Record<string, unknown> {
  return {
    format: 'lanepar-trace',
    version: 1,
    start_ns: S,
    end_ns: S + 50_000_000,
    n_cores: 2,
    dropped: 0,
    lanes: {
      query: { kind: 'async', priority: 1, min_concurrency: 2, max_concurrency: 16, adaptive: false },
      control: { kind: 'async', priority: 0, min_concurrency: 1, max_concurrency: 4, adaptive: false }
    },
    events: [{ t_ns: S + 1_000, type: 'decision', mode: 'parallel' }],
    tasks: [
      {
        id: 1, lane: 'query', name: 'read', args: "path='a.txt'", outcome: 'ok',
        submitted_ns: S, slot_free_ns: S, started_ns: S + 100_000, finished_ns: S + 20_100_000,
        cpu_ns: 1_000_000, wait_ns: 19_000_000, slot: 0,
        segments: [['dispatch', S, S + 100_000], ['cpu', S + 100_000, S + 1_100_000], ['wait', S + 1_100_000, S + 20_100_000]]
      },
      {
        id: 2, lane: 'query', name: 'read', args: "path='b.txt'", outcome: 'error',
        submitted_ns: S, slot_free_ns: S + 20_100_000, started_ns: S + 20_200_000, finished_ns: S + 30_000_000,
        cpu_ns: 800_000, wait_ns: 9_000_000, slot: 0,
        segments: [['queued', S, S + 20_100_000], ['dispatch', S + 20_100_000, S + 20_200_000], ['wait', S + 20_200_000, S + 30_000_000]],
        extra: { error: 'FileNotFoundError: b.txt', phases: [['open', S + 20_200_000, S + 21_000_000]] }
      },
      {
        id: 3, lane: 'control', name: 'plan', args: '', outcome: 'cancelled',
        submitted_ns: S + 1_000, slot_free_ns: S + 2_000, started_ns: S + 2_000, finished_ns: S + 2_000,
        cpu_ns: 0, wait_ns: 0, slot: -1, segments: [['queued', S + 1_000, S + 2_000]]
      }
    ],
    samples: [
      [S + 10_000_000, [0.5, 0.25], 0.7, { query: [1, 1, 16] }],
      [S + 20_000_000, [1.0, 0.0], 1.0, { query: [1, 0, 16] }]
    ],
    summary: { tasks: 3, errors: 1, wall_s: 0.05, speedup: 1.5, efficiency: 0.42, dispatch_p50_us: 100 }
  };
}

/** The same tasks as nativeTrace, written the way lanepar's Perfetto exporter lays them out. */
function chromeTrace(): Record<string, unknown> {
  const us = (ns: number): number => (ns - S) / 1000;
  return {
    traceEvents: [
      { ph: 'M', name: 'process_name', pid: 1, args: { name: 'control' } },
      { ph: 'M', name: 'process_name', pid: 2, args: { name: 'query' } },
      { ph: 'b', cat: 'queued', name: 'read', id: 2, pid: 2, tid: 1, ts: us(S) },
      { ph: 'e', cat: 'queued', name: 'read', id: 2, pid: 2, tid: 1, ts: us(S + 20_100_000) },
      { ph: 'X', cat: 'dispatch', name: 'dispatch', pid: 2, tid: 1, ts: us(S), dur: 100 },
      {
        ph: 'X', cat: 'task', name: 'read', pid: 2, tid: 1, ts: us(S + 100_000), dur: 20_000,
        args: {
          id: 1, args: "path='a.txt'", outcome: 'ok', lane: 'query', slot: 0, submitted_ns: S,
          slot_free_ns: S, started_ns: S + 100_000, finished_ns: S + 20_100_000, cpu_ns: 1_000_000, wait_ns: 19_000_000
        }
      },
      { ph: 'X', cat: 'cpu', name: 'cpu', pid: 2, tid: 1, ts: us(S + 100_000), dur: 1000 },
      { ph: 'X', cat: 'wait', name: 'wait', pid: 2, tid: 1, ts: us(S + 1_100_000), dur: 19_000 },
      { ph: 'X', cat: 'dispatch', name: 'dispatch', pid: 2, tid: 1, ts: us(S + 20_100_000), dur: 100 },
      {
        ph: 'X', cat: 'task', name: 'read', pid: 2, tid: 1, ts: us(S + 20_200_000), dur: 9800,
        args: {
          id: 2, args: "path='b.txt'", outcome: 'error', lane: 'query', slot: 0, submitted_ns: S,
          slot_free_ns: S + 20_100_000, started_ns: S + 20_200_000, finished_ns: S + 30_000_000,
          cpu_ns: 800_000, wait_ns: 9_000_000, error: 'FileNotFoundError: b.txt'
        }
      },
      { ph: 'X', cat: 'wait', name: 'wait', pid: 2, tid: 1, ts: us(S + 20_200_000), dur: 9800 },
      { ph: 'C', name: 'cpu', pid: 0, ts: 10_000, args: { core0: 50, core1: 25, avg: 37.5 } },
      { ph: 'C', name: 'cpu', pid: 0, ts: 20_000, args: { core0: 100, core1: 0, avg: 50 } }
    ],
    displayTimeUnit: 'ms',
    otherData: {
      lanepar: {
        format: 'lanepar-trace', version: 1, start_ns: S, end_ns: S + 50_000_000, n_cores: 2,
        lanes: (nativeTrace() as { lanes: unknown }).lanes, events: [{ t_ns: S + 1_000, type: 'decision' }], dropped: 0
      }
    }
  };
}

test('native reader makes times relative and keeps every field the view shows', () => {
  const m = readLaneparTrace(nativeTrace());
  assert.strictEqual(m.startNs, S);
  assert.strictEqual(m.end, 50_000_000);
  assert.strictEqual(m.tasks.length, 3);
  const t2 = m.tasks[1];
  assert.deepStrictEqual(t2.segments[0], ['queued', 0, 20_100_000]);
  assert.strictEqual(t2.error, 'FileNotFoundError: b.txt');
  assert.deepStrictEqual(t2.phases, [['open', 20_200_000, 21_000_000]]);
  assert.deepStrictEqual(m.samples[0].cores, [0.5, 0.25]);
  assert.deepStrictEqual(m.samples[0].lanes.query, [1, 1, 16]);
  assert.strictEqual(m.events[0].t, 1_000);
  assert.strictEqual(m.events[0].fields.mode, 'parallel');
});

test('native reader rejects other formats and versions with a readable message', () => {
  assert.throws(() => readLaneparTrace({ format: 'other' }), TraceFormatError);
  assert.throws(() => readLaneparTrace({ ...nativeTrace(), version: 2 }), /version 2/);
  assert.throws(() => readTrace('{not json'), /not valid JSON/);
});

test('chrome converter reproduces the native model of the same run', () => {
  const a = readLaneparTrace(nativeTrace());
  const b = readTrace(JSON.stringify(chromeTrace()));
  assert.strictEqual(b.source, 'chrome');
  assert.strictEqual(b.startNs, S);
  assert.strictEqual(b.end, a.end);
  assert.deepStrictEqual(Object.keys(b.lanes).sort(), Object.keys(a.lanes).sort());
  for (const id of [1, 2]) {
    const x = a.tasks.find(t => t.id === id)!;
    const y = b.tasks.find(t => t.id === id)!;
    for (const k of ['lane', 'name', 'args', 'outcome', 'slot', 'submitted', 'slotFree', 'started', 'finished', 'cpuNs', 'waitNs', 'error'] as const) {
      assert.deepStrictEqual(y[k], x[k], `task ${id} field ${k}`);
    }
    assert.deepStrictEqual(y.segments.map(s => s[0]), x.segments.map(s => s[0]), `task ${id} segment kinds`);
    y.segments.forEach((s, i) => {
      assert.ok(Math.abs(s[1] - x.segments[i][1]) <= 1000 && Math.abs(s[2] - x.segments[i][2]) <= 1000);
    });
  }
  assert.strictEqual(b.samples.length, 2);
  assert.deepStrictEqual(b.samples[0].cores, [0.5, 0.25]);
  assert.strictEqual(b.samples[1].t, 20_000_000);
  assert.strictEqual(b.events[0].type, 'decision');
});

test('chrome converter works without otherData, deriving lanes and the start', () => {
  const c = chromeTrace();
  delete c.otherData;
  const m = readChromeTrace(c);
  assert.strictEqual(m.startNs, S);
  assert.deepStrictEqual(Object.keys(m.lanes), ['query']);
  assert.strictEqual(m.nCores, 2);
  assert.strictEqual(m.tasks[0].finished, 20_100_000);
});

test('chrome converter refuses a trace without lanepar tasks', () => {
  assert.throws(() => readChromeTrace({ traceEvents: [{ ph: 'X', name: 'f', ts: 0, dur: 1 }] }), TraceFormatError);
});

test('rows: one per used slot, lanes by priority, never-run tasks last', () => {
  const groups = buildGroups(readLaneparTrace(nativeTrace()));
  assert.deepStrictEqual(groups.map(g => g.lane), ['control', 'query']);
  assert.deepStrictEqual(groups.flatMap(g => g.rows.map(r => r.label)), ['control (never ran)', 'query#0']);
});

test('hit-testing prefers the slot holder over an overlapping queued span', () => {
  const row = buildGroups(readLaneparTrace(nativeTrace()))[1].rows[0];
  assert.strictEqual(taskAt(row, 10_000_000, 10)!.id, 1); // task 2 is queued here too
  assert.strictEqual(taskAt(row, 25_000_000, 10)!.id, 2);
  assert.strictEqual(taskAt(row, 40_000_000, 10), null);
  assert.strictEqual(taskAt(row, 30_000_500, 1000)!.id, 2); // within tolerance of the end
});

test('summary header uses the trace summary, else counts from the tasks', () => {
  const m = readLaneparTrace(nativeTrace());
  const f = Object.fromEntries(summaryFigures(m).map(x => [x.key, x.value]));
  assert.strictEqual(f.speedup, '1.5×');
  assert.strictEqual(f.efficiency, '42%');
  assert.strictEqual(f.dispatch_p50_us, '100 µs');
  assert.strictEqual(f.wall_s, '50 ms');
  m.summary = null;
  const g = Object.fromEntries(summaryFigures(m).map(x => [x.key, x.value]));
  assert.deepStrictEqual(g, { tasks: '3', errors: '2', wall_s: '50 ms' });
});

test('durations and ticks pick readable units', () => {
  assert.strictEqual(formatDuration(512), '0.512 µs');
  assert.strictEqual(formatDuration(12_340), '12.3 µs');
  assert.strictEqual(formatDuration(20_100_000), '20.1 ms');
  assert.strictEqual(formatDuration(1_500_000_000), '1.5 s');
  const { step, ticks } = niceTicks(0, 50_000_000, 5);
  assert.strictEqual(step, 10_000_000);
  assert.deepStrictEqual(ticks, [0, 10e6, 20e6, 30e6, 40e6, 50e6]);
  assert.strictEqual(formatTick(20e6, step), '20 ms');
  assert.strictEqual(formatTick(2.5e6, 5e5), '2.5 ms');
});
