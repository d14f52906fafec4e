import { spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmdirSync,
  rmSync,
  writeFileSync,
  chmodSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { capability } from './testing/index.js';
import { TargetResolver } from './targets.js';

const dir = mkdtempSync(join(tmpdir(), 'scalpels-targets-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function start(cmd: string, args: string[]): ChildProcess {
  const c = spawn(cmd, args, { stdio: 'ignore' });
  children.push(c);
  return c;
}
const settle = () => new Promise((r) => setTimeout(r, 200));

describe('TargetResolver', () => {
  const resolver = new TargetResolver();

  it('resolves --pid, and refuses a pid that does not exist', () => {
    expect(resolver.resolve({ pids: [process.pid] })).toMatchObject({
      kind: 'pid',
      pids: [process.pid],
      description: `pid ${process.pid}`,
    });
    expect(() => resolver.resolve({ pids: [999_999_999] })).toThrow(
      '--pid 999999999: no such process',
    );
    expect(resolver.resolve({})).toMatchObject({ kind: 'none', pids: [] });
  });

  it('matches a service by script name (python3 /usr/bin/nova-api) and keeps only the root of a tree', async () => {
    const script = join(dir, 'nova-api');
    writeFileSync(
      script,
      'import subprocess, time\nsubprocess.Popen(["sleep", "30"])\ntime.sleep(30)\n',
    );
    chmodSync(script, 0o755);
    const api = start('python3', [script]);
    // python3 may be a shim (pyenv) that execs the interpreter a moment later: wait for it.
    for (let i = 0; i < 50 && resolver.matchService('nova-api').length === 0; i++) await settle();
    await settle(); // and for the child it spawns
    const t = resolver.resolve({ services: ['nova-api'] });
    expect(t.kind).toBe('service');
    expect(t.pids).toEqual([api.pid]);
    expect(t.description).toBe('service nova-api (1 process)');
  });

  it('matches a service by process name', async () => {
    const c = start('sleep', ['31.5']);
    await settle();
    expect(resolver.matchService('sleep')).toContain(c.pid);
  });

  it('says when nothing matches', () => {
    expect(() => resolver.resolve({ services: ['no-such-service-xyz'] })).toThrow(
      '--service no-such-service-xyz: no running process or systemd unit matches',
    );
  });

  const cgroupRoot = '/sys/fs/cgroup/systemd';
  const canCgroup = capability(
    'writable systemd cgroup hierarchy',
    process.getuid?.() === 0 && existsSync(`${cgroupRoot}/cgroup.procs`),
    'needs root and the name=systemd cgroup hierarchy at /sys/fs/cgroup/systemd',
  );
  it.runIf(canCgroup)(
    'matches a systemd unit through the cgroup (devstack@n-api.service, n-api)',
    async () => {
      const unit = join(cgroupRoot, 'system.slice', 'devstack@n-api.service');
      mkdirSync(unit, { recursive: true });
      const c = start('sleep', ['32.5']);
      await settle();
      writeFileSync(join(unit, 'cgroup.procs'), String(c.pid));
      try {
        expect(resolver.matchService('devstack@n-api.service')).toEqual([c.pid]);
        expect(resolver.matchService('n-api')).toEqual([c.pid]);
      } finally {
        c.kill('SIGKILL');
        await settle();
        rmdirSync(unit);
      }
    },
  );
});
