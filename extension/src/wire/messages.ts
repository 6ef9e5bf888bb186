/**
 * What crosses from the kernel to the dashboard widget: the TypeScript side of
 * `lanepar/jupyter/messages.py` (its TypedDicts carry the same names and fields).
 *
 * Bulk data rides in binary buffers next to a small JSON header, in this order:
 * 0 records (`TaskRecord.packed` back to back, see records.ts), 1 ends (uint32 per task:
 * where its record ends), 2 codes (uint16 × 3 per task: lane, outcome, tool name),
 * 3 running (int64 × 6 per running task: id, lane, slot, name, submitted, started or 0),
 * 4 samples (float32 × `sample_width` per sample: t in ms after `t0_ns`, process CPU,
 * one utilisation per core, then (active, pending, limit) per lane).
 */

export const CODE_INTS = 3;
export const RUNNING_INTS = 6;
export const BUFFER_NAMES = ['records', 'ends', 'codes', 'running', 'samples'] as const;

export interface IFigures {
  done: number;
  total: number;
  running: number;
  errors: number;
  elapsed_s: number;
  task_time_s: number;
  speedup: number;
  ideal_speedup: number;
  efficiency: number;
  cpu_util: number;
  dispatch_p50_ms: number;
  dispatch_p99_ms: number;
  queued_p50_ms: number;
  final: boolean;
}

export interface ILaneState {
  name: string;
  kind: string;
  active: number;
  pending: number;
  limit: number;
  max_active: number;
}

export interface IDeltaMessage {
  type: 'delta';
  seq: number;
  /** int64 ns values travel as JSON numbers; exact while under 2^53 (104 days of uptime). */
  t0_ns: number;
  now_ns: number;
  n_tasks: number;
  n_running: number;
  n_samples: number;
  n_cores: number;
  sample_width: number;
  lanes: string[];
  names: string[];
  errors: Array<[number, string]>;
  running_args: string[];
  done: number;
  total: number;
}

export interface IEndMessage {
  type: 'end';
  seq: number;
  now_ns: number;
}

export interface IResetMessage {
  type: 'reset';
  seq: number;
  t0_ns: number;
}

export type KernelMessage = IDeltaMessage | IEndMessage | IResetMessage;

/** The one message the view sends: "I missed something, send everything again". */
export interface IResyncRequest {
  type: 'resync';
}

/** The synced traitlets of `lanepar.jupyter.dashboard.Dashboard`. */
export interface IWidgetState {
  uid: string;
  title: string;
  status: string;
  figures: Partial<IFigures>;
  lanes: ILaneState[];
  notes: string[];
  /** lane -> [[t_ms, limit], ...] */
  limit_history: Record<string, Array<[number, number]>>;
}

/** The part of anywidget's model the dashboard uses (the snapshot page provides a stand-in). */
export interface IWidgetModel {
  get<K extends keyof IWidgetState>(key: K): IWidgetState[K] | undefined;
  on(event: string, fn: (...args: any[]) => void): void;
  off(event: string, fn?: (...args: any[]) => void): void;
  send(msg: IResyncRequest): void;
}

/** A comm buffer as a byte view (anywidget hands out DataViews; tests may pass Uint8Arrays). */
export type Buffer = DataView | Uint8Array | ArrayBuffer;

export function bytesOf(b: Buffer | undefined): Uint8Array {
  if (!b) {
    return new Uint8Array(0);
  }
  if (b instanceof ArrayBuffer) {
    return new Uint8Array(b);
  }
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

type TypedCtor<T> = { new (buffer: ArrayBuffer, offset: number, length: number): T; BYTES_PER_ELEMENT: number };

/**
 * A typed view of a buffer, copied: a comm buffer's byteOffset need not be aligned for
 * multi-byte element views.
 */
export function typedCopy<T>(b: Buffer | undefined, Type: TypedCtor<T>): T {
  const bytes = bytesOf(b).slice();
  return new Type(bytes.buffer, 0, Math.floor(bytes.byteLength / Type.BYTES_PER_ELEMENT));
}
