// Benchmark of the syscalls plugin (not a test: prints figures, asserts nothing).
//
//   node bench/syscalls-overhead.mjs [calls=2000000] [rounds=5] [slowCalls=100000]
//   (root; build first: npx tsc -b plugins/syscalls cli)
//
// A C loop makes `calls` getppid() system calls and reports the wall time of the loop alone
// (startup of the tools excluded). It runs, interleaved over `rounds`:
//   bare           the loop alone
//   bpftrace       the classic one-liner, bare bpftrace aggregation on the same tracepoint family:
//                  tracepoint:raw_syscalls:sys_enter /pid == PID/ { @[args->id] = count(); }
//   bpftrace exit  bare bpftrace aggregation of the same data as Scalpels (counts and errors,
//                  counted on return): sys_exit /pid == PID/ { @calls[id] = count(); @errors... }
//   scalpels       scalpels run -t syscalls -- LOOP   (the whole tool: CLI, core, store, parser)
//   perf trace -s  perf trace -s -- LOOP
//   strace -c -f   strace -c -f -- LOOP
// perf and strace stop the loop at every call, so they run `slowCalls` calls; every figure is a
// cost per call, and each slowdown is a ratio to the bare loop's cost per call in the same run.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'cli', 'dist', 'main.js');
const calls = Number(process.argv[2] ?? 2_000_000);
const rounds = Number(process.argv[3] ?? 5);
const slowCalls = Number(process.argv[4] ?? 100_000);

const LOOP_C = `
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  long n = atol(argv[1]);
  char go;
  if (read(0, &go, 1) < 0) return 2; /* wait until the tracer is attached */
  struct timespec a, b, c, d;
  clock_gettime(CLOCK_MONOTONIC, &a);
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c);
  for (long i = 0; i < n; i++) syscall(SYS_getppid);
  clock_gettime(CLOCK_MONOTONIC, &b);
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &d);
  fprintf(stderr, "loop-ns %.0f cpu-ns %.0f\\n", (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec),
          (d.tv_sec - c.tv_sec) * 1e9 + (d.tv_nsec - c.tv_nsec));
  return 0;
}
`;

const dir = mkdtempSync(join(tmpdir(), 'scalpels-bench-syscalls-'));
const loop = join(dir, 'sysloop');
writeFileSync(`${loop}.c`, LOOP_C);
execFileSync('cc', ['-O2', '-o', loop, `${loop}.c`]);

/** Runs argv (the loop at its end); resolves with the loop's wall and CPU ns per call. */
function timed(argv, n, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'ignore', 'pipe'], ...opts });
    let err = '';
    child.stderr.on('data', (c) => (err += c));
    child.stdin.end('x');
    child.once('exit', (code) => {
      const m = /loop-ns (\d+) cpu-ns (\d+)/.exec(err);
      if (!m) return reject(new Error(`${argv.join(' ')}: exit ${code}: ${err.slice(-500)}`));
      resolve({ wall: Number(m[1]) / n, cpu: Number(m[2]) / n });
    });
  });
}

async function bare() {
  return timed([loop, String(calls)], calls);
}

/** The loop waits on stdin while bpftrace attaches, filtered on its pid. */
/** Bare bpftrace aggregation: `probe` is the one-liner's probe and body, filtered on the loop's pid. */
async function bareBpftrace(probe) {
  const child = spawn(loop, [String(calls)], { stdio: ['pipe', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (c) => (err += c));
  const exited = new Promise((r) => child.once('exit', r));
  const prog = `${probe(child.pid)} BEGIN { printf("ready\\n"); }`;
  const bt = spawn('bpftrace', ['-e', prog], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  await new Promise((resolve, reject) => {
    bt.stdout.on('data', (c) => {
      out += c;
      if (out.includes('ready')) resolve();
    });
    bt.once('exit', (code) => reject(new Error(`bpftrace exited ${code}`)));
  });
  child.stdin.end('x');
  await exited;
  const btExit = new Promise((r) => bt.once('exit', r));
  // bpftrace 0.17 acts on a SIGINT that misses its epoll_wait only at its next event, and this
  // one-liner has none: repeat the signal until it leaves.
  const again = setInterval(() => bt.kill('SIGINT'), 300);
  bt.kill('SIGINT');
  await btExit;
  clearInterval(again);
  const counted = /^@(?:calls)?\[110\]: (\d+)/m.exec(out)?.[1];
  if (Number(counted) !== calls)
    throw new Error(`bpftrace counted ${counted} getppid, expected ${calls}`);
  const m = /loop-ns (\d+) cpu-ns (\d+)/.exec(err);
  return { wall: Number(m[1]) / calls, cpu: Number(m[2]) / calls };
}

async function scalpels() {
  const store = `sqlite://${join(dir, 'bench.db')}`;
  return timed(
    [
      process.execPath,
      cli,
      'run',
      '-t',
      'syscalls',
      '--store',
      store,
      '--format',
      'none',
      '--',
      loop,
      String(calls),
    ],
    calls,
  );
}

async function perfTrace() {
  return timed(
    ['perf', 'trace', '-s', '-o', '/dev/null', '--', loop, String(slowCalls)],
    slowCalls,
  );
}

async function straceC() {
  return timed(['strace', '-c', '-f', '-o', '/dev/null', '--', loop, String(slowCalls)], slowCalls);
}

const variants = {
  bare,
  // The classic syscount one-liner.
  bpftrace: () =>
    bareBpftrace(
      (pid) => `tracepoint:raw_syscalls:sys_enter /pid == ${pid}/ { @[args->id] = count(); }`,
    ),
  // The same data as Scalpels (counts and errors, on return): the equivalent bare aggregation.
  'bpftrace exit': () =>
    bareBpftrace(
      (pid) =>
        `tracepoint:raw_syscalls:sys_exit /pid == ${pid}/ { @calls[args->id] = count(); if (args->ret < 0) { @errors[args->id, -args->ret] = count(); } }`,
    ),
  scalpels,
  'perf trace -s': perfTrace,
  'strace -c -f': straceC,
};
const results = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
for (let r = 0; r < rounds; r++) {
  for (const [name, fn] of Object.entries(variants)) results[name].push(await fn());
  process.stderr.write(`round ${r + 1}/${rounds} done\n`);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const min = (xs) => Math.min(...xs);
// Noise from other processes only ever adds time: the minimum is the primary figure, the median
// shows how much the machine disturbed the runs. Wall time is the slowdown the workload sees;
// the loop's own CPU time isolates the in-kernel cost (it leaves out time spent stopped, so it
// understates strace and perf, whose tracer does its work while the loop waits).
const summary = (metric, pick) => {
  const perCall = Object.fromEntries(
    Object.entries(results).map(([k, v]) => [k, pick(v.map((x) => x[metric]))]),
  );
  const slowdown = Object.fromEntries(
    Object.entries(perCall).map(([k, v]) => [k, v / perCall.bare]),
  );
  const overhead = (k) => perCall[k] - perCall.bare;
  return { perCall, slowdown, overhead };
};
console.log(
  `getppid loop: ${calls} calls (perf and strace: ${slowCalls}), ${rounds} interleaved rounds`,
);
console.log(
  'variant          wall ns/call  slowdown (min | median)   loop CPU ns/call  slowdown (min)',
);
const wallMin = summary('wall', min);
const wallMed = summary('wall', median);
const cpuMin = summary('cpu', min);
for (const k of Object.keys(variants))
  console.log(
    `${k.padEnd(15)} ${wallMin.perCall[k].toFixed(1).padStart(12)}  ${wallMin.slowdown[k].toFixed(2).padStart(7)}x | ${wallMed.slowdown[k].toFixed(2).padStart(7)}x   ${cpuMin.perCall[k].toFixed(1).padStart(16)}  ${cpuMin.slowdown[k].toFixed(2).padStart(7)}x`,
  );
for (const [label, x] of [
  ['wall, min', wallMin],
  ['wall, median', wallMed],
  ['loop CPU, min', cpuMin],
]) {
  console.log(
    `[${label}] scalpels slowdown / bare bpftrace slowdown: ${(x.slowdown.scalpels / x.slowdown.bpftrace).toFixed(3)} (one-liner), ${(x.slowdown.scalpels / x.slowdown['bpftrace exit']).toFixed(3)} (same data; target <= 1.10); overhead per call, strace / scalpels: ${(x.overhead('strace -c -f') / x.overhead('scalpels')).toFixed(1)}x, perf / scalpels: ${(x.overhead('perf trace -s') / x.overhead('scalpels')).toFixed(1)}x`,
  );
}
rmSync(dir, { recursive: true, force: true });
