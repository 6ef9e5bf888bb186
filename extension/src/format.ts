/**
 * Human-readable numbers for labels and tooltips. Durations pick their unit so
 * that three significant digits survive from nanosecond dispatch overheads up to
 * minute-long batches on the same axis.
 */

export function formatDuration(ns: number): string {
  const a = Math.abs(ns);
  if (!isFinite(ns)) {
    return '–';
  }
  if (a < 1e3) {
    return `${Math.round(ns)} ns`;
  }
  if (a < 1e6) {
    return `${trim(ns / 1e3)} µs`;
  }
  if (a < 1e9) {
    return `${trim(ns / 1e6)} ms`;
  }
  if (a < 600e9) {
    return `${trim(ns / 1e9)} s`;
  }
  return `${trim(ns / 60e9)} min`;
}

/** Three significant digits without trailing zeros (1.20 -> "1.2", 123.4 -> "123"). */
export function trim(x: number): string {
  if (x === 0) {
    return '0';
  }
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x))));
  return String(Number(x.toFixed(Math.min(digits, 6))));
}

/** Axis label for a tick at `ns`, in the unit that suits the tick `step`. */
export function formatTick(ns: number, step: number): string {
  const [div, unit] =
    step >= 1e8 ? [1e9, 's'] : step >= 1e5 ? [1e6, 'ms'] : step >= 100 ? [1e3, 'µs'] : [1, 'ns'];
  const decimals = Math.max(0, Math.ceil(-Math.log10(step / div) - 1e-9));
  return `${(ns / div).toFixed(Math.min(decimals, 6))} ${unit}`;
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
