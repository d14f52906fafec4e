// Benchmark of the proc plugin (not a test: prints figures, asserts nothing).
//
//   node bench/proc-overhead.mjs [seconds=5]      (build first: npx tsc -b plugins/proc)
//
// 1. Sampler cost: CPU time the sampler spends per sample at a 100 ms interval, system-wide and
//    with the whole machine as target tree (pid 1: the worst case, every process is a member),
//    as a fraction of one CPU.
// 2. Workload slowdown: wall time of a fixed CPU-bound job with the worst-case sampler running
//    beside it, as a ratio to the same job alone, alternating runs in this same process.
// 3. Parser throughput: recorded sampler lines parsed per second, as a ratio to a baseline that
//    only splits the same lines on tabs.
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const pluginDir = `${root}plugins/proc`;
const sampler = `${pluginDir}/dist/worker-main.js`;
const seconds = Number(process.argv[2] ?? 5);
const USER_HZ = 100;

function cpuMsOf(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / USER_HZ;
}

async function samplerCost(args) {
  const child = spawn(process.execPath, [sampler, '--interval-ms', '100', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let lines = 0;
  let ready;
  const isReady = new Promise((r) => (ready = r));
  let samples = 0;
  let lastTs = '';
  child.stdout.on('data', (chunk) => {
    for (const line of chunk.toString().split('\n')) {
      if (line === '# ready') ready();
      if (!line || line.startsWith('#')) continue;
      lines++;
      const ts = line.slice(0, line.indexOf('\t'));
      if (ts !== lastTs) {
        samples++;
        lastTs = ts;
      }
    }
  });
  await isReady;
  const before = cpuMsOf(child.pid);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const used = cpuMsOf(child.pid) - before;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
  return {
    samples,
    lines,
    cpuMsPerSample: used / Math.max(1, samples),
    cpuFraction: used / (seconds * 1000),
  };
}

function job() {
  const t = process.hrtime.bigint();
  execFileSync(process.execPath, [
    '-e',
    'let x = 0; for (let i = 0; i < 3e8; i++) x += i % 7; console.log(x)',
  ]);
  return Number(process.hrtime.bigint() - t) / 1e6;
}

async function slowdown(rounds) {
  const alone = [];
  const traced = [];
  for (let i = 0; i < rounds; i++) {
    alone.push(job());
    const child = spawn(process.execPath, [sampler, '--interval-ms', '100', '--pid', '1'], {
      stdio: 'ignore',
    });
    await new Promise((r) => setTimeout(r, 300));
    traced.push(job());
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  return {
    aloneMs: median(alone),
    tracedMs: median(traced),
    ratio: median(traced) / median(alone),
  };
}

async function parserThroughput() {
  const { parseLine } = await import(`${pluginDir}/dist/parser.js`);
  const text = readFileSync(`${pluginDir}/testdata/sampler-0.1.0-system-idle/stdout.txt`, 'utf8');
  const lines = text.split('\n').filter(Boolean);
  const time = (fn) => {
    const t = process.hrtime.bigint();
    let n = 0;
    for (let i = 0; i < 2000; i++) for (const l of lines) n += fn(l) ? 1 : 0;
    return { n, ms: Number(process.hrtime.bigint() - t) / 1e6 };
  };
  const base = time((l) => l.split('\t').length);
  const parse = time(parseLine);
  return {
    lines: base.n,
    baselineLinesPerSec: Math.round((base.n / base.ms) * 1000),
    parserLinesPerSec: Math.round((parse.n / parse.ms) * 1000),
    ratioToBaseline: base.ms / parse.ms,
  };
}

const processes = execFileSync('sh', ['-c', 'ls -d /proc/[0-9]* | wc -l']).toString().trim();
const result = {
  bench: 'proc-overhead',
  date: new Date().toISOString(),
  processes: Number(processes),
  systemOnly: await samplerCost([]),
  wholeMachineTree: await samplerCost(['--pid', '1']),
  slowdown: await slowdown(3),
  parser: await parserThroughput(),
};
console.log(JSON.stringify(result, null, 2));
mkdirSync(`${root}bench/results`, { recursive: true });
writeFileSync(`${root}bench/results/proc-overhead.json`, JSON.stringify(result, null, 2) + '\n');
