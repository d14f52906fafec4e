/**
 * A `scalpels run` whose Redis store dies mid-run: the run still ends soon after its workload,
 * with a clear message, and leaves no worker process behind. The Redis server is a private one,
 * started here on a free loopback port and killed with SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { capability } from '@scalpels/core/testing';
import { hasRedisServer, privateRedisServers, type PrivateRedis } from './private-redis.js';

const cli = fileURLToPath(new URL('../cli/dist/main.js', import.meta.url));
const canRun =
  capability('scalpels CLI built', existsSync(cli), `${cli} missing: build the workspace`) &&
  hasRedisServer();
const startRedis = privateRedisServers();

const scratch = mkdtempSync(join(tmpdir(), 'scalpels-store-dies-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(scratch, { recursive: true, force: true });
});

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 60_000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Start time (clock ticks since boot) and parent of a live process, or undefined when gone. */
function stat(
  pid: number,
): { ppid: number; pgrp: number; start: number; state: string } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: f[0]!, ppid: Number(f[1]), pgrp: Number(f[2]), start: Number(f[19]) };
  } catch {
    return undefined;
  }
}

/** Every descendant of a process, with its start time (to tell a recycled pid apart). */
function descendants(root: number): Map<number, number> {
  const parent = new Map<number, number>();
  const starts = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const s = stat(Number(d));
    if (s) {
      parent.set(Number(d), s.ppid);
      starts.set(Number(d), s.start);
    }
  }
  const out = new Map<number, number>();
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parent)
      if (!out.has(pid) && (ppid === root || out.has(ppid))) {
        out.set(pid, starts.get(pid)!);
        grew = true;
      }
  }
  return out;
}

const alive = (pid: number, start: number): boolean => {
  const s = stat(pid);
  return s !== undefined && s.start === start && s.state !== 'Z';
};

/**
 * `scalpels run` of the proc tracer, storing into `redis`, its workload `sh -c script`; its
 * stderr is collected.
 */
function runOnStore(
  redis: PrivateRedis,
  script: string,
): { run: ChildProcess; stderr: () => string } {
  const store = `${redis.url}?prefix=scalpels-test:&spilldir=${join(scratch, 'spill')}`;
  const run = spawn(
    process.execPath,
    [
      cli,
      'run',
      '-t',
      'proc',
      '--set',
      'proc.interval=100ms',
      '--store',
      store,
      '--format',
      'none',
      '--',
      'sh',
      '-c',
      script,
    ],
    { env: { ...process.env, XDG_DATA_HOME: scratch, NO_COLOR: '1' }, stdio: 'pipe' },
  );
  children.push(run);
  let stderr = '';
  run.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return { run, stderr: () => stderr };
}

/** Waits until none of `procs` (pid to start time) is alive; names the ones left on a timeout. */
async function allGone(procs: Map<number, number>): Promise<void> {
  await until(
    'every process of the run to be gone',
    () => [...procs].every(([pid, start]) => !alive(pid, start)),
    10_000,
  ).catch(() => {
    const left = [...procs].filter(([pid, start]) => alive(pid, start)).map(([pid]) => pid);
    throw new Error(`processes left: ${left.join(', ')}`);
  });
}

describe.runIf(canRun)('a run whose Redis store dies mid-run', () => {
  it('ends soon after its workload, says so, and leaves no worker behind', async () => {
    const redis = await startRedis();

    const started = join(scratch, 'started');
    const go = join(scratch, 'go');
    const { run, stderr } = runOnStore(
      redis,
      `touch ${started}; while [ ! -e ${go} ]; do sleep 0.05; done`,
    );
    const exited = new Promise<number | null>((resolve) => run.on('close', (c) => resolve(c)));
    await until('the workload to start', () => existsSync(started) || run.exitCode !== null);
    expect(run.exitCode, stderr()).toBeNull();

    // The run's processes now: its workers (each in its own process group), launcher, workload.
    const procs = descendants(run.pid!);
    const leaders = [...procs.keys()].filter((pid) => stat(pid)?.pgrp === pid);
    expect(leaders.length).toBeGreaterThan(0);

    await redis.stop('SIGKILL');
    writeFileSync(go, '');

    // Within a minute of its workload's end, or it is a hang.
    let code: number | null | undefined;
    void exited.then((c) => (code = c));
    await until('scalpels run to end', () => code !== undefined, 60_000).catch((e: Error) => {
      run.kill('SIGKILL');
      throw new Error(`${e.message}; stderr so far: ${stderr()}`);
    });
    expect(code, stderr()).not.toBe(0);
    expect(stderr()).toMatch(/store .*Redis unreachable/);
    expect(stderr()).not.toMatch(/internal error/);
    // No process of the run survives it: workers, their children, launcher.
    await allGone(procs);
  }, 180_000);

  it('a second Ctrl-C while the tracers stop quits at once, killing their workers', async () => {
    const redis = await startRedis();
    const started = join(scratch, 'started-2');
    const { run, stderr } = runOnStore(redis, `touch ${started}; exec sleep 600`);
    let code: number | null | undefined;
    run.on('close', (c) => (code = c));
    await until('the workload to start', () => existsSync(started) || code !== undefined);
    expect(code, stderr()).toBeUndefined();
    const procs = descendants(run.pid!);
    // The store dies, so stopping is slow; Ctrl-C (to run alone: not a terminal) until it quits.
    await redis.stop('SIGKILL');
    await until(
      'scalpels run to quit',
      () => {
        if (code === undefined) run.kill('SIGINT');
        return code !== undefined;
      },
      60_000,
    );
    expect(code, stderr()).toBe(130);
    expect(stderr()).toMatch(/quit before the tracers were stopped/);
    await allGone(procs);
  }, 180_000);
});
