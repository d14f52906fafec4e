// Benchmark of the python-calls plugin (not a test: prints figures, asserts nothing).
//
//   node bench/python-calls-overhead.mjs [calls=2000000] [runs=3]
//        (root, gdb, bpftrace; build first: npx tsc -b)
//
// Workload: a Python loop calling a trivial function `calls` times, timing its own loop with
// time.perf_counter (interpreter start-up, attaching and tracer start-up are not in the figure).
// Per interpreter (Debian's /usr/bin/python3.11, pyenv 3.12 when present) it runs:
//   bare                     no tracer
//   profiler-f               `scalpels run -t python-calls --set python-calls.function=f` (counts f)
//   profiler-unmatched       same with a filter that matches nothing (the cost of the hook alone)
//   profiler-all             every call counted (no filter)
//   profiler-timing          function=f with timing=true (two clock reads and a histogram per call)
//   hook-only                the script sets a no-op sys.setprofile hook itself, no tracer
//   usdt-with-hook           USDT technique (bpftrace) while the script holds the no-op hook
//                            (Debian's 3.11 probes fire only under a hook; Debian python only)
// Each traced figure is a ratio to the median bare loop time of the same interpreter measured in
// this same run, with bare runs interleaved between the others.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'cli/dist/main.js');
const pluginDir = join(root, 'plugins/python-calls');
const calls = Number(process.argv[2] ?? 2_000_000);
const runs = Number(process.argv[3] ?? 3);
const work = mkdtempSync(join(tmpdir(), 'pycalls-bench-'));
const timeFile = join(work, 'ns');

const LOOP = `
import sys, time
def f():
    pass
n = int(sys.argv[1])
if sys.argv[3] == "hook":
    sys.setprofile(lambda *a: None)
t = time.perf_counter()
for _ in range(n):
    f()
dt = time.perf_counter() - t
sys.setprofile(None)
open(sys.argv[2], "w").write("%d" % (dt * 1e9))
`;
writeFileSync(join(work, 'loop.py'), LOOP);
const loopArgv = (python, hook = 'nohook') => [
  python,
  join(work, 'loop.py'),
  String(calls),
  timeFile,
  hook,
];
const loopMs = () => Number(readFileSync(timeFile, 'utf8')) / 1e6;

function run(argv) {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0], argv.slice(1), {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, XDG_DATA_HOME: work, NO_COLOR: '1' },
    });
    let err = '';
    p.stderr.on('data', (c) => (err += c));
    p.on('error', reject);
    p.on('exit', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`${argv.join(' ')}: exit ${code}: ${err.slice(-500)}`)),
    );
  });
}

const scalpels = (python, ...sets) =>
  run([
    process.execPath,
    cli,
    'run',
    '-t',
    'python-calls',
    ...sets.flatMap((s) => ['--set', `python-calls.${s}`]),
    '--store',
    `sqlite://${join(work, 'store.db')}`,
    '--',
    ...loopArgv(python),
  ]);

/** The USDT technique is not chosen here (its self-test fails on 3.11), so run its worker directly. */
async function usdt(python) {
  const { runWorker } = await import(
    join(root, 'bench/node_modules/@scalpels/core/dist/testing/index.js')
  );
  const { default: plugin } = await import(join(pluginDir, 'dist/index.js'));
  const go = join(work, 'go');
  rmSync(go, { force: true });
  const launcher = spawn(
    process.execPath,
    [
      '-e',
      `const fs = require('fs'); const cp = require('child_process');
const t = setInterval(() => { if (!fs.existsSync(${JSON.stringify(go)})) return; clearInterval(t);
  const c = cp.spawn(${JSON.stringify(python)}, ${JSON.stringify(loopArgv(python, 'hook').slice(1))}, { stdio: 'inherit' });
  c.on('close', (code) => process.exit(code ?? 1)); }, 5);`,
    ],
    { stdio: 'ignore' },
  );
  const closed = new Promise((r) => launcher.on('close', r));
  await runWorker(plugin, {
    pluginDir,
    technique: 'usdt',
    options: { function: 'f', python },
    target: { kind: 'run', pids: [launcher.pid], description: 'bench' },
    during: async () => {
      writeFileSync(go, '');
      await closed;
    },
  });
}

const pythons = [
  ['debian-3.11', '/usr/bin/python3.11'],
  ['pyenv-3.12', '/root/.pyenv/versions/3.12.1/bin/python3.12'],
].filter(([, p]) => existsSync(p));

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const result = {
  benchmark: 'python-calls-overhead',
  calls,
  load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  interpreters: {},
};
for (const [name, python] of pythons) {
  const variants = {
    'profiler-f': () => scalpels(python, 'function=f'),
    'profiler-unmatched': () => scalpels(python, 'function=no_such_function'),
    'profiler-all': () => scalpels(python),
    'profiler-timing': () => scalpels(python, 'function=f', 'timing=true'),
    'hook-only': () => run(loopArgv(python, 'hook')),
  };
  if (name.startsWith('debian')) variants['usdt-with-hook'] = () => usdt(python);
  const times = Object.fromEntries(['bare', ...Object.keys(variants)].map((k) => [k, []]));
  for (let i = 0; i < runs; i++) {
    for (const [v, fn] of Object.entries(variants)) {
      await run(loopArgv(python));
      times.bare.push(loopMs());
      try {
        await fn();
        times[v].push(loopMs());
      } catch (e) {
        console.error(`${name} ${v}: ${e.message}`);
      }
    }
  }
  const bare = median(times.bare);
  result.interpreters[name] = {
    python,
    bareMs: Number(bare.toFixed(1)),
    variants: Object.fromEntries(
      Object.entries(times)
        .filter(([k, v]) => k !== 'bare' && v.length > 0)
        .map(([k, v]) => [
          k,
          { ms: Number(median(v).toFixed(1)), slowdown: Number((median(v) / bare).toFixed(2)) },
        ]),
    ),
  };
}
console.log(JSON.stringify(result));
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(
  join(root, 'bench/results/python-calls-overhead.json'),
  JSON.stringify(result, null, 2) + '\n',
);
rmSync(work, { recursive: true, force: true });
