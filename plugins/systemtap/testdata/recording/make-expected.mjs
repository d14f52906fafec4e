// Writes CASE/expected.json from the plugin's parser (build the plugin first), and prints per
// series and per event key totals, to be checked against CASE/ground-truth.txt by a human.
//   node make-expected.mjs CASE_DIR...
import { writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { loadTestdata, parseTestdataCase } from '@scalpels/core/testing';
import plugin from '../../dist/index.js';

for (const dir of process.argv.slice(2)) {
  const c = loadTestdata(dirname(dir)).find((x) => x.name === basename(dir));
  if (!c) throw new Error(`no case ${dir}`);
  const out = parseTestdataCase(plugin, c);
  const expected = { records: out.records, parseErrors: out.diagnostics.length, dropped: out.dropped };
  writeFileSync(`${dir}/expected.json`, `${JSON.stringify(expected, null, 2)}\n`);
  const totals = new Map();
  for (const r of out.records) {
    const id = r.kind === 'sample' ? `${r.series} ${JSON.stringify(r.labels ?? {})}` : `event ${r.key}`;
    const t = totals.get(id) ?? { n: 0, sum: 0 };
    t.n++;
    t.sum += r.kind === 'sample' ? r.value : (r.durationMs ?? 0);
    totals.set(id, t);
  }
  console.log(`${c.name}: ${out.records.length} records, ${out.diagnostics.length} parse errors, ${out.dropped} dropped`);
  for (const [id, t] of totals) console.log(`  ${id}: points ${t.n}, sum ${+t.sum.toFixed(6)}`);
  for (const d of out.diagnostics) console.log(`  line ${d.line}: ${d.message}`);
}
