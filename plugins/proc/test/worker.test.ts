import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readStat } from '@scalpels/core/procfs';
import { capability, parseLines, runWorker, splitRecorded, waitFor } from '@scalpels/core/testing';
import { validateOptions } from '@scalpels/core';
import plugin from '../src/index.js';
import { pluginDir, samplerBuilt, samples, startBurnTree, sum, waitForLine } from './helpers.js';

const canRun = capability(
  'proc sampler built',
  samplerBuilt,
  'run `npx tsc -b plugins/proc` first',
);
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-proc-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe.runIf(canRun)('proc worker (real sampler on this machine)', () => {
  it('accounts the CPU of a target tree, exited children included, as the kernel does', async () => {
    const out = mkdtempSync(join(scratch, 'burn-'));
    const root = startBurnTree(out, 400);
    try {
      await waitForLine(root, 'waiting');
      const result = await runWorker(plugin, {
        pluginDir,
        options: { interval: '200ms', system: 'false' },
        target: { kind: 'pid', pids: [root.pid!], description: 'burn tree' },
        during: async () => {
          const done = waitForLine(root, 'done');
          root.stdin!.write('go\n');
          await done;
        },
      });
      expect(result.outcome.status).toBe('stopped');
      expect(result.outcome.parseErrors).toBe(0);
      const json = (f: string): Record<string, number> =>
        JSON.parse(readFileSync(join(out, f), 'utf8'));
      const r = json('root.json');
      // Ground truth from getrusage inside each process (microseconds), independent of /proc ticks.
      const truthMs =
        (r.atEnd! - r.atGo! + json('child.json').total! + json('grandchild.json').total!) / 1000;
      const mine = samples(result.records).filter((s) => s.labels?.pid === String(root.pid));
      const cpuMs = sum(
        mine.filter((s) => s.series === 'proc.cpu.user' || s.series === 'proc.cpu.system'),
      );
      console.log(`proc tree CPU: sampler ${cpuMs} ms, getrusage ${truthMs.toFixed(1)} ms`);
      expect(truthMs).toBeGreaterThan(900);
      expect(Math.abs(cpuMs - truthMs) / truthMs).toBeLessThan(0.1);
      expect(mine.every((s) => s.labels?.comm === 'node')).toBe(true);
      // The children were seen as members of the tree while they ran.
      expect(
        Math.max(...mine.filter((s) => s.series === 'proc.count').map((s) => s.value)),
      ).toBeGreaterThanOrEqual(2);
      expect(
        Math.max(...mine.filter((s) => s.series === 'proc.rss').map((s) => s.value)),
      ).toBeGreaterThan(10 << 20);
      // Starting three node processes faults in tens of megabytes of pages.
      expect(sum(mine.filter((s) => s.series === 'proc.faults.minor'))).toBeGreaterThan(1000);
      expect(samples(result.records, 'kernel.cpu.time')).toHaveLength(0);
    } finally {
      root.kill('SIGKILL');
    }
  });

  it('counts short-lived children it never sees, through their parent', async () => {
    const out = join(mkdtempSync(join(scratch, 'forks-')), 'times.txt');
    // 400 processes that each live a few milliseconds, far below the sampling interval; bash's
    // `times` then prints the CPU time of the shell and of the children it waited for.
    const script = `read go; for i in $(seq 400); do /bin/true; done; times > ${out}; sleep 30`;
    const root = spawn('bash', ['-c', script], { stdio: ['pipe', 'ignore', 'inherit'] });
    try {
      await new Promise((r) => root.once('spawn', r));
      await new Promise((r) => setTimeout(r, 100));
      const result = await runWorker(plugin, {
        pluginDir,
        options: { interval: '250ms', system: false },
        target: { kind: 'pid', pids: [root.pid!], description: 'fork loop' },
        during: async () => {
          root.stdin!.write('go\n');
          while (!existsSync(out) || readFileSync(out, 'utf8').split('\n').length < 3)
            await new Promise((r) => setTimeout(r, 50));
        },
      });
      expect(result.outcome.parseErrors).toBe(0);
      // `times`: "0m0.010s 0m0.020s" for the shell, then the same for its children.
      const truthMs = [...readFileSync(out, 'utf8').matchAll(/(\d+)m([\d.]+)s/g)]
        .map((m) => (Number(m[1]) * 60 + Number(m[2])) * 1000)
        .reduce((a, b) => a + b, 0);
      const cpuMs = sum(samples(result.records).filter((s) => s.series.startsWith('proc.cpu.')));
      console.log(`fork loop: tree ${cpuMs} ms, bash times ${truthMs.toFixed(0)} ms`);
      expect(truthMs).toBeGreaterThan(100);
      // /proc floors utime, stime, cutime and cstime to 10 ms ticks each: up to 40 ms below.
      expect(Math.abs(cpuMs - truthMs)).toBeLessThan(0.1 * truthMs + 40);
    } finally {
      root.kill('SIGKILL');
    }
  });

  it('traces a root given with its start time only while its pid is still that process', async () => {
    const kept = spawn('sleep', ['60'], { stdio: 'ignore' });
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      await waitFor('both sleeps', () =>
        [kept, other].every((c) => readStat(c.pid!)?.comm === 'sleep'),
      );
      const keptStart = readStat(kept.pid!)!.startTime;
      // `other` stands for a root whose pid went to a new process since the target was
      // resolved: the start time the target holds is not the current process's.
      const staleStart = readStat(other.pid!)!.startTime - 1;
      const result = await runWorker(plugin, {
        pluginDir,
        options: { interval: '100ms', system: false },
        target: {
          kind: 'pid',
          pids: [kept.pid!, other.pid!],
          roots: [
            { pid: kept.pid!, startTime: keptStart },
            { pid: other.pid!, startTime: staleStart },
          ],
          description: 'two sleeps',
        },
        during: async (live) => {
          await waitFor('a few samples', () => samples(live.records, 'proc.count').length >= 3);
        },
      });
      expect(result.outcome.parseErrors).toBe(0);
      const pids = new Set(samples(result.records, 'proc.count').map((s) => s.labels?.pid));
      expect([...pids]).toEqual([String(kept.pid)]);
      expect(result.outcome.stderrTail).toContain(`target pid ${other.pid} does not exist`);
    } finally {
      kept.kill('SIGKILL');
      other.kill('SIGKILL');
    }
  });

  it('follows a daemon re-parented to init out of the tree', async () => {
    const out = join(mkdtempSync(join(scratch, 'daemon-')), 'daemon.json');
    const burn =
      'const t = Date.now(); while (Date.now() - t < 100); const b = process.cpuUsage(); let x = 0;' +
      'while (process.cpuUsage(b).user + process.cpuUsage(b).system < 800e3) x += Math.sqrt(x + 1);' +
      `require('fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify(process.cpuUsage()));`;
    // The subshell starts the burner in the background and exits 500 ms (5 samples) later: the
    // burner is then re-parented to init (or a subreaper), out of the root's descendants.
    const script = `sleep 0.2; (${process.execPath} -e "$BURN" & sleep 0.5); sleep 30`;
    const root = spawn('bash', ['-c', script], {
      stdio: 'ignore',
      env: { ...process.env, BURN: burn },
    });
    try {
      await new Promise((r) => root.once('spawn', r));
      const result = await runWorker(plugin, {
        pluginDir,
        options: { interval: '100ms', system: false },
        target: { kind: 'pid', pids: [root.pid!], description: 'daemonizing shell' },
        during: async () => {
          while (!existsSync(out)) await new Promise((r) => setTimeout(r, 50));
          await new Promise((r) => setTimeout(r, 250));
        },
      });
      expect(result.outcome.parseErrors).toBe(0);
      const usage = JSON.parse(readFileSync(out, 'utf8')) as { user: number; system: number };
      const daemonMs = (usage.user + usage.system) / 1000;
      const cpuMs = sum(samples(result.records).filter((s) => s.series.startsWith('proc.cpu.')));
      console.log(`daemon CPU ${daemonMs.toFixed(1)} ms, tree CPU ${cpuMs} ms`);
      // All of it but what it did after the last sample before it exited (at most an interval).
      expect(cpuMs).toBeGreaterThan(daemonMs - 150);
      expect(cpuMs).toBeLessThan(daemonMs + 150);
    } finally {
      root.kill('SIGKILL');
    }
  });

  it('splits nested roots (a parent and its child both given) without counting the child twice', async () => {
    const out = mkdtempSync(join(scratch, 'nested-'));
    // The outer root waits for "go", then its child (the inner root, started and idle before the
    // sampler starts) burns 300 ms and exits; the outer root reaps it. The inner's reference CPU
    // runs from when it says it is ready (before the sampler starts) to its end: what the sampler
    // can see of it, whatever its start-up cost on a busy machine.
    const inner =
      'const ready = process.cpuUsage();' +
      "process.stdin.once('data', () => {" +
      ' const b = process.cpuUsage(); let x = 0;' +
      ' while (process.cpuUsage(b).user + process.cpuUsage(b).system < 300e3) x += Math.sqrt(x + 1);' +
      ` require('fs').writeFileSync(${JSON.stringify(join(out, 'inner.json'))}, JSON.stringify({ b: ready, e: process.cpuUsage() }));` +
      ' process.exit(0);' +
      '});' +
      "console.log('inner ready');";
    const outer =
      `const c = require('child_process').spawn(process.execPath, ['-e', ${JSON.stringify(inner)}], { stdio: ['pipe', 'inherit', 'inherit'] });` +
      `console.log('child ' + c.pid);` +
      `process.stdin.once('data', () => c.stdin.write('go'));` +
      `c.on('exit', () => console.log('done'));`;
    const root = spawn(process.execPath, ['-e', outer], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const innerReady = waitForLine(root, 'inner ready');
      const childPid = await new Promise<number>((resolve) => {
        let seen = '';
        const onData = (d: Buffer): void => {
          seen += d.toString();
          const m = /child (\d+)/.exec(seen);
          if (m) {
            root.stdout!.off('data', onData);
            resolve(Number(m[1]));
          }
        };
        root.stdout!.on('data', onData);
      });
      await innerReady;
      const result = await runWorker(plugin, {
        pluginDir,
        options: { interval: '100ms', system: false },
        target: { kind: 'service', pids: [root.pid!, childPid], description: 'outer + inner' },
        during: async () => {
          const done = waitForLine(root, 'done');
          root.stdin!.write('go\n');
          await done;
        },
      });
      expect(result.outcome.parseErrors).toBe(0);
      const cpuOf = (pid: number): number =>
        sum(
          samples(result.records).filter(
            (s) => s.labels?.pid === String(pid) && s.series.startsWith('proc.cpu.'),
          ),
        );
      const usage = JSON.parse(readFileSync(join(out, 'inner.json'), 'utf8')) as Record<
        'b' | 'e',
        NodeJS.CpuUsage
      >;
      const innerMs = (usage.e.user + usage.e.system - usage.b.user - usage.b.system) / 1000;
      console.log(
        `nested roots: inner ${cpuOf(childPid)} ms (${innerMs.toFixed(1)} since ready, 300 of it burned), outer ${cpuOf(root.pid!)} ms`,
      );
      expect(Math.abs(cpuOf(childPid) - innerMs)).toBeLessThan(0.1 * innerMs + 20);
      // The outer root only forwarded a line: a double count would add the inner's 300 ms.
      expect(cpuOf(root.pid!)).toBeLessThan(100);
    } finally {
      root.kill('SIGKILL');
    }
  });

  it('keeps running when the target root exits mid-run', async () => {
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    const exited = new Promise((resolve) => sleeper.once('exit', resolve));
    const result = await runWorker(plugin, {
      pluginDir,
      options: { interval: '100ms', system: false },
      target: { kind: 'pid', pids: [sleeper.pid!], description: 'sleep' },
      during: async () => {
        await new Promise((r) => setTimeout(r, 300));
        sleeper.kill('SIGKILL');
        await exited;
        await new Promise((r) => setTimeout(r, 300));
      },
    });
    expect(result.outcome.status).toBe('stopped');
    expect(result.outcome.exitCode).toBe(0);
    expect(result.outcome.parseErrors).toBe(0);
    const counts = samples(result.records, 'proc.count').map((s) => s.value);
    expect(counts[0]).toBe(1);
    expect(counts.at(-1)).toBe(0);
    expect(samples(result.records, 'proc.cpu.user').every((s) => s.value >= 0)).toBe(true);
  });

  it('carries a comm with tabs, spaces and parentheses through the line format', async () => {
    const name = 'a\tb) (c d';
    const exe = join(scratch, name);
    copyFileSync('/bin/sleep', exe);
    chmodSync(exe, 0o755);
    const proc = spawn(exe, ['30'], { stdio: 'ignore' });
    try {
      await new Promise((r) => proc.once('spawn', r));
      const result = await runWorker(plugin, {
        pluginDir,
        options: { interval: '100ms', system: false },
        target: { kind: 'pid', pids: [proc.pid!], description: 'odd name' },
        durationMs: 350,
      });
      expect(result.outcome.parseErrors).toBe(0);
      const comms = new Set(samples(result.records).map((s) => s.labels?.comm));
      expect([...comms]).toEqual([name]);
    } finally {
      proc.kill('SIGKILL');
    }
  });

  it('samples system-wide series that agree with /proc', async () => {
    const result = await runWorker(plugin, {
      pluginDir,
      options: { interval: '200ms' },
      durationMs: 1100,
    });
    expect(result.outcome.status).toBe('stopped');
    expect(result.outcome.parseErrors).toBe(0);
    const cpu = samples(result.records, 'kernel.cpu.time');
    expect(new Set(cpu.map((s) => s.labels?.mode))).toEqual(
      new Set(['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal']),
    );
    // Every CPU is in some mode all the time: the modes add up to (CPUs x elapsed time).
    const times = [...new Set(cpu.map((s) => s.ts!))].sort((a, b) => a - b);
    expect(times.length).toBeGreaterThanOrEqual(4);
    const afterFirst = sum(cpu.filter((s) => s.ts! > times[0]!));
    const expected = (times.at(-1)! - times[0]!) * cpus().length;
    expect(Math.abs(afterFirst - expected) / expected).toBeLessThan(0.1);

    const memTotal =
      Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))![1]) * 1024;
    expect(samples(result.records, 'mem.total').every((s) => s.value === memTotal)).toBe(true);
    expect(samples(result.records, 'kernel.load')).not.toHaveLength(0);
    const interfaces = new Set(
      samples(result.records, 'network.rx.bytes').map((s) => s.labels?.interface),
    );
    expect(interfaces.has('lo')).toBe(true);
    const devices = new Set(samples(result.records, 'disk.read.ops').map((s) => s.labels?.device));
    expect([...devices].some((d) => /^(loop|ram)\d/.test(d ?? ''))).toBe(false);
    expect(samples(result.records).some((s) => s.series.startsWith('proc.'))).toBe(false);
  });

  it('skips samples while its reader stalls, and its counters then cover the gap', async () => {
    const sampler = spawn(
      process.execPath,
      [join(pluginDir, 'dist', 'worker-main.js'), '--interval-ms', '10'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    sampler.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const chunks: Buffer[] = [];
    sampler.stdout!.on('data', (d: Buffer) => chunks.push(d));
    sampler.stdout!.pause();
    // Stalled until the sampler says it skips (its pipe and buffer full: how long that takes
    // depends on the machine's load), then for a stall of 2 s more.
    await waitFor('the sampler to skip samples', () => /skipping samples/.test(stderr));
    await new Promise((r) => setTimeout(r, 2000));
    sampler.stdout!.resume();
    // 'close': the exit code once every byte of stdout has been read.
    const closed = new Promise((r) => sampler.once('close', r));
    sampler.kill('SIGTERM');
    expect(await closed).toBe(0);
    expect(stderr).toMatch(/skipping samples/);
    const out = parseLines(plugin, splitRecorded(Buffer.concat(chunks).toString('utf8')));
    expect(out.diagnostics).toEqual([]);
    const cpu = samples(out.records, 'kernel.cpu.time');
    const byTs = new Map<number, number>();
    for (const s of cpu) byTs.set(s.ts!, (byTs.get(s.ts!) ?? 0) + s.value);
    const times = [...byTs.keys()].sort((a, b) => a - b);
    // The longest gap between two samples is the stall; the sample after it covers all of it.
    const gaps = times.slice(1).map((t, i) => ({ t, gap: t - times[i]! }));
    const stall = gaps.reduce((a, b) => (b.gap > a.gap ? b : a));
    expect(stall.gap).toBeGreaterThan(500);
    const expected = stall.gap * cpus().length;
    expect(Math.abs(byTs.get(stall.t)! - expected) / expected).toBeLessThan(0.1);
  });

  it('applies the devices and interfaces filters', async () => {
    const result = await runWorker(plugin, {
      pluginDir,
      options: { interval: '100ms', interfaces: 'lo', devices: 'loop0' },
      durationMs: 300,
    });
    const interfaces = new Set(
      samples(result.records, 'network.tx.bytes').map((s) => s.labels?.interface),
    );
    expect([...interfaces]).toEqual(['lo']);
    const devices = new Set(samples(result.records, 'disk.write.ops').map((s) => s.labels?.device));
    expect([...devices]).toEqual(
      readFileSync('/proc/diskstats', 'utf8').includes(' loop0 ') ? ['loop0'] : [],
    );
  });
});

describe('proc manifest', () => {
  it('refuses system=false without a target', () => {
    expect(() =>
      plugin.worker(validateOptions(plugin, { interval: 1000, system: false }), {
        target: { kind: 'none', pids: [], description: 'system-wide' },
        taskId: 't',
        tracerId: 1,
        runtimeDir: scratch,
        pluginDir,
      }),
    ).toThrow(/needs a target/);
  });

  it.runIf(canRun)('check() answers ok here, quick and full', async () => {
    const { execFileSync } = await import('node:child_process');
    const ctx = {
      options: validateOptions(plugin, {}),
      isRoot: process.getuid?.() === 0,
      which: async () => undefined,
      exec: async (argv: readonly string[]) => {
        try {
          const stdout = execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
          return { exitCode: 0, stdout, stderr: '' };
        } catch (e) {
          const err = e as { status?: number; stdout?: string; stderr?: string };
          return { exitCode: err.status ?? 1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
        }
      },
    };
    let spawned = 0;
    const quick = await plugin.check({
      ...ctx,
      depth: 'quick',
      exec: async () => (spawned++, ctx.exec([])),
    });
    expect(quick.status).toBe('ok');
    expect(spawned).toBe(0);
    const full = await plugin.check({ ...ctx, depth: 'full' });
    expect(full).toMatchObject({ status: 'ok' });
    expect(full.detail).toMatch(/sampler works/);
  });
});
