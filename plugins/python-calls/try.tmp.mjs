import { runWorker } from '@scalpels/core/testing';
import plugin from '/work/main/plugins/python-calls/dist/index.js';
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync, rmSync } from 'node:fs';
const py = process.argv[2] ?? 'python3';
const hold = '/tmp/pc_hold'; rmSync(hold, {force:true});
const child = spawn(py, ['/work/main/plugins/python-calls/test/fixtures/calls.py', '10000', '12000', '--wait-hook', '--hold', hold], { stdio: ['ignore', 'pipe', 'inherit'] });
let out = ''; child.stdout.on('data', (c) => { out += c; });
await new Promise(r => setTimeout(r, 300));
const t0 = Date.now();
const res = await runWorker(plugin, { pluginDir: '/work/main/plugins/python-calls', options: { function: 'f,g' },
  target: { kind: 'pid', pids: [child.pid], description: 'pid' },
  during: async () => { console.log('ready after', Date.now() - t0); while (!out.includes('holding')) await new Promise(r => setTimeout(r, 20)); } });
writeFileSync(hold, '');
await new Promise(r => child.on('close', r));
console.log(out);
console.log(res.outcome.status, res.outcome.error, res.outcome.stderrTail, res.outcome.parseErrors);
const sums = {};
for (const r of res.records) { if (r.kind === 'sample') { const k = r.series + ' ' + r.labels.function; sums[k] = (sums[k] ?? 0) + r.value; } else console.log(JSON.stringify(r)); }
console.log(sums);
