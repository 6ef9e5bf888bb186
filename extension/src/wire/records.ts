/**
 * Decoder of `TaskRecord.packed`, the bytes the kernel ships as they are (re-encoding costs
 * the batch microseconds a task). The layout comes from `lanepar/trace/layout.json`, the same
 * file Python builds its struct formats from, so the two ends cannot disagree on an offset.
 *
 * Times are returned relative to an origin and subtracted as BigInt first: absolute
 * `perf_counter_ns()` values pass 2^53 after 104 days of uptime, where a float would round.
 */

import layout from '../../../lanepar/trace/layout.json';

type FieldType = 'int64' | 'int32' | 'uint32' | 'uint8';

interface IField {
  name: string;
  type: string;
  offset: number;
}

if (layout.byte_order !== 'little') {
  throw new Error('lanepar: layout.json declares a byte order this decoder does not read');
}

function offsets(fields: IField[]): Record<string, [number, FieldType]> {
  const out: Record<string, [number, FieldType]> = {};
  for (const f of fields) {
    out[f.name] = [f.offset, f.type as FieldType];
  }
  return out;
}

const HEAD = offsets(layout.head);
const SEG = offsets(layout.segment);

function at(table: Record<string, [number, FieldType]>, name: string, type: FieldType): number {
  const f = table[name];
  if (!f || f[1] !== type) {
    throw new Error(`lanepar: layout.json has no ${type} field "${name}"`);
  }
  return f[0];
}

// Resolved once: the decoder runs per task, tens of thousands of times a second.
const O_ID = at(HEAD, 'id', 'int64');
const O_SUBMITTED = at(HEAD, 'submitted', 'int64');
const O_SLOT_FREE = at(HEAD, 'slot_free', 'int64');
const O_STARTED = at(HEAD, 'started', 'int64');
const O_FINISHED = at(HEAD, 'finished', 'int64');
const O_CPU = at(HEAD, 'cpu', 'int64');
const O_WAIT = at(HEAD, 'wait', 'int64');
const O_GIL = at(HEAD, 'gil', 'int64');
const O_RUNQ = at(HEAD, 'runq', 'int64');
const O_SLOT = at(HEAD, 'slot', 'int32');
const O_NSEG = at(HEAD, 'n_segments', 'uint32');
const O_KIND = at(SEG, 'kind', 'uint8');
const O_END = at(SEG, 'end', 'int64');

export const HEAD_SIZE: number = layout.head_size;
export const SEGMENT_SIZE: number = layout.segment_size;
/** A segment's kind code indexes this list; a delta's outcome code indexes `OUTCOME_CODES`. */
export const KIND_CODES: readonly string[] = layout.segment_kinds;
export const OUTCOME_CODES: readonly string[] = layout.outcomes;

/** One record's head; times relative to the decoder's origin, durations as they are (ns). */
export interface IRecordHead {
  id: number;
  submitted: number;
  slotFree: number;
  started: number;
  finished: number;
  cpu: number;
  wait: number;
  gil: number;
  runq: number;
  slot: number;
  nSegments: number;
}

/** Reads records out of one buffer of back-to-back `TaskRecord.packed` bytes. */
export class RecordReader {
  constructor(bytes: Uint8Array, origin: bigint) {
    this._dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this._bytes = bytes;
    this._origin = origin;
  }

  /** The head of the record starting at byte `o`. */
  head(o: number): IRecordHead {
    const dv = this._dv;
    const rel = (k: number): number => Number(dv.getBigInt64(o + k, true) - this._origin);
    const dur = (k: number): number => Number(dv.getBigInt64(o + k, true));
    return {
      id: dur(O_ID),
      submitted: rel(O_SUBMITTED),
      slotFree: rel(O_SLOT_FREE),
      started: rel(O_STARTED),
      finished: rel(O_FINISHED),
      cpu: dur(O_CPU),
      wait: dur(O_WAIT),
      gil: dur(O_GIL),
      runq: dur(O_RUNQ),
      slot: dv.getInt32(o + O_SLOT, true),
      nSegments: dv.getUint32(o + O_NSEG, true)
    };
  }

  /** Kind code of segment `j` of the record at `o`. */
  segmentKind(o: number, j: number): number {
    return this._dv.getUint8(o + HEAD_SIZE + j * SEGMENT_SIZE + O_KIND);
  }

  /** End of segment `j` as an offset from the record's `submitted` (ns). */
  segmentEnd(o: number, j: number): number {
    return Number(this._dv.getBigInt64(o + HEAD_SIZE + j * SEGMENT_SIZE + O_END, true));
  }

  /** The UTF-8 args summary: from after the segments to the record's end. */
  args(o: number, nSegments: number, end: number): string {
    const from = o + HEAD_SIZE + nSegments * SEGMENT_SIZE;
    return from < end ? UTF8.decode(this._bytes.subarray(from, end)) : '';
  }

  private _dv: DataView;
  private _bytes: Uint8Array;
  private _origin: bigint;
}

const UTF8 = new TextDecoder();
