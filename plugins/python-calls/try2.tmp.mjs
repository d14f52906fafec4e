import { runWorker } from '@scalpels/core/testing';
import plugin from '/work/main/plugins/python-calls/dist/index.js';
import { spawn } from 'node:child_process';
import { writeFileSync, rmSync } from 'node:fs';
const py = process.argv[2] ?? 'python3';
const go = '/tmp/pc_go'; rmSync(go, {force:true});
const launcher = spawn(process.execPath, ['-e', `
const fs = require('fs'); const cp = require('child_process');
const t = setInterval(() => { if (fs.existsSync(${JSON.stringify(go)})) { clearInterval(t);
  const c = cp.spawn(${JSON.stringify(py)}, ['/work/main/plugins/python-calls/test/fixtures/calls.py', '10000', '7000'], { stdio: 'inherit' });
  c.on('close', (code) => process.exit(code)); } }, 5);`], { stdio: ['ignore', 'pipe', 'inherit'] });
let out = ''; launcher.stdout.on('data', (c) => { out += c; });
const t0 = Date.now();
const res = await runWorker(plugin, { pluginDir: '/work/main/plugins/python-calls', options: { function: 'f,g', timing: process.argv[3] === 'timing' },
  target: { kind: 'run', pids: [launcher.pid], description: 'run' },
  during: async () => { console.log('ready after', Date.now() - t0); writeFileSync(go, ''); await new Promise(r => launcher.on('close', r)); } });
console.log(out);
console.log(res.outcome.status, res.outcome.error, res.outcome.stderrTail, res.outcome.parseErrors);
const sums = {};
for (const r of res.records) { if (r.kind === 'sample') { const k = r.series + ' ' + r.labels.function + (r.labels.le ? ' le=' + r.labels.le : ''); sums[k] = (sums[k] ?? 0) + r.value; } else console.log(JSON.stringify(r)); }
console.log(sums);
