// Benchmark of the systemtap plugin (not a test: prints figures, asserts nothing).
//
//   node bench/systemtap.mjs [lines=1000000]      (build first: npx tsc -b plugins/systemtap)
//
// 1. Parser throughput per output convention (recorded testdata lines, repeated to LINES lines):
//    lines per second through the plugin's parser, as a ratio to a baseline that only splits the
//    same lines into fields and converts the numbers (the least any parser must do).
// 2. Supervisor start-up: time from spawn to the first stdout line of `sh -c 'echo ready'` run
//    under dist/supervise.js, as a ratio to running it directly (median of 15 each, alternating).
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const pluginDir = `${root}plugins/systemtap`;
const { default: plugin } = await import(`${pluginDir}/dist/index.js`);
const total = Number(process.argv[2] ?? 1_000_000);

function recorded(name) {
  const lines = readFileSync(`${pluginDir}/testdata/stap-4.8-bpf-${name}/stdout.txt`, 'utf8')
    .split('\n')
    .filter(Boolean);
  const header = lines.filter((l) => l.startsWith('# scalpels:'));
  const body = lines.filter((l) => !l.startsWith('# scalpels:'));
  const out = [...header];
  while (out.length < total) out.push(...body);
  return out.slice(0, total);
}

function viaParser(lines) {
  const parser = plugin.parser({ options: {}, startedAt: 0 });
  let records = 0;
  const t = process.hrtime.bigint();
  for (const l of lines) {
    const r = parser.line(l);
    if (Array.isArray(r)) records += r.length;
    else if (r && r.kind !== 'diagnostic') records++;
  }
  return { ns: Number(process.hrtime.bigint() - t), records };
}

function baseline(lines) {
  let sum = 0;
  const t = process.hrtime.bigint();
  for (const l of lines) {
    if (l.startsWith('{')) {
      sum += Object.keys(JSON.parse(l)).length;
      continue;
    }
    for (const f of l.split(/[\t ]+/)) {
      const n = Number(f);
      if (Number.isFinite(n)) sum += n;
    }
  }
  return { ns: Number(process.hrtime.bigint() - t), sum };
}

const parse = {};
for (const name of ['count-per-second', 'key-value-table', 'columns', 'events', 'json']) {
  const lines = recorded(name);
  baseline(lines.slice(0, 50_000));
  viaParser(lines.slice(0, 50_000)); // warm-up
  const b = baseline(lines);
  const p = viaParser(lines);
  parse[name] = {
    lines: lines.length,
    parserLinesPerSec: Math.round(lines.length / (p.ns / 1e9)),
    baselineLinesPerSec: Math.round(lines.length / (b.ns / 1e9)),
    ratio: +(b.ns / p.ns).toFixed(3),
  };
}

function firstLineMs(argv) {
  return new Promise((resolve) => {
    const t = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
    child.stdout.once('data', () => resolve(Number(process.hrtime.bigint() - t) / 1e6));
  });
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const direct = [];
const supervised = [];
const cmd = ['sh', '-c', 'echo ready'];
for (let i = 0; i < 15; i++) {
  direct.push(await firstLineMs(cmd));
  supervised.push(
    await firstLineMs([
      process.execPath,
      `${pluginDir}/dist/supervise.js`,
      '--module',
      'bench',
      '--runtime',
      'bpf',
      '--',
      ...cmd,
    ]),
  );
}
const result = {
  benchmark: 'systemtap',
  parse,
  supervisorStartup: {
    directMs: +median(direct).toFixed(2),
    supervisedMs: +median(supervised).toFixed(2),
    ratio: +(median(supervised) / median(direct)).toFixed(2),
  },
};
mkdirSync(`${root}bench/results`, { recursive: true });
writeFileSync(`${root}bench/results/systemtap.json`, `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(result));
