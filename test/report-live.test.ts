import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '@scalpels/core/testing';
import { cli, ok, scalpels, scratchDir } from './report-helpers.js';

const dir = scratchDir('scalpels-report-live-');

interface Task {
  id: string;
  status: string;
}
interface Report {
  task: { id: string; startedAt: string; stoppedAt: string };
  markers: { ts: string; text: string; node: string | null }[];
  phases?: {
    label: string;
    from: string;
    to: string;
    totals: { tracer: string; name: string; sum: number }[];
  }[];
}

async function runningTask(store: string): Promise<Task> {
  let task: Task | undefined;
  await waitFor('a running task', async () => {
    const tasks = JSON.parse(await ok(['tasks', '--json', '--store', store])) as Task[];
    task = tasks.find((x) => x.status === 'running');
    return task !== undefined;
  });
  return task!;
}

/** Busy Python until `stopFile` exists (at most a minute): the test decides when the task ends. */
const busyUntil = (stopFile: string): string[] => [
  'python3',
  '-c',
  `import os, time\nend = time.time() + 60\nwhile time.time() < end and not os.path.exists(${JSON.stringify(stopFile)}): sum(range(10000))`,
];

describe('scalpels mark and watch on a running task', () => {
  it('marks the running task, watches it refresh until it stops, and the report has the marker', async () => {
    const store = `sqlite://${join(dir, 'live.db')}`;
    const stopFile = join(dir, 'stop-live');
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
        ...busyUntil(stopFile),
      ],
      { reject: false, env: { NO_COLOR: '1' } },
    );
    const task = await runningTask(store);
    const marked = await ok(['mark', 'load starts', '--store', store]);
    expect(marked).toMatch(
      new RegExp(`^marked ${task.id} at \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z: load starts$`),
    );
    // The first samples reach the store after an interval or two (longer on a busy host).
    let once = '';
    await waitFor('proc samples in watch --once', async () => {
      once = await ok(['watch', '--once', '--store', store]);
      return /\bproc\s+proc\.cpu\.user\s/.test(once);
    });
    expect(once).toContain(`task ${task.id}`);
    expect(once).toMatch(/\bproc\s+proc\.cpu\.user\s/);
    expect(once).not.toContain('\x1b');
    // A live watch refreshes each interval and ends with the task.
    const watching = execa(
      process.execPath,
      [cli, 'watch', task.id, '--interval', '500ms', '--store', store],
      { reject: false, env: { NO_COLOR: '1' }, timeout: 60_000 },
    );
    let seen = '';
    await new Promise<void>((resolve) => {
      watching.stdout!.on('data', (c: Buffer) => {
        seen += c.toString();
        if (seen.split(`task ${task.id}`).length > 2) resolve();
      });
      void watching.then(() => resolve());
    });
    writeFileSync(stopFile, '');
    const watch = await watching;
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
    // Phases: before and after the marker; the CPU time of the traced process splits across them.
    expect(report.phases?.map((p) => p.label)).toEqual(['(start)', 'load starts']);
    expect(report.phases![1]!.from).toBe(m.ts);
    const cpu = (i: number) =>
      report.phases![i]!.totals.find((t) => t.tracer === 'proc' && t.name === 'proc.cpu.user')
        ?.sum ?? 0;
    expect(cpu(1)).toBeGreaterThan(0);
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

  it('marks the task the agent runs, with the agent node name; serves /metrics on loopback', async () => {
    const socket = join(dir, 'agent', 'agent.sock');
    const metricsPort = 20_000 + (process.pid % 20_000);
    const store = `sqlite://${join(dir, 'agent.db')}`;
    const agent = spawn(
      process.execPath,
      [
        cli,
        'agent',
        '--socket',
        socket,
        '--store',
        store,
        '--node',
        'n1',
        '--metrics',
        `127.0.0.1:${metricsPort}`,
      ],
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
    expect(log).toContain(`metrics on http://127.0.0.1:${metricsPort}/metrics`);
    // OpenMetrics of the running task, growing while it runs.
    let body = '';
    await waitFor(
      'proc series in /metrics',
      async () => {
        const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toMatch(
          /^application\/openmetrics-text; version=1\.0\.0/,
        );
        body = await res.text();
        return /scalpels_proc_cpu_user_seconds_total\{/.test(body);
      },
      120_000,
      200,
    );
    expect(body).toMatch(
      new RegExp(
        `^scalpels_proc_cpu_user_seconds_total\\{task="${marked.task}",tracer="proc",node="n1",`,
        'm',
      ),
    );
    expect(body.trimEnd().endsWith('# EOF')).toBe(true);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/other`)).status).toBe(404);
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

  it('refuses to serve /metrics on a non-loopback address', async () => {
    const r = await scalpels([
      'agent',
      '--socket',
      join(dir, 'agent2', 'agent.sock'),
      '--store',
      `sqlite://${join(dir, 'agent2.db')}`,
      '--metrics',
      '0.0.0.0:9464',
    ]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/loopback only/);
  });
});
