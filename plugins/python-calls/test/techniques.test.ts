import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { capability, runWorker } from '@scalpels/core/testing';
import { validateOptions, type CheckContext } from '@scalpels/core';
import plugin from '../src/index.js';
import { hasUsdtMarkers } from '../src/checks.js';
import { Child, fixture, hasBinary, isRoot, pluginDir, sums } from './helpers.js';
import type { Options } from '../src/options.js';

function context(
  depth: 'quick' | 'full',
  raw: Record<string, unknown> = {},
): CheckContext<Options> {
  return {
    options: validateOptions(plugin, raw),
    depth,
    isRoot,
    async exec(argv, timeoutMs) {
      const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: timeoutMs });
      return { exitCode: r.status ?? 1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
    },
    async which(binary) {
      const r = spawnSync('which', [binary], { encoding: 'utf8' });
      return r.status === 0 ? r.stdout.trim() : undefined;
    },
  };
}

const debian = '/usr/bin/python3.11';
const canUsdt = capability(
  'root, bpftrace and a CPython with USDT markers',
  isRoot && hasBinary('bpftrace') && existsSync(debian) && hasUsdtMarkers(debian),
  `the USDT technique needs bpftrace as root and ${debian} built with --with-dtrace`,
);

describe('check', () => {
  it('quick: spawns nothing and names the chosen technique', async () => {
    const ctx = context('quick');
    let spawned = false;
    ctx.exec = async () => {
      spawned = true;
      return { exitCode: 1, stdout: '', stderr: '' };
    };
    const r = await plugin.check(ctx);
    expect(spawned).toBe(false);
    if (isRoot && hasBinary('gdb') && hasBinary('bpftrace')) {
      expect(r).toMatchObject({ status: 'ok', technique: 'profiler' });
      expect(r.detail).toMatch(/usdt: .*(self-test|no USDT markers)/);
    } else expect(r.status).not.toBe('ok');
  });

  it.runIf(isRoot && hasBinary('gdb') && hasBinary('bpftrace'))(
    'says which technique each rule uses and why (what doctor shows)',
    async () => {
      const named = await plugin.check(
        context('quick', { function: ['f'], preset: ['rpc-client'] }),
      );
      expect(named.detail).toMatch(/function=f: instrumented \(names functions or modules/);
      expect(named.detail).toMatch(
        /function=call,cast file=\*\/oslo_messaging\/rpc\/client.py: instrumented/,
      );
      const glob = await plugin.check(
        context('quick', { function: ['f'], file: [], module: [], preset: [], top: 0 }),
      );
      expect(glob.detail).toMatch(/instrumented/);
      const bare = await plugin.check(context('quick', { file: ['*/x.py'], function: ['f'] }));
      expect(bare.detail).toMatch(/file=\*\/x.py function=f|function=f file=\*\/x.py/);
      const hook = await plugin.check(
        context('quick', { preset: ['rpc-client'], file: ['*/x.py'] }),
      );
      expect(hook.detail).toMatch(
        /file=\*\/x.py: global hook \(a bare file glob names no function to resolve/,
      );
      expect(hook.detail).toMatch(/function=call,cast .*: global hook \(another rule needs it/);
      const none = await plugin.check(context('quick', {}));
      expect(none.detail).toMatch(/every call \(no rule\): global hook/);
    },
  );

  it('fixable with a hint when gdb is missing', async () => {
    const ctx = context('quick');
    const which = ctx.which;
    ctx.which = async (b) => (b === 'gdb' ? undefined : which(b));
    const r = await plugin.check(ctx);
    expect(r.status).toBe('fixable');
    expect(r.hint).toMatch(/gdb/);
  });

  it.runIf(canUsdt)(
    'full: the USDT self-test tells why Debian 3.11 probes are not used',
    async () => {
      // The default interpreter is the system's (/usr/bin/python3, Debian's 3.11 here).
      const r = await plugin.check(context('full'));
      // On CPython 3.11 the probes need a hook: the chain falls back to the profiler and says why.
      expect(r).toMatchObject({ status: 'ok', technique: 'profiler' });
      expect(r.detail).toMatch(
        /do not fire without a profile hook \(self-test saw 0 of 200 calls\)/,
      );
    },
  );
});

describe.runIf(canUsdt)('check with default options (what scalpels doctor shows)', () => {
  it('explains the system interpreter’s probes even when python3 is another interpreter', async () => {
    const r = await plugin.check(context('full'));
    expect(r.technique).toBe('profiler');
    expect(r.detail).toContain(
      `${debian} has USDT markers but they do not fire without a profile hook`,
    );
  });
});

describe.runIf(canUsdt)('usdt technique', () => {
  it('counts f and g through bpftrace when the probes fire (the script holds a hook itself)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pycalls-usdt-'));
    const go = join(dir, 'go');
    const launcher = new Child([
      process.execPath,
      '-e',
      `const fs = require('fs'); const cp = require('child_process');
const t = setInterval(() => { if (!fs.existsSync(${JSON.stringify(go)})) return; clearInterval(t);
  const c = cp.spawn(${JSON.stringify(debian)}, [${JSON.stringify(fixture('hooked.py'))}, '3000', '2000'], { stdio: 'inherit' });
  c.on('close', (code) => process.exit(code ?? 1)); }, 5);`,
    ]);
    try {
      const res = await runWorker(plugin, {
        pluginDir,
        technique: 'usdt',
        // The target runs no Python yet at start: the probes go on the system interpreter.
        options: { function: 'f,g', interval: '200ms' },
        target: { kind: 'run', pids: [launcher.pid], description: 'run' },
        during: async () => {
          writeFileSync(go, '');
          await launcher.closed;
        },
      });
      expect(JSON.parse(launcher.out.trim())).toEqual({ f: 3000, g: 2000 });
      expect(res.outcome.status).toBe('stopped');
      expect(sums(res.records, 'python.calls')).toEqual({ 'hooked:f': 3000, 'hooked:g': 2000 });
    } finally {
      launcher.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses options it cannot do', async () => {
    await expect(
      runWorker(plugin, {
        pluginDir,
        technique: 'usdt',
        options: { timing: true },
        target: { kind: 'pid', pids: [1], description: 'x' },
      }),
    ).rejects.toThrow(/timing and exceptions need the profiler technique/);
  });
});
