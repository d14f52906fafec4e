// Benchmark of the fs-io plugin (not a test: prints figures, asserts nothing).
//
//   node bench/fs-io-overhead.mjs [iterations=250000] [runs=3]
//        (root, bpftrace, strace, perf, cc; build first: npx tsc -b)
//
// Workload: a C loop making `iterations` pwrite(64 B) + pread(64 B) pairs on one file (2 system
// calls per iteration), timing its own loop with CLOCK_MONOTONIC (process start-up and tracer
// start-up are not in the figure). It runs:
//   bare                    no tracer
//   scalpels                `scalpels run -t fs-io` (per-file aggregation in the kernel)
//   scalpels-latency        same with fs-io.latency=true (two timestamps and a histogram per call)
//   bpftrace-minimal        bare bpftrace counting calls and bytes per pid: the floor of the approach
//   strace                  `strace -c -f`
//   perf-trace              `perf trace -s`
// Each traced figure is a ratio to the median bare loop time measured in this same run, with
// bare runs interleaved between the others.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'cli/dist/main.js');
const iterations = Number(process.argv[2] ?? 250_000);
const runs = Number(process.argv[3] ?? 3);
const work = mkdtempSync(join(tmpdir(), 'fsio-bench-'));

const C = `
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  long n = atol(argv[1]);
  int fd = open(argv[2], O_CREAT | O_RDWR | O_TRUNC, 0644);
  char buf[64] = {0};
  struct timespec a, b, ca, cb;
  clock_gettime(CLOCK_MONOTONIC, &a);
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ca);
  for (long i = 0; i < n; i++) {
    if (pwrite(fd, buf, sizeof buf, 0) != sizeof buf) return 1;
    if (pread(fd, buf, sizeof buf, 0) != sizeof buf) return 1;
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cb);
  FILE *out = fopen(argv[3], "w");
  fprintf(out, "%.0f %.0f\\n", (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec),
          (cb.tv_sec - ca.tv_sec) * 1e9 + (cb.tv_nsec - ca.tv_nsec));
  fclose(out);
  return 0;
}
`;
writeFileSync(join(work, 'loop.c'), C);
const loop = join(work, 'fsio-loop');
execFileSync('cc', ['-O2', '-o', loop, join(work, 'loop.c')]);
const data = join(work, 'data');
const timeFile = join(work, 'ns');
const loopArgv = [loop, String(iterations), data, timeFile];
/** Wall and CPU time of the loop (the CPU time includes BPF programs run in its system calls). */
const loopMs = () =>
  readFileSync(timeFile, 'utf8')
    .trim()
    .split(' ')
    .map((ns) => Number(ns) / 1e6);

function run(argv, env = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0], argv.slice(1), {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...env },
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

const MINIMAL_BT = `
BEGIN { @self = pid; }
tracepoint:syscalls:sys_exit_pwrite64 /comm == "fsio-loop"/ { @w[pid] = count(); @wb[pid] = sum(args->ret); }
tracepoint:syscalls:sys_exit_pread64 /comm == "fsio-loop"/ { @r[pid] = count(); @rb[pid] = sum(args->ret); }
tracepoint:syscalls:sys_enter_epoll_wait, tracepoint:syscalls:sys_enter_epoll_pwait /pid == @self && @ready == 0/ { @ready = 1; printf("@@ready\\n"); }
END { clear(@self); clear(@ready); }
`;

async function underBpftrace() {
  const bt = spawn('bpftrace', ['-B', 'line', '-e', MINIMAL_BT], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  await new Promise((resolve) =>
    bt.stdout.on('data', (c) => String(c).includes('@@ready') && resolve()),
  );
  await run(loopArgv);
  const exited = new Promise((r) => bt.once('exit', r));
  bt.kill('SIGINT');
  await exited;
}

const variants = {
  bare: () => run(loopArgv),
  scalpels: () =>
    run(
      [
        process.execPath,
        cli,
        'run',
        '-t',
        'fs-io',
        '--store',
        `sqlite://${join(work, 'store.db')}`,
        '--',
        ...loopArgv,
      ],
      {
        XDG_DATA_HOME: work,
        NO_COLOR: '1',
      },
    ),
  'scalpels-latency': () =>
    run(
      [
        process.execPath,
        cli,
        'run',
        '-t',
        'fs-io',
        '--set',
        'fs-io.latency=true',
        '--store',
        `sqlite://${join(work, 'store.db')}`,
        '--',
        ...loopArgv,
      ],
      { XDG_DATA_HOME: work, NO_COLOR: '1' },
    ),
  'bpftrace-minimal': underBpftrace,
  strace: () => run(['strace', '-c', '-f', '-o', join(work, 'strace.out'), ...loopArgv]),
  'perf-trace': () => run(['perf', 'trace', '-s', '-o', join(work, 'perf.out'), ...loopArgv]),
};

const times = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (let i = 0; i < runs; i++) {
  for (const name of Object.keys(variants)) {
    if (name === 'bare') continue;
    // The slow ones once: they are 20-200x and their spread does not matter for the ratio.
    if ((name === 'strace' || name === 'perf-trace') && i > 0) continue;
    await variants.bare();
    times.bare.push(loopMs());
    try {
      await variants[name]();
      times[name].push(loopMs());
    } catch (e) {
      console.error(`${name}: ${e.message}`);
    }
  }
}
const pick = (xs, i) => xs.map((x) => x[i]);
const bareWall = median(pick(times.bare, 0));
const bareCpu = median(pick(times.bare, 1));
const result = {
  benchmark: 'fs-io-overhead',
  iterations,
  syscalls: 2 * iterations,
  load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  bare: { wallMs: Number(bareWall.toFixed(1)), cpuMs: Number(bareCpu.toFixed(1)) },
  // slowdown: wall-time ratio (what a workload feels, strace's stops included); cpuSlowdown:
  // ratio of the loop's own CPU time, which holds the BPF programs run in its system calls and
  // is less disturbed by other load on the machine.
  variants: Object.fromEntries(
    Object.entries(times)
      .filter(([k, v]) => k !== 'bare' && v.length > 0)
      .map(([k, v]) => {
        const wall = median(pick(v, 0));
        const cpu = median(pick(v, 1));
        return [
          k,
          {
            wallMs: Number(wall.toFixed(1)),
            slowdown: Number((wall / bareWall).toFixed(2)),
            cpuMs: Number(cpu.toFixed(1)),
            cpuSlowdown: Number((cpu / bareCpu).toFixed(2)),
          },
        ];
      }),
  ),
};
const s = result.variants;
if (s.scalpels && s['bpftrace-minimal'])
  result.scalpelsOverheadVsBpftraceMinimal = Number(
    (
      (s.scalpels.wallMs - bareWall) /
      Math.max(1e-9, s['bpftrace-minimal'].wallMs - bareWall)
    ).toFixed(2),
  );
if (s.scalpels && s.strace)
  result.straceOverheadOverScalpels = Number(
    ((s.strace.wallMs - bareWall) / Math.max(1e-9, s.scalpels.wallMs - bareWall)).toFixed(1),
  );
console.log(JSON.stringify(result));
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(
  join(root, 'bench/results/fs-io-overhead.json'),
  JSON.stringify(result, null, 2) + '\n',
);
rmSync(work, { recursive: true, force: true });
