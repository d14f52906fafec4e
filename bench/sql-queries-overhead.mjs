// Benchmark of the sql-queries plugin (not a test: prints figures, asserts nothing).
//
//   node bench/sql-queries-overhead.mjs [runs=3]    (build first: npx tsc -b plugins/sql-queries;
//                                                    needs MariaDB as root on its unix socket)
//
// 1. Workload slowdown: wall time of a fixed mysqlslap run (4 connections, 4000 mixed statements)
//    while traced, as a ratio to the same run untraced, alternating runs in this same process:
//    with the digest technique (performance_schema read every 1 s) and with events=true (slow
//    log with long_query_time=0 on top: the server writes every statement to a file).
// 2. Collector cost: CPU time of the collector per traced second.
// 3. Parser throughput: recorded collector lines parsed per second, as a ratio to JSON.parse alone.
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { validateOptions } from '@scalpels/core';

const root = fileURLToPath(new URL('..', import.meta.url));
const pluginDir = `${root}plugins/sql-queries`;
const plugin = (await import(`${pluginDir}/dist/index.js`)).default;
const runs = Number(process.argv[2] ?? 3);
const USER_HZ = 100;

function cpuMsOf(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / USER_HZ;
}

function workload() {
  const t0 = process.hrtime.bigint();
  execFileSync(
    'mysqlslap',
    [
      '-uroot',
      '--concurrency=4',
      '--iterations=1',
      '--number-of-queries=4000',
      '--auto-generate-sql',
      '--auto-generate-sql-load-type=mixed',
      '--create-schema=scalpels_bench',
    ],
    { stdio: 'ignore' },
  );
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

const target = { kind: 'none', pids: [], description: 'system-wide' };

async function traced(raw) {
  const options = validateOptions(plugin, raw);
  const technique = raw.technique;
  const journal = [];
  const ctx = { target, taskId: 'bench', tracerId: 1, technique, runtimeDir: '/tmp', pluginDir };
  await plugin.setup(options, { ...ctx, journal: async (a) => void journal.push(a) });
  try {
    const spec = await plugin.worker(options, ctx);
    const child = spawn(spec.argv[0], spec.argv.slice(1), {
      env: { ...process.env, ...spec.env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    let lines = 0;
    child.stdout.on('data', (c) => {
      out += c.toString();
      const cut = out.lastIndexOf('\n');
      lines += out.slice(0, cut + 1).split('\n').length - 1;
      out = out.slice(cut + 1);
    });
    while (lines === 0) await new Promise((r) => setTimeout(r, 20));
    const cpu0 = cpuMsOf(child.pid);
    const t0 = Date.now();
    const ms = workload();
    const cpu = cpuMsOf(child.pid) - cpu0;
    const wall = Date.now() - t0;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    return { ms, collectorCpuFraction: cpu / wall, lines };
  } finally {
    for (const a of journal.reverse()) await plugin.undo(a, options);
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const base = [];
const digest = [];
const events = [];
workload(); // warm-up
for (let i = 0; i < runs; i++) {
  base.push(workload());
  digest.push(await traced({ technique: 'mysql-digest', interval: '1s' }));
  base.push(workload());
  events.push(await traced({ technique: 'mysql-digest', events: true, interval: '1s' }));
}
execFileSync('mariadb', ['-uroot', '-e', 'DROP DATABASE IF EXISTS scalpels_bench']);

// Parser throughput over the recorded testdata, repeated.
const recorded = readdirSync(`${pluginDir}/testdata`).flatMap((d) =>
  readFileSync(`${pluginDir}/testdata/${d}/stdout.txt`, 'utf8').split('\n').filter(Boolean),
);
const all = Array.from({ length: Math.ceil(200_000 / recorded.length) }, () => recorded).flat();
const time = (fn) => {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
};
const baselineMs = time(() => all.forEach((l) => JSON.parse(l)));
const parser = plugin.parser({ options: validateOptions(plugin, {}), startedAt: 0 });
const parserMs = time(() => all.forEach((l) => parser.line(l)));

const result = {
  bench: 'sql-queries-overhead',
  runs,
  baselineMs: median(base),
  digestSlowdown: median(digest.map((d) => d.ms)) / median(base),
  eventsSlowdown: median(events.map((d) => d.ms)) / median(base),
  digestCollectorCpuFraction: median(digest.map((d) => d.collectorCpuFraction)),
  eventsCollectorCpuFraction: median(events.map((d) => d.collectorCpuFraction)),
  parserLinesPerSecond: Math.round(all.length / (parserMs / 1000)),
  parserVsJsonParse: baselineMs / parserMs,
};
console.log(JSON.stringify(result));
mkdirSync(`${root}bench/results`, { recursive: true });
writeFileSync(
  `${root}bench/results/sql-queries-overhead.json`,
  `${JSON.stringify(result, null, 2)}\n`,
);
