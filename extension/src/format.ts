/**
 * Human-readable numbers for labels and tooltips: the twin of `lanepar/analysis/format.py`
 * (a test feeds both the same values and compares the strings). Durations pick µs, ms or s so
 * that three significant digits survive from a 20 µs dispatch up to a minute-long batch.
 */

export function formatDuration(ns: number): string {
  if (!isFinite(ns)) {
    return '–';
  }
  const a = Math.abs(ns);
  if (a < 1e6) {
    return `${trim(ns / 1e3)} µs`;
  }
  if (a < 1e9) {
    return `${trim(ns / 1e6)} ms`;
  }
  return `${trim(ns / 1e9)} s`;
}

/**
 * Three significant digits without trailing zeros (1.20 -> "1.2", 123.4 -> "123"). `toFixed`
 * rounds the exact binary value half away from zero; Python's twin does the same with Decimal.
 */
export function trim(x: number): string {
  if (!isFinite(x)) {
    return '–';
  }
  if (x === 0) {
    return '0';
  }
  const digits = Math.min(Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x)))), 6);
  return String(Number(x.toFixed(digits)));
}

/** A speedup: "4.63×". */
export function formatSpeedup(x: number): string {
  return isFinite(x) ? `${trim(x)}×` : '–';
}

/** A fraction as a percentage: 0.283 -> "28%", 0.004 -> "0.4%", 0.0004 -> "<0.1%". */
export function formatPercent(fraction: number): string {
  if (!isFinite(fraction)) {
    return '–';
  }
  const p = fraction * 100;
  if (p === 0) {
    return '0%';
  }
  if (Math.abs(p) >= 1) {
    return `${trim(Number(p.toFixed(0)))}%`;
  }
  return Math.abs(p) >= 0.1 ? `${trim(p)}%` : '<0.1%';
}

export interface IHeadline {
  key: string;
  label: string;
  value: string;
}

function numOf(s: Record<string, unknown>, k: string): number {
  const v = s[k];
  return typeof v === 'number' && isFinite(v) ? v : 0;
}

/**
 * The headline figures every view shows, from a `lanepar.summarize()` dict: the dashboard's
 * panel, the trace viewer's header, the snapshot. Same keys, labels and text as Python's
 * `lanepar.analysis.format.headline`.
 */
export function headline(s: Record<string, unknown>): IHeadline[] {
  const ideal = numOf(s, 'ideal_speedup');
  return [
    { key: 'tasks', label: 'tasks', value: String(Math.trunc(numOf(s, 'tasks'))) },
    { key: 'errors', label: 'errors', value: String(Math.trunc(numOf(s, 'errors'))) },
    { key: 'wall_s', label: 'wall', value: formatDuration(numOf(s, 'wall_s') * 1e9) },
    {
      key: 'speedup',
      label: 'speedup',
      value: formatSpeedup(numOf(s, 'speedup')) + (ideal > 0 ? ` of ${formatSpeedup(ideal)}` : '')
    },
    { key: 'efficiency', label: 'efficiency', value: formatPercent(numOf(s, 'efficiency')) },
    { key: 'cpu_util_avg', label: 'CPU util', value: formatPercent(numOf(s, 'cpu_util_avg')) },
    { key: 'dispatch_p50_us', label: 'dispatch p50', value: formatDuration(numOf(s, 'dispatch_p50_us') * 1e3) },
    { key: 'dispatch_p99_us', label: 'dispatch p99', value: formatDuration(numOf(s, 'dispatch_p99_us') * 1e3) },
    { key: 'queued_p50_us', label: 'queued p50', value: formatDuration(numOf(s, 'queued_p50_us') * 1e3) }
  ];
}

/** What `speedup` means, in the words every view prints next to it (Python's SPEEDUP_MEANING). */
export const SPEEDUP_MEANING =
  'speedup = estimated sequential time (the CPU and I/O-wait time of every task, which it would also spend alone) / wall time';

/** Axis label for a tick at `ns`, in the unit (µs, ms, s) that suits the tick `step`. */
export function formatTick(ns: number, step: number): string {
  const [div, unit] = step >= 1e8 ? [1e9, 's'] : step >= 1e5 ? [1e6, 'ms'] : [1e3, 'µs'];
  const decimals = Math.max(0, Math.ceil(-Math.log10(step / div) - 1e-9));
  const text = (ns / div).toFixed(Math.min(decimals, 6));
  return `${Number(text) === 0 ? '0' : text} ${unit}`;
}

/** Ticks at 1/2/5 × 10^k spacing, about `target` of them across [t0, t1]. */
export function niceTicks(t0: number, t1: number, target: number): { step: number; ticks: number[] } {
  const span = Math.max(t1 - t0, 1e-9);
  const raw = span / Math.max(target, 1);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  const ticks: number[] = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1 + step * 1e-9; t += step) {
    ticks.push(t);
  }
  return { step, ticks };
}
