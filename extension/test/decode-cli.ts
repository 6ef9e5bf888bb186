/**
 * `node test-build/decode-cli.js FILE` decodes what Python packed, with the widget's real
 * decoder, and prints every field as JSON. FILE holds
 * `{"messages": [[msg, [base64 buffers]], ...], "records": {"origin": "<int>", "packed":
 * [base64, ...]}}`: the messages go through the widget's registry and store exactly as comm
 * messages do; `records` are single `TaskRecord.packed` values read with `RecordReader`
 * against a BigInt origin (exact whatever the clock's magnitude).
 */

import * as fs from 'fs';

import { KernelMessage, IWidgetModel } from '../src/wire/messages';
import { KIND_CODES, OUTCOME_CODES, RecordReader } from '../src/wire/records';
import { Registry } from '../src/widget/registry';
import { Store } from '../src/widget/store';

interface IInput {
  messages: Array<[KernelMessage, string[]]>;
  records: { origin: string; packed: string[] };
}

const b64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));

function dumpStore(st: Store): unknown {
  const tasks = [];
  for (let i = 0; i < st.n; i++) {
    const segs: Array<[string, number]> = [];
    for (let q = 0; q < st.nseg.a[i]; q++) {
      segs.push([KIND_CODES[st.segKind.a[st.seg0.a[i] + q]], st.segEnd.a[st.seg0.a[i] + q]]);
    }
    tasks.push({
      id: st.id.a[i],
      submitted: st.sub.a[i],
      slot_free: st.free.a[i],
      started: st.start.a[i],
      finished: st.fin.a[i],
      cpu: st.cpu.a[i],
      wait: st.wait.a[i],
      gil: st.gil.a[i],
      runq: st.runq.a[i],
      slot: st.slot.a[i],
      lane: st.lanes[st.lane.a[i]],
      outcome: OUTCOME_CODES[st.outcome.a[i]],
      name: st.names[st.name.a[i]],
      args: st.args[i],
      error: st.errors.get(i) ?? null,
      segments: segs
    });
  }
  const samples = [];
  for (let i = 0; i < st.sampleT.n; i++) {
    samples.push({
      t: st.sampleT.a[i],
      proc: st.sampleProc.a[i],
      cores: Array.from(st.sampleCores.a.subarray(i * st.nCores, (i + 1) * st.nCores)),
      lanes: Array.from(st.sampleLanes[i])
    });
  }
  const running = st.running.map(r => ({ ...r, lane: st.lanes[r.lane], name: st.names[r.name] }));
  return { seq: st.seq, origin: String(st.origin), now: st.now, done: st.done, total: st.total, ended: st.ended, tasks, running, samples };
}

function main(): void {
  const input = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')) as IInput;
  const state: Record<string, unknown> = { uid: 'decode-cli', figures: {} };
  const model: IWidgetModel = {
    get: (k: string) => state[k] as any,
    on: () => undefined,
    off: () => undefined,
    send: () => undefined
  };
  const registry = new Registry();
  for (const [msg, bufs] of input.messages) {
    registry.receive(model, msg, bufs.map(b64));
  }
  const store = registry.entries.get('decode-cli')?.store ?? new Store();
  const origin = BigInt(input.records.origin);
  const records = input.records.packed.map(p => {
    const bytes = b64(p);
    const r = new RecordReader(bytes, origin);
    const h = r.head(0);
    const segments = [];
    for (let j = 0; j < h.nSegments; j++) {
      segments.push([KIND_CODES[r.segmentKind(0, j)], r.segmentEnd(0, j)]);
    }
    return { ...h, segments, args: r.args(0, h.nSegments, bytes.length) };
  });
  process.stdout.write(JSON.stringify({ store: dumpStore(store), records }));
}

main();
