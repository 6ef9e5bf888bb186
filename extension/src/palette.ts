/**
 * The one palette, shared with Python: `lanepar/trace/palette.json` is imported at build
 * time (esbuild inlines it), so the HTML report, the widget and this viewer cannot drift.
 */

import palette from '../../lanepar/trace/palette.json';

import type { Outcome, SegmentKind } from './model';

interface IEntry {
  colour: string;
  label: string;
}

const segments: Record<SegmentKind, IEntry> = palette.segments;
const outcomes: Record<Outcome, IEntry> = palette.outcomes;

/** Segment kind -> CSS colour. */
export const COLORS: Record<SegmentKind, string> = mapValues(segments, e => e.colour);
/** Segment kind -> legend text ("I/O wait", "GIL / lock wait", ...). */
export const LABELS: Record<SegmentKind, string> = mapValues(segments, e => e.label);
export const OUTCOME_COLORS: Record<Outcome, string> = mapValues(outcomes, e => e.colour);
export const OUTCOME_LABELS: Record<Outcome, string> = mapValues(outcomes, e => e.label);
/** A task still running (live view only). */
export const RUNNING: IEntry = palette.running;
/** Outline of a task that did not end ok: dark, so it shows on every segment colour. */
export const OUTLINE: string = palette.outline;
/** Per-core utilisation heat (and the average CPU line). */
export const CORE_HEAT: string = palette.core_heat;

/** `rgba()` of a `#rrggbb` colour at `alpha`, for heat strips that fade one colour. */
export function withAlpha(hex: string, alpha: number): string {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha.toFixed(3)})`;
}

function mapValues<K extends string, V, W>(o: Record<K, V>, f: (v: V) => W): Record<K, W> {
  const out = {} as Record<K, W>;
  for (const k of Object.keys(o) as K[]) {
    out[k] = f(o[k]);
  }
  return out;
}
