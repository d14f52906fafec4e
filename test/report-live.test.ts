import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, ok, scalpels, scratchDir } from './report-helpers.js';

const dir = scratchDir('scalpels-report-live-');

interface Task {
  id: string;
  status: string;
}
interface Report {
  task: { id: string; startedAt: string; stoppedAt: string };
  markers: { ts: string; text: string; node: string | null }[];
}

async function runningTask(store: string): Promise<Task> {
  for (let i = 0; i < 200; i++) {
    const tasks = JSON.parse(await ok(['tasks', '--json', '--store', store])) as Task[];
    const t = tasks.find((x) => x.status === 'running');
    if (t) return t;
    await sleep(100);
  }
  throw new Error('no task started');
}

/** Busy Python for about `seconds`, so the task is running while the test marks and watches. */
const busy = (seconds: number): string[] => [
  'python3',
  '-c',
  `import time\nend = time.time() + ${seconds}\nwhile time.time() < end: sum(range(10000))`,
];

describe('scalpels mark and watch on a running task', () => {
  it('marks the running task, watches it refresh until it stops, and the report has the marker', async () => {
    const store = `sqlite://${join(dir, 'live.db')}`;
    const run = execa(
      process.execPath,
      [
        cli,
        'run',
        '-t',
        'proc',
        '--set',
        'proc.interval=200ms',
        '--store',
        store,
        '--format',
        'none',
        '--',
        ...busy(5),
      ],
      { reject: false, env: { NO_COLOR: '1' } },
    );
    const task = await runningTask(store);
    const marked = await ok(['mark', 'load starts', '--store', store]);
    expect(marked).toMatch(
      new RegExp(`^marked ${task.id} at \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z: load starts$`),
    );
    await sleep(1200);
    const once = await ok(['watch', '--once', '--store', store]);
    expect(once).toContain(`task ${task.id}`);
    expect(once).toMatch(/\bproc\s+proc\.cpu\.user\s/);
    expect(once).not.toContain('\x1b');
    // A live watch refreshes each interval and ends with the task.
    const watch = await execa(
      process.execPath,
      [cli, 'watch', task.id, '--interval', '500ms', '--store', store],
      { reject: false, env: { NO_COLOR: '1' }, timeout: 60_000 },
    );
    expect(watch.exitCode, watch.stderr).toBe(0);
    const frames = watch.stdout.split('\n').filter((l) => l.startsWith(`task ${task.id}`));
    expect(frames.length).toBeGreaterThanOrEqual(2);
    expect(frames.at(-1), watch.stdout.slice(-600)).toMatch(/ stopped /);
    for (const l of watch.stdout.split('\n')) expect(l.length).toBeLessThan(200);
    const done = await run;
    expect(done.exitCode, done.stderr).toBe(0);
    const report = JSON.parse(
      await ok(['report', task.id, '--format', 'json', '--store', store]),
    ) as Report;
    expect(report.markers).toHaveLength(1);
    const m = report.markers[0]!;
    expect(m.text).toBe('load starts');
    expect(Date.parse(m.ts)).toBeGreaterThan(Date.parse(report.task.startedAt));
    expect(Date.parse(m.ts)).toBeLessThan(Date.parse(report.task.stoppedAt));
    // The table report lists it too.
    expect(await ok(['report', task.id, '--store', store])).toContain(
      `marker ${m.ts}  load starts`,
    );
  });

  it('refuses to mark when nothing runs, in one line', async () => {
    const r = await scalpels(['mark', 'nothing', '--store', `sqlite://${join(dir, 'empty.db')}`]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/no running task/);
  });
});

describe('scalpels mark through the agent (RPC method mark)', () => {
  const procs: ReturnType<typeof spawn>[] = [];
  afterAll(() => {
    for (const p of procs) p.kill('SIGKILL');
  });

  it('marks the task the agent runs, with the agent node name', async () => {
    const socket = join(dir, 'agent', 'agent.sock');
    const store = `sqlite://${join(dir, 'agent.db')}`;
    const agent = spawn(
      process.execPath,
      [cli, 'agent', '--socket', socket, '--store', store, '--node', 'n1'],
      {
        env: { ...process.env, NO_COLOR: '1' },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    procs.push(agent);
    let log = '';
    await new Promise<void>((resolve, reject) => {
      agent.stderr!.on('data', (c: Buffer) => {
        log += c.toString();
        if (log.includes('socket ')) resolve();
      });
      agent.once('exit', () => reject(new Error(`agent exited: ${log}`)));
    });
    const target = spawn('sleep', ['30'], { stdio: 'ignore' });
    procs.push(target);
    const url = `unix://${socket}`;
    const id = (
      await ok([
        'start',
        '-t',
        'proc',
        '--pid',
        String(target.pid),
        '--agent',
        url,
        '--store',
        store,
      ])
    ).trim();
    const marked = JSON.parse(await ok(['mark', 'via agent', '--agent', url, '--json'])) as {
      task: string;
      text: string;
    };
    expect(marked.text).toBe('via agent');
    expect(id).toContain(marked.task);
    await ok(['stop', '--agent', url, '--store', store]);
    const report = JSON.parse(
      await ok(['report', '--last', '--format', 'json', '--store', store]),
    ) as Report;
    expect(report.markers.map((m) => [m.text, m.node])).toEqual([['via agent', 'n1']]);
    // Bad params are refused by the agent, in one line.
    const bad = await scalpels(['mark', 'x'.repeat(501), '--agent', url]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/longer than 500/);
  });
});
