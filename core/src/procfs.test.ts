// The core's /proc module on real processes: children with awkward names, real trees, a real
// recycled pid (forced through ns_last_pid as root) and the kernel's own child lists to compare.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { capability, waitFor } from './testing/index.js';
import {
  ancestors,
  findRoot,
  isSameProcess,
  parentOf,
  processTree,
  readCmdline,
  readExe,
  readIo,
  readStat,
  readStatus,
  scanProcesses,
  ticksSinceBoot,
  type ProcStat,
} from './procfs.js';

const started: ChildProcess[] = [];
afterAll(() => {
  for (const c of started) c.kill('SIGKILL');
});

function start(cmd: string, args: string[]): ChildProcess {
  const c = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'ignore'] });
  started.push(c);
  return c;
}

async function exited(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  await new Promise((resolve) => c.once('exit', resolve));
}

/** What the kernel lists as the children `pid` forked (an independent source for trees). */
function kernelChildren(pid: number): number[] {
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

describe('procfs: one process', () => {
  it('reads a comm holding spaces and parentheses that look like the fields after it', async () => {
    // A shell names itself through /proc/self/comm (its own builtin printf: no fork), then
    // waits on stdin. A parser that splits at the first ')' reads state R and ppid 1 here.
    const comm = 'a) R 1 2 (b c)';
    const before = ticksSinceBoot();
    const c = start('sh', ['-c', `printf '%s' '${comm}' > /proc/self/comm; read x`]);
    await waitFor('the renamed shell', () => readStat(c.pid!)?.comm === comm, 30_000);
    const st = readStat(c.pid!)!;
    expect(st).toMatchObject({ pid: c.pid, comm, ppid: process.pid, threads: 1 });
    expect(['S', 'R']).toContain(st.state);
    // Its start time is on the boot clock, between the ticks before the spawn and now.
    expect(st.startTime).toBeGreaterThanOrEqual(before - 1);
    expect(st.startTime).toBeLessThanOrEqual(ticksSinceBoot() + 1);
    expect(readCmdline(c.pid!)[0]).toBe('sh');
    expect(readExe(c.pid!)).toMatch(/\/(?:ba|da)?sh$/);
    c.stdin!.end('\n');
    await exited(c);
    expect(readStat(c.pid!)).toBeUndefined();
    expect(isSameProcess(c.pid!, st.startTime)).toBe(false);
  });

  it('reads this process: stat agrees with node, status and io too', () => {
    const st = readStat('self')!;
    expect(st).toMatchObject({ pid: process.pid, ppid: process.ppid, state: 'R' });
    expect(readStat(process.pid)!.startTime).toBe(st.startTime);
    expect(st.threads).toBeGreaterThanOrEqual(1);
    // utime/stime are in ticks of 10 ms; getrusage counts the same threads.
    const cpu = process.cpuUsage();
    expect(Math.abs(st.utime * 10_000 - cpu.user)).toBeLessThan(500_000);
    expect(st.minflt).toBeGreaterThan(0);
    const status = readStatus('self')!;
    expect(Math.abs(status.rss - process.memoryUsage.rss()) / status.rss).toBeLessThan(0.2);
    expect(status.voluntary + status.involuntary).toBeGreaterThan(0);
    expect(readStatus(process.pid, process.pid)!.rss).toBeGreaterThan(0);
    const io = readIo('self')!;
    readFileSync('/proc/self/stat');
    const after = readIo('self')!;
    expect(after.rchar).toBeGreaterThan(io.rchar);
    expect(after.syscr).toBeGreaterThan(io.syscr);
    expect(isSameProcess(process.pid, st.startTime)).toBe(true);
    expect(isSameProcess(process.pid, st.startTime + 1)).toBe(false);
  });
});

describe('procfs: process trees', () => {
  it('walks the same tree as the kernel child lists, and ancestors back up to init', async () => {
    const sh = start('sh', ['-c', 'sleep 1000 & sleep 1000 & (sleep 1000; true) & read x']);
    await waitFor(
      'three children and a grandchild',
      () =>
        kernelChildren(sh.pid!).length === 3 &&
        kernelChildren(sh.pid!).some((p) => kernelChildren(p).length === 1),
      30_000,
    );
    const expected = [sh.pid!];
    for (let i = 0; i < expected.length; i++) expected.push(...kernelChildren(expected[i]!));
    const tree = processTree([sh.pid!]);
    expect(tree[0]!.pid).toBe(sh.pid);
    expect(tree.map((p) => p.pid).sort()).toEqual(expected.sort());
    const root = readStat(sh.pid!)!;
    // Given with its start time, the root is the same process: the same tree.
    expect(processTree([{ pid: root.pid, startTime: root.startTime }])).toHaveLength(
      expected.length,
    );
    expect(processTree([{ pid: root.pid, startTime: root.startTime - 1 }])).toEqual([]);
    // Roots given twice, or a root inside another's tree, are listed once.
    expect(processTree([sh.pid!, expected[1]!, sh.pid!])).toHaveLength(expected.length);

    const grandchild = expected.find(
      (p) => kernelChildren(p).length === 0 && !kernelChildren(sh.pid!).includes(p),
    )!;
    const up = ancestors(grandchild).map((p) => p.pid);
    expect(up.slice(0, 3)).toEqual([readStat(grandchild)!.ppid, sh.pid, process.pid]);
    expect(up.at(-1)).toBe(1);
    sh.kill('SIGKILL');
  });

  it('never takes a recycled pid for the process that had it', async () => {
    // Parent P with child C: a snapshot is read over time, so C's stat may be read while P
    // lived and P's pid read after it went to a new process. Forced here: P exits, its pid is
    // given to a new process through ns_last_pid (root only), and the two real readings meet.
    let writable = false;
    try {
      writeFileSync('/proc/sys/kernel/ns_last_pid', readFileSync('/proc/sys/kernel/ns_last_pid'));
      writable = true;
    } catch {
      // not root, or no CAP_SYS_ADMIN / CAP_CHECKPOINT_RESTORE
    }
    if (!capability('ns_last_pid', writable, 'cannot write /proc/sys/kernel/ns_last_pid')) return;

    for (let attempt = 0; attempt < 40; attempt++) {
      const parent = start('sh', ['-c', 'sleep 1000 & read x']);
      await waitFor('the child', () => kernelChildren(parent.pid!).length === 1, 30_000);
      const before = scanProcesses();
      const p = before.get(parent.pid!)!;
      const child = before.get(kernelChildren(parent.pid!)[0]!)!;
      expect(parentOf(child, before)?.pid).toBe(p.pid);
      parent.kill('SIGKILL');
      await exited(parent);
      // A start time is in clock ticks (10 ms): a process started in the same tick as the
      // child is told apart by nothing. Recycling a pid takes a wrap-around of the pid space,
      // never 10 ms; forced here, so let the clock pass the child's tick first.
      await waitFor('the next clock tick', () => ticksSinceBoot() > child.startTime + 1);
      // Another process takes P's pid (other forks on the host may win the race: retry).
      writeFileSync('/proc/sys/kernel/ns_last_pid', String(p.pid - 1));
      const reuse = start('sh', ['-c', 'read x']);
      if (reuse.pid !== p.pid) {
        process.kill(child.pid, 'SIGKILL');
        reuse.kill('SIGKILL');
        continue;
      }
      await waitFor('the new process', () => readStat(p.pid)?.comm === 'sh', 30_000);
      const now = readStat(p.pid)!;
      expect(now.startTime).toBeGreaterThan(child.startTime);
      expect(isSameProcess(p.pid, p.startTime)).toBe(false);
      expect(isSameProcess(p.pid, now.startTime)).toBe(true);
      expect(findRoot({ pid: p.pid, startTime: p.startTime }, scanProcesses())).toBeUndefined();
      expect(processTree([{ pid: p.pid, startTime: p.startTime }])).toEqual([]);
      // The orphan's old reading (ppid P) beside the new P: not its parent, not in its tree.
      const mixed = new Map<number, ProcStat>([
        [now.pid, now],
        [child.pid, child],
      ]);
      expect(child.ppid).toBe(now.pid);
      expect(parentOf(child, mixed)).toBeUndefined();
      expect(processTree([now.pid], mixed).map((s) => s.pid)).toEqual([now.pid]);
      expect(ancestors(child.pid, mixed)).toEqual([]);
      process.kill(child.pid, 'SIGKILL');
      reuse.kill('SIGKILL');
      return;
    }
    throw new Error('no pid was recycled in 40 attempts (the host forks too much)');
  });
});

describe('procfs: the subpath plugins and workers import', () => {
  it('@scalpels/core/procfs loads node built-ins only (no store, DI or native module)', () => {
    // Resolved from a plugin's folder, as a plugin's worker resolves it; a resolve hook lists
    // every module loaded after it.
    const hook = `export async function resolve(s, c, next) {
      const r = await next(s, c);
      process.stderr.write('loaded ' + r.url + '\\n');
      return r;
    }`;
    const script = `
      import { register } from 'node:module';
      register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));
      const m = await import('@scalpels/core/procfs');
      if (m.readStat('self').pid !== process.pid) process.exit(3);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('../../plugins/proc/', import.meta.url)),
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const loaded = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('loaded '))
      .map((l) => l.slice('loaded '.length));
    expect(loaded.some((u) => u.endsWith('/core/dist/procfs.js'))).toBe(true);
    expect(
      loaded.filter((u) => !u.startsWith('node:') && !u.endsWith('/core/dist/procfs.js')),
    ).toEqual([]);
  });
});
