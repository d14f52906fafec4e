import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { validateOptions, type CheckContext } from '@scalpels/core';
import plugin from '../src/index.js';
import { checkSystemtap, probeHost, type Host } from '../src/check.js';
import type { Options } from '../src/options.js';

function exec(argv: readonly string[], timeoutMs?: number): ReturnType<CheckContext['exec']> {
  return new Promise((resolve) =>
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs }, (err, stdout, stderr) =>
      resolve({
        exitCode: err ? (typeof err.code === 'number' ? err.code : 1) : 0,
        stdout,
        stderr,
      }),
    ),
  );
}

async function which(binary: string): Promise<string | undefined> {
  const r = await exec(['sh', '-c', `command -v ${binary}`]);
  return r.exitCode === 0 ? r.stdout.trim() : undefined;
}

function ctx(
  depth: 'quick' | 'full',
  options: Record<string, unknown> = {},
  over: Partial<CheckContext<Options>> = {},
): CheckContext<Options> {
  return {
    // Each option typed and defaulted as the core does; the cross-option check (a bundled script
    // runs on the kernel runtime only) is left out: these cases probe the host for a runtime.
    options: validateOptions(
      { name: plugin.name, options: plugin.options },
      { runtime: 'kernel', ...options },
    ),
    depth,
    isRoot: process.getuid?.() === 0,
    exec,
    which,
    ...over,
  };
}

const good: Host = {
  release: '6.1.0-56-amd64',
  modules: true,
  buildTree: true,
  debuginfo: true,
  distro: 'debian',
  groups: { stapusr: false, stapdev: false },
  memlockOk: true,
  memlockHard: 'unlimited',
};
const withStap = {
  which: async (b: string) => `/usr/bin/${b}`,
  exec: async () => ({
    exitCode: 0,
    stdout: '',
    stderr: 'Systemtap translator/driver (version 4.8/0.188)',
  }),
};

describe('systemtap check on described hosts', () => {
  it('says how to install stap when it is missing', async () => {
    const r = await checkSystemtap(ctx('quick', {}, { which: async () => undefined }), good);
    expect(r).toEqual({
      status: 'fixable',
      detail: 'stap (SystemTap) is not installed',
      hint: 'apt-get install -y systemtap',
    });
  });

  it('is ok on a Debian kernel with headers, and names its version in full depth', async () => {
    const r = await checkSystemtap(ctx('full', {}, { ...withStap, isRoot: true }), good);
    expect(r.status).toBe('ok');
    expect(r.detail).toContain('stap 4.8');
  });

  it('asks for the exact headers package when only the build tree is missing', async () => {
    const r = await checkSystemtap(ctx('quick', {}, { ...withStap, isRoot: true }), {
      ...good,
      buildTree: false,
    });
    expect(r.status).toBe('fixable');
    expect(r.hint).toBe('apt-get install -y linux-headers-6.1.0-56-amd64');
  });

  it('mentions the debug info package when kernel.function probes cannot work', async () => {
    const r = await checkSystemtap(ctx('quick', {}, { ...withStap, isRoot: true }), {
      ...good,
      debuginfo: false,
    });
    expect(r.status).toBe('ok');
    expect(r.detail).toContain('apt-get install -y linux-image-6.1.0-56-amd64-dbg');
  });

  it('wants stapusr membership from non-root users', async () => {
    const r = await checkSystemtap(ctx('quick', {}, { ...withStap, isRoot: false }), good);
    expect(r.status).toBe('fixable');
    expect(r.hint).toContain('usermod -aG stapusr,stapdev');
  });

  it('is unavailable on a kernel without modules, naming what to install instead', async () => {
    const r = await checkSystemtap(ctx('quick', {}, { ...withStap, isRoot: true }), {
      ...good,
      release: '6.18.44-fc',
      modules: false,
      buildTree: false,
    });
    expect(r.status).toBe('unavailable');
    expect(r.detail).toContain('no loadable module support');
    expect(r.detail).toContain('no build tree for kernel 6.18.44-fc');
    expect(r.detail).toContain(
      'apt-get install -y linux-image-amd64 linux-headers-amd64 linux-image-amd64-dbg',
    );
  });

  it('explains the memlock limit that stops stapbpf in containers', async () => {
    const r = await checkSystemtap(
      ctx('quick', { runtime: 'bpf' }, { ...withStap, isRoot: true }),
      {
        ...good,
        memlockOk: false,
        memlockHard: '8388608',
      },
    );
    expect(r.status).toBe('unavailable');
    expect(r.detail).toContain('RLIMIT_MEMLOCK');
    expect(r.detail).toContain('8388608');
  });
});

describe('systemtap check on this machine', () => {
  it('quick depth runs nothing and agrees with what the host has', async () => {
    let ran = 0;
    const host = probeHost();
    const r = await plugin.check(ctx('quick', {}, { exec: async (...a) => (ran++, exec(...a)) }));
    expect(ran).toBe(0);
    if (!(await which('stap'))) expect(r.status).toBe('fixable');
    else if (!host.modules) {
      expect(r.status).toBe('unavailable');
      expect(r.detail).toContain(`kernel ${host.release} has no loadable module support`);
    } else if (!host.buildTree)
      expect(r.detail).toContain(`no build tree for kernel ${host.release}`);
  });

  it('full depth (doctor) says exactly why stap cannot run, or that it can', async () => {
    const host = probeHost();
    const r = await plugin.check(ctx('full'));
    if (host.modules && host.buildTree && (await which('stap'))) {
      expect(r.status).toBe('ok');
      return;
    }
    expect(r.status).not.toBe('ok');
    if (!host.buildTree) expect(r.detail).toContain(`/lib/modules/${host.release}/build/.config`);
    if (r.status === 'unavailable') expect(r.detail).toMatch(/apt-get install -y|dnf install -y/);
  });
});

describe('python-calls interpreter caveats', () => {
  it('names the CPython versions whose function__entry marker is broken or missing', async () => {
    const { functionEntryCaveat } = await import('../src/bundled.js');
    expect(functionEntryCaveat('/usr/bin/python3.11')).toContain('undercounts');
    expect(functionEntryCaveat('/usr/bin/python3.12')).toContain('no function__entry marker');
    expect(functionEntryCaveat('/usr/bin/python3.10')).toBeUndefined();
    expect(functionEntryCaveat('/usr/bin/python3.15')).toBeUndefined();
  });
});
