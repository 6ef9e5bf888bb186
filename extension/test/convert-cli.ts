/**
 * `node test-build/test/convert-cli.js FILE` prints the viewer's model of FILE as JSON.
 * The Python tests use it to check the TypeScript readers against lanepar's own exporters.
 */

import * as fs from 'fs';

import { buildGroups } from '../src/layout';
import { readTrace } from '../src/read';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: convert-cli FILE\n');
  process.exit(2);
}
try {
  const model = readTrace(fs.readFileSync(file, 'utf8'));
  const rows = buildGroups(model).flatMap(g => g.rows.map(r => r.label));
  process.stdout.write(JSON.stringify({ ...model, rows }));
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
}
