import { spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
  chmodSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { capability } from './testing/index.js';
import { isSameProcess, readStat } from './procfs.js';
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
/** Polls `cond` until it holds (the host is busy: no fixed sleep), failing after `timeoutMs`. */
async function until(what: string, cond: () => boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
/** Children of `pid`, from /proc (the task's children file lists what it forked). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

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
    // A name of its own: the OpenStack lab may run the real nova-api on this machine.
    const name = `nova-api-t${process.pid}`;
    const script = join(dir, name);
    writeFileSync(
      script,
      'import subprocess, time\nsubprocess.Popen(["sleep", "30"])\ntime.sleep(30)\n',
    );
    chmodSync(script, 0o755);
    const api = start('python3', [script]);
    // python3 may be a shim (pyenv) that execs the interpreter a moment later: wait for it, and
    // for the child it spawns.
    await until(`${name} to run`, () => resolver.matchService(name).length > 0);
    await until(`${name} to start its child`, () => childrenOf(api.pid!).length > 0);
    const t = resolver.resolve({ services: [name] });
    expect(t.kind).toBe('service');
    expect(t.pids).toEqual([api.pid]);
    // the script and the sleep it spawned
    expect(t.description).toBe(`service ${name} (2 processes)`);
    // the root carries its start time (pid reuse) and the service name reports label it with
    expect(t.roots).toEqual([
      { pid: api.pid, startTime: readStat(api.pid!)!.startTime, service: name },
    ]);
    // by pid, the name comes from its command line: the script, not `python3`
    expect(resolver.resolve({ pids: [api.pid!] }).roots?.[0]?.service).toBe(name);
  });

  it('names a root by pid and start time: once it exited, it is no longer the same process', async () => {
    const c = start('sleep', ['33.5']);
    await until('sleep to run', () => readStat(c.pid!)?.comm === 'sleep');
    const [root] = resolver.resolve({ pids: [c.pid!] }).roots!;
    expect(isSameProcess(root!.pid, root!.startTime)).toBe(true);
    expect(isSameProcess(root!.pid, root!.startTime + 1)).toBe(false);
    c.kill('SIGKILL');
    await new Promise((r) => c.once('exit', r));
    expect(isSameProcess(root!.pid, root!.startTime)).toBe(false);
  });

  it('matches a service by process name', async () => {
    const c = start('sleep', ['31.5']);
    await until('sleep to be matched', () => resolver.matchService('sleep').includes(c.pid!));
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
      writeFileSync(join(unit, 'cgroup.procs'), String(c.pid));
      try {
        expect(resolver.matchService('devstack@n-api.service')).toEqual([c.pid]);
        expect(resolver.matchService('n-api')).toEqual([c.pid]);
      } finally {
        c.kill('SIGKILL');
        // A cgroup cannot be removed while the killed process is still in it.
        await until('the unit cgroup to empty', () => {
          try {
            rmdirSync(unit);
            return true;
          } catch {
            return false;
          }
        });
      }
    },
  );
});
