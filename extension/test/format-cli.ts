/**
 * The TypeScript formatter under Node, for `tests/test_format.py`: reads a JSON file of values
 * and summaries, prints what `format.ts` makes of them, so Python can compare with its twin.
 */

import { readFileSync } from 'fs';

import { formatDuration, formatPercent, formatSpeedup, headline, trim } from '../src/format';

interface IInput {
  numbers: number[];
  durations_ns: number[];
  fractions: number[];
  summaries: Array<Record<string, unknown>>;
}

const input = JSON.parse(readFileSync(process.argv[2], 'utf-8')) as IInput;
const out = {
  sig3: input.numbers.map(trim),
  speedup: input.numbers.map(formatSpeedup),
  duration: input.durations_ns.map(formatDuration),
  percent: input.fractions.map(formatPercent),
  headline: input.summaries.map(s => headline(s).map(h => [h.key, h.label, h.value]))
};
process.stdout.write(JSON.stringify(out));
