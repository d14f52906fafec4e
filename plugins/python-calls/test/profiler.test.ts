import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  openSync,
  writeSync,
  existsSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
  readlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { capability, runWorker, type RunWorkerResult } from '@scalpels/core/testing';
import type { Target } from '@scalpels/core';
import plugin from '../src/index.js';
import {
  Child,
  events,
  fixture,
  hasBinary,
  interpreters,
  isRoot,
  pluginDir,
  procState,
  sums,
} from './helpers.js';

const can = capability(
  'root, gdb and bpftrace',
  isRoot && hasBinary('gdb') && hasBinary('bpftrace'),
  'the profiler technique attaches with gdb (ptrace) and catches new interpreters with bpftrace, as root',
);
const pythons = interpreters();
const debianPython = pythons.find((p) => p.name === 'debian-python3');
const hasEventlet = capability(
  'python3-eventlet',
  debianPython !== undefined &&
    spawnSync(debianPython.path, ['-c', 'import eventlet'], { stdio: 'ignore' }).status === 0,
  'eventlet programs (OpenStack services) are tested with Debian python3 and python3-eventlet',
);
// setprofile (3.11) and sys.monitoring (3.12+) measure time differently: both are checked.
const timingPythons = pythons.filter((p) =>
  ['debian-python3', 'pyenv-3.11', 'pyenv-3.12', 'pyenv-3.13'].includes(p.name),
);
const embedConfig = capability(
  'cc and pyenv python3.11-config',
  hasBinary('cc') && existsSync('/root/.pyenv/versions/3.11.7/bin/python3.11-config'),
  'the embedding test builds a small C host against libpython3.11',
)
  ? '/root/.pyenv/versions/3.11.7/bin/python3.11-config'
  : undefined;
const mainPython = pythons.find((p) => p.name === 'pyenv-3.11') ?? debianPython;

/** `scalpels run`-like: a launcher (the target's root) starts the command once the tracer is ready. */
async function traceRun(
  argv: readonly string[],
  options: Record<string, unknown>,
): Promise<{ res: RunWorkerResult; out: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'pycalls-run-'));
  const go = join(dir, 'go');
  const script = `
const fs = require('fs'); const cp = require('child_process');
const t = setInterval(() => { if (!fs.existsSync(${JSON.stringify(go)})) return; clearInterval(t);
  const c = cp.spawn(${JSON.stringify(argv[0])}, ${JSON.stringify(argv.slice(1))}, { stdio: 'inherit' });
  c.on('close', (code) => process.exit(code ?? 1)); }, 5);`;
  const launcher = new Child([process.execPath, '-e', script]);
  try {
    const target: Target = {
      kind: 'run',
      pids: [launcher.pid],
      command: argv,
      description: `run: ${argv.join(' ')}`,
    };
    const res = await runWorker(plugin, {
      pluginDir,
      options,
      target,
      technique: 'profiler',
      during: async () => {
        writeFileSync(go, '');
        await launcher.closed;
      },
    });
    return { res, out: launcher.out };
  } finally {
    launcher.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Attach to a running process, run `during`, stop. */
function traceAttach(
  pid: number,
  options: Record<string, unknown>,
  during: () => Promise<unknown>,
): Promise<RunWorkerResult> {
  return runWorker(plugin, {
    pluginDir,
    options,
    target: { kind: 'pid', pids: [pid], description: `pid ${pid}` },
    technique: 'profiler',
    during,
  });
}

/** The executable a process runs now ('' when it is gone). */
function exeOf(pid: number): string {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return '';
  }
}

describe.runIf(can)('profiler technique', () => {
  describe.each(pythons)('$name', ({ path }) => {
    it('counts every call of f and g of a command it starts (scalpels run)', async () => {
      const { res, out } = await traceRun([path, fixture('calls.py'), '10000', '7000'], {
        function: 'f,g',
      });
      expect(res.outcome.status).toBe('stopped');
      expect(res.outcome.parseErrors).toBe(0);
      expect(JSON.parse(out.trim())).toEqual({ f: 10000, g: 7000 });
      expect(sums(res.records, 'python.calls')).toEqual({
        '__main__:f': 10000,
        '__main__:g': 7000,
      });
      expect(events(res.records, 'attach').map((e) => e.kind === 'event' && e.key)).toEqual([
        'attach:start',
      ]);
      expect(events(res.records, 'technique').map((e) => e.kind === 'event' && e.key)).toEqual([
        'technique:instrument',
      ]);
    });

    it('attaches to a running interpreter, counts the calls made after, and leaves no hook', async () => {
      const hold = join(mkdtempSync(join(tmpdir(), 'pycalls-hold-')), 'release');
      const child = new Child([
        path,
        fixture('calls.py'),
        '10000',
        '12000',
        '--wait-hook',
        '--hold',
        hold,
      ]);
      try {
        // Past its record of f's and g's own code (see the kinds test).
        await child.waitFor('waiting for a profiler', 200_000);
        const res = await traceAttach(child.pid, { function: 'f,g' }, () =>
          child.waitFor('holding'),
        );
        writeFileSync(hold, '');
        expect(await child.closed).toBe(0);
        const result = child.result();
        expect(result).toMatchObject({
          f: 10000,
          g: 12000,
          hookAfterStop: false,
          agentModuleLeft: false,
          osExitWrapped: false,
          functionsRestored: true,
        });
        expect(result.threads).toEqual(['MainThread']);
        expect(res.outcome.status).toBe('stopped');
        expect(sums(res.records, 'python.calls')).toEqual({
          '__main__:f': 10000,
          '__main__:g': 12000,
        });
        // The script waits in time.sleep: the bootstrap runs at once on its main thread (direct),
        // or, caught between two sleeps, at its next safe point (pending-call).
        const keys = events(res.records, 'attach').map((e) => e.kind === 'event' && e.key);
        expect(keys).toHaveLength(1);
        expect(['attach:direct', 'attach:pending-call']).toContain(keys[0]);
        expect(events(res.records, 'detach').map((e) => e.kind === 'event' && e.key)).toEqual([
          'detach:stop',
        ]);
      } finally {
        child.kill();
      }
    });
    it('counts generators, coroutines, closures, methods and every parameter kind exactly, which behave as written', async () => {
      const hold = join(mkdtempSync(join(tmpdir(), 'pycalls-hold-')), 'release');
      const child = new Child([path, fixture('kinds.py'), '500', '--hold', hold]);
      try {
        // Past its imports and its record of each function's own code: attached earlier, the
        // fixture would take the counting trampolines for the functions' code.
        await child.waitFor('waiting for a profiler', 200_000);
        const res = await traceAttach(
          child.pid,
          { function: 'gen_fn,coro_fn,agen_fn,closure_fn,kw_fn,method_fn' },
          () => child.waitFor('holding', 200_000),
        );
        writeFileSync(hold, '');
        expect(await child.closed).toBe(0);
        const result = child.result();
        expect(result).toMatchObject({ ok: true, notRestored: [] });
        expect(res.outcome.status).toBe('stopped');
        // A generator or coroutine counts once, when it first runs. An async generator has no
        // trampoline: counted through sys.monitoring (3.12+), else skipped.
        expect(sums(res.records, 'python.calls')).toEqual({
          '__main__:gen_fn': 500,
          '__main__:coro_fn': 500,
          ...(result.monitoring ? { '__main__:agen_fn': 500 } : {}),
          '__main__:make_closure.<locals>.closure_fn': 500,
          '__main__:kw_fn': 500,
          '__main__:Box.method_fn': 500,
        });
      } finally {
        child.kill();
      }
    }, 240_000);
  });

  describe.runIf(mainPython)(`details (${mainPython?.path})`, () => {
    const py = mainPython!.path;

    it.each(timingPythons)(
      '$name: measures inclusive time and counts exceptions',
      async ({ path }) => {
        const { res } = await traceRun([path, fixture('work.py'), 'timing'], {
          function: 'slow,fails,f',
          timing: true,
          exceptions: true,
        });
        expect(sums(res.records, 'python.calls')).toEqual({
          '__main__:slow': 5,
          '__main__:fails': 7,
          '__main__:f': 100,
        });
        expect(sums(res.records, 'python.exceptions')).toEqual({ '__main__:fails': 7 });
        const time = sums(res.records, 'python.call.time');
        // 5 calls of time.sleep(0.02): at least 100 ms in total.
        expect(time['__main__:slow']).toBeGreaterThanOrEqual(100);
        const slow = res.records.filter(
          (r) =>
            r.kind === 'sample' &&
            r.series === 'python.call.duration' &&
            r.labels?.function === '__main__:slow',
        );
        const bucket = (le: string): number =>
          slow
            .filter((r) => r.kind === 'sample' && r.labels?.le === le)
            .reduce((a, r) => a + (r.kind === 'sample' ? r.value : 0), 0);
        expect(bucket('10')).toBe(0);
        expect(bucket('+Inf')).toBe(5);
      },
    );

    it('follows a fork: the child gets its own connection and counts', async () => {
      const { res, out } = await traceRun([py, fixture('work.py'), 'fork'], { function: 'f' });
      const { pid, child } = JSON.parse(out.trim()) as { pid: number; child: number };
      expect(sums(res.records, 'python.calls', 'pid')).toEqual({
        [String(pid)]: 1000,
        [String(child)]: 500,
      });
      expect(
        events(res.records, 'attach')
          .map((e) => e.kind === 'event' && e.key)
          .sort(),
      ).toEqual(['attach:fork', 'attach:start']);
    });

    it('follows a Python child started after attaching (caught at exec)', async () => {
      const { res, out } = await traceRun([py, fixture('work.py'), 'subprocess'], {
        function: 'f,g',
      });
      const result = JSON.parse(out.trim()) as { pid: number; child: { f: number; g: number } };
      expect(result.child).toEqual({ f: 300, g: 200 });
      const perPid = sums(res.records, 'python.calls', 'pid');
      expect(perPid[String(result.pid)]).toBe(10);
      const childPid = Object.keys(perPid).find((p) => p !== String(result.pid));
      const childCalls = sums(
        res.records.filter((r) => r.kind === 'sample' && r.labels?.pid === childPid),
        'python.calls',
      );
      expect(childCalls).toEqual({ '__main__:f': 300, '__main__:g': 200 });
    });

    it('labels calls with their thread', async () => {
      const { res } = await traceRun([py, fixture('work.py'), 'thread'], {
        function: 'f,g',
        thread: true,
      });
      expect(sums(res.records, 'python.calls', 'thread')).toEqual({
        MainThread: 300,
        'worker-1': 500,
      });
    });

    it('rpc-client preset counts call and cast of oslo_messaging/rpc/client.py only', async () => {
      const { res } = await traceRun([py, fixture('rpc_app.py')], { preset: 'rpc-client' });
      const counts = sums(res.records, 'python.calls');
      const byName = Object.fromEntries(
        Object.entries(counts).map(([k, v]) => [k.split('.').pop()!.split(':').pop(), v]),
      );
      expect(byName).toEqual({ call: 3, cast: 2 });
      for (const k of Object.keys(counts))
        expect(k.startsWith('oslo_messaging.rpc.client:')).toBe(true);
    });

    it('all calls with top=2: two functions by name, the rest as (other), totals kept', async () => {
      const { res } = await traceRun([py, fixture('work.py'), 'many'], {
        module: '__main__',
        top: 2,
      });
      const counts = sums(res.records, 'python.calls');
      // a 50, b 40; c+d+e = 60 and main() once: 61 as (other). Functions are counted, not the
      // script's <module> code.
      expect(counts).toEqual({ '__main__:a': 50, '__main__:b': 40, '(other)': 61 });
    });

    it('a bare file glob uses the global hook, which also sees the script’s <module> code', async () => {
      const { res } = await traceRun([py, fixture('work.py'), 'many'], {
        file: '*/work.py',
        top: 2,
      });
      // As above, plus the <module> code once: 62 as (other).
      expect(sums(res.records, 'python.calls')).toEqual({
        '__main__:a': 50,
        '__main__:b': 40,
        '(other)': 62,
      });
      const technique = events(res.records, 'technique');
      expect(technique.map((e) => e.kind === 'event' && e.key)).toEqual(['technique:hook']);
      expect(technique[0]?.kind === 'event' && technique[0].data?.techniques).toMatch(
        /a bare file glob names no function/,
      );
    });
  });

  describe.runIf(hasEventlet)(
    'an eventlet program (like OpenStack services), Debian python3',
    () => {
      // Importing eventlet and its thousands of green switches take a few CPU seconds, which a
      // busy host stretches to a minute or more of wall time: a bound, not a speed check.
      const EVENTLET_TIMEOUT = 240_000;
      it(
        'counts exactly from the start, green threads switching inside the calls',
        async () => {
          const { res, out } = await traceRun(
            [debianPython!.path, fixture('green.py'), '8000', '4000'],
            {
              function: 'f,g',
            },
          );
          expect(JSON.parse(out.trim())).toEqual({ f: 8000, g: 4000 });
          expect(sums(res.records, 'python.calls')).toEqual({
            '__main__:f': 8000,
            '__main__:g': 4000,
          });
        },
        EVENTLET_TIMEOUT,
      );

      it(
        'attaches after monkey_patch (the agent keeps a real thread and socket)',
        async () => {
          const child = new Child([
            debianPython!.path,
            fixture('green.py'),
            '8000',
            '4000',
            '--wait-hook',
          ]);
          try {
            const res = await traceAttach(child.pid, { function: 'f,g' }, () =>
              child.waitFor('"f"', EVENTLET_TIMEOUT - 30_000),
            );
            expect(await child.closed).toBe(0);
            expect(child.result()).toEqual({ f: 8000, g: 4000 });
            expect(sums(res.records, 'python.calls')).toEqual({
              '__main__:f': 8000,
              '__main__:g': 4000,
            });
            // One series per function and process: no thread label by default.
            const series = new Set(
              res.records
                .filter((r) => r.kind === 'sample' && r.series === 'python.calls')
                .map((r) => JSON.stringify(r.kind === 'sample' && r.labels)),
            );
            expect(series.size).toBe(2);
            expect(sums(res.records, 'python.calls', 'thread')).toEqual({ '': 12000 });
          } finally {
            child.kill();
          }
        },
        EVENTLET_TIMEOUT,
      );

      it(
        'with thread=true, labels each call with its green thread',
        async () => {
          const { res, out } = await traceRun(
            [debianPython!.path, fixture('green.py'), '8000', '4000'],
            { function: 'f,g', thread: true },
          );
          expect(JSON.parse(out.trim())).toEqual({ f: 8000, g: 4000 });
          // green.py's four workers each call f 2000 and g 1000 times.
          expect(sums(res.records, 'python.calls', 'thread')).toEqual({
            'GreenThread-1': 3000,
            'GreenThread-2': 3000,
            'GreenThread-3': 3000,
            'GreenThread-4': 3000,
          });
        },
        EVENTLET_TIMEOUT,
      );
    },
  );

  it.each(pythons.filter((p) => p.name !== 'pyenv-3.8'))(
    '$name: hooks threads that exist before attaching, and unhooks them all on stop',
    async ({ path }) => {
      const hold = join(mkdtempSync(join(tmpdir(), 'pycalls-hold-')), 'release');
      const child = new Child([path, fixture('work.py'), 'prethread', hold]);
      try {
        await child.waitFor('thread started');
        const res = await traceAttach(
          child.pid,
          { function: 'f,g', timing: true, thread: true },
          () => child.waitFor('called'),
        );
        writeFileSync(hold, '');
        expect(await child.closed).toBe(0);
        expect(child.result()).toMatchObject({
          threadHookAfterStop: false,
          mainHookAfterStop: false,
        });
        expect(sums(res.records, 'python.calls', 'thread')).toEqual({
          MainThread: 300,
          'pre-existing': 700,
        });
      } finally {
        child.kill();
      }
    },
  );

  it.runIf(mainPython)('attaches to every process of a pre-forked server', async () => {
    const hold = join(mkdtempSync(join(tmpdir(), 'pycalls-hold-')), 'release');
    const child = new Child([mainPython!.path, fixture('work.py'), 'prefork', hold]);
    try {
      await child.waitFor('forked');
      const res = await traceAttach(child.pid, { function: 'f' }, async () => {
        while ((child.out.match(/served/g) ?? []).length < 3)
          await new Promise((r) => setTimeout(r, 20));
      });
      writeFileSync(hold, '');
      expect(await child.closed).toBe(0);
      const { pid, children } = child.result() as { pid: number; children: number[] };
      const expected = Object.fromEntries([pid, ...children].map((p) => [String(p), 1000]));
      expect(sums(res.records, 'python.calls', 'pid')).toEqual(expected);
      expect(events(res.records, 'attach')).toHaveLength(3);
    } finally {
      child.kill();
    }
  });

  describe.runIf(embedConfig)('a program embedding CPython (like uwsgi), pyenv 3.11', () => {
    let host = '';
    beforeAll(() => {
      host = join(mkdtempSync(join(tmpdir(), 'pycalls-embed-')), 'embed-host');
      const flags = spawnSync(embedConfig!, ['--includes', '--ldflags', '--embed'], {
        encoding: 'utf8',
      }).stdout;
      const cc = spawnSync(
        'cc',
        ['-O1', '-o', host, fixture('embed.c'), ...flags.trim().split(/\s+/)],
        {
          encoding: 'utf8',
        },
      );
      if (cc.status !== 0) throw new Error(`cannot build the embedding fixture: ${cc.stderr}`);
    });

    it('attaches to it (libpython mapped, interpreter initialized) and counts', async () => {
      const hold = join(mkdtempSync(join(tmpdir(), 'pycalls-hold-')), 'release');
      const child = new Child([host, 'run', '3000', '2000', hold]);
      try {
        await child.waitFor('waiting for a profiler');
        const res = await traceAttach(child.pid, { function: 'f,g' }, () =>
          child.waitFor('holding'),
        );
        writeFileSync(hold, '');
        expect(await child.closed).toBe(0);
        expect(child.result()).toEqual({ f: 3000, g: 2000, hookAfterStop: false });
        expect(sums(res.records, 'python.calls')).toEqual({
          '__main__:f': 3000,
          '__main__:g': 2000,
        });
      } finally {
        child.kill();
      }
    });

    it('attaches without traffic to a host waiting in C, like a uwsgi worker or master', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'pycalls-serve-'));
      const fifo = join(dir, 'requests');
      expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
      const child = new Child([host, 'serve', fifo]);
      let fd: number | undefined;
      try {
        await child.waitFor('ready');
        // The host now waits on a lock (a futex, like uwsgi's accept lock): no request yet.
        fd = openSync(fifo, 'w');
        const res = await traceAttach(child.pid, { function: 'f' }, async () => {
          writeSync(fd!, '3000\n');
          await child.waitFor('served 3000');
        });
        expect(events(res.records, 'attach').map((e) => e.kind === 'event' && e.key)).toEqual([
          'attach:direct',
        ]);
        expect(sums(res.records, 'python.calls')).toEqual({ '__main__:f': 3000 });
        closeSync(fd);
        fd = undefined;
        expect(await child.closed).toBe(0);
      } finally {
        if (fd !== undefined) closeSync(fd);
        child.kill();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('refuses it while its interpreter is not initialized, and leaves it running', async () => {
      const child = new Child([host, 'idle', '300']);
      try {
        await child.waitFor('idle');
        await expect(traceAttach(child.pid, { function: 'f' }, async () => {})).rejects.toThrow(
          /interpreter of this process is not initialized/,
        );
        process.kill(child.pid, 'SIGUSR1');
        expect(await child.closed).toBe(0);
        expect(child.result()).toEqual({ idle: true, initialized: 0 });
      } finally {
        child.kill();
      }
    });
  });

  it.runIf(debianPython && hasBinary('unshare'))(
    'attaches to a service with a private /tmp (systemd PrivateTmp=yes)',
    async () => {
      const holdDir = mkdtempSync('/dev/shm/pycalls-hold-');
      const hold = join(holdDir, 'release');
      // The script must not live under /tmp, which the private mount hides (a checkout may be
      // under /tmp itself).
      const calls = join(holdDir, 'calls.py');
      copyFileSync(fixture('calls.py'), calls);
      const script = `mount -t tmpfs scalpels-private-tmp /tmp && exec ${debianPython!.path} ${calls} 4000 3000 --wait-hook --hold ${hold}`;
      const child = new Child([
        'unshare',
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        script,
      ]);
      try {
        // unshare and sh exec into Python on the same pid: attach only once Python runs the
        // script (a fixed sleep was too short on a loaded machine).
        await child.waitFor('waiting for a profiler');
        expect(exeOf(child.pid)).toMatch(/python/);
        const res = await traceAttach(child.pid, { function: 'f,g' }, () =>
          child.waitFor('holding'),
        );
        writeFileSync(hold, '');
        expect(await child.closed).toBe(0);
        expect(child.result()).toMatchObject({ f: 4000, g: 3000, hookAfterStop: false });
        expect(sums(res.records, 'python.calls')).toEqual({
          '__main__:f': 4000,
          '__main__:g': 3000,
        });
      } finally {
        child.kill();
        rmSync(holdDir, { recursive: true, force: true });
      }
    },
  );

  it.runIf(debianPython)('attaches to a service running as another user (nobody)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pycalls-user-'));
    chmodSync(dir, 0o755);
    const script = join(dir, 'calls.py');
    copyFileSync(fixture('calls.py'), script);
    const hold = join(dir, 'release');
    const child = new Child(
      [debianPython!.path, script, '3000', '2000', '--wait-hook', '--hold', hold],
      {
        uid: 65534,
        gid: 65534,
        cwd: dir,
      },
    );
    try {
      const res = await traceAttach(child.pid, { function: 'f,g' }, () => child.waitFor('holding'));
      writeFileSync(hold, '');
      expect(await child.closed).toBe(0);
      expect(child.result()).toMatchObject({ f: 3000, g: 2000, hookAfterStop: false });
      expect(sums(res.records, 'python.calls')).toEqual({ '__main__:f': 3000, '__main__:g': 2000 });
    } finally {
      child.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a target without a Python interpreter and leaves it running', async () => {
    const child = new Child(['sleep', '30']);
    try {
      await expect(traceAttach(child.pid, { function: 'f' }, async () => {})).rejects.toThrow(
        /no Python interpreter/,
      );
      expect(procState(child.pid)).toBe('S');
    } finally {
      child.kill();
    }
  });

  it.runIf(mainPython)(
    'with a rule needing the global hook, refuses a process that has its own profile hook and leaves it in place',
    async () => {
      const hold = join(mkdtempSync(join(tmpdir(), 'pycalls-hold-')), 'release');
      const child = new Child([mainPython!.path, fixture('work.py'), 'own-hook', hold]);
      try {
        await child.waitFor('hooked');
        // A bare file glob needs the global hook; a function rule would not touch the hook.
        await expect(traceAttach(child.pid, { file: '*/work.py' }, async () => {})).rejects.toThrow(
          /already has a profile hook/,
        );
        writeFileSync(hold, '');
        expect(await child.closed).toBe(0);
        expect(child.result()).toMatchObject({ ownHookKept: true });
      } finally {
        child.kill();
      }
    },
  );

  it.runIf(mainPython)(
    'fails with the reason when the main thread waits on a Python lock, target untouched',
    async () => {
      const child = new Child([mainPython!.path, fixture('work.py'), 'blocked']);
      try {
        await child.waitFor('blocked');
        await expect(
          traceAttach(child.pid, { function: 'f', 'attach-timeout': '1s' }, async () => {}),
        ).rejects.toThrow(/did not run the profiler within 1000 ms/);
        expect(procState(child.pid)).toBe('S');
        // When the main thread wakes up, the queued bootstrap finds no tracer and does nothing.
        process.kill(child.pid, 'SIGUSR1');
        expect(await child.closed).toBe(0);
        expect(child.result()).toMatchObject({ hook: false, agentModule: false });
      } finally {
        child.kill();
      }
    },
  );
});
