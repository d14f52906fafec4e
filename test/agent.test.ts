import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { execa, type ResultPromise } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { AgentClient } from '@scalpels/core/engine';
import { runCli } from '@scalpels/core/testing';
import { childrenOf, startAgent as startAgentProcess } from './agent-process.js';

const cli = fileURLToPath(new URL('../cli/dist/main.js', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-agent-'));
// Where the agents make their scratch folders (mkdtemp under a private folder, never /tmp).
const runtime = join(scratch, 'runtime');
const agents: ResultPromise[] = [];
afterAll(async () => {
  for (const a of agents) a.kill('SIGKILL');
  await Promise.allSettled(agents);
  rmSync(scratch, { recursive: true, force: true });
});

let n = 0;
interface Agent {
  proc: ResultPromise;
  /** Everything the agent printed so far. */
  output: () => string;
  socket: string;
  store: string;
  url: string;
}

async function startAgent(
  opts: { store?: string; socket?: string; extra?: string[] } = {},
): Promise<Agent> {
  const id = ++n;
  const socket = opts.socket ?? join(scratch, `run-${id}`, 'agent.sock');
  const store = opts.store ?? join(scratch, `store-${id}.db`);
  const { proc, output } = await startAgentProcess(
    agents,
    ['--socket', socket, '--store', `sqlite://${store}`, ...(opts.extra ?? [])],
    { SCALPELS_RUNTIME_DIR: runtime },
  );
  return { proc, socket, store, url: `unix://${socket}`, output };
}

/** Waits on a condition (polling), up to a generous bound for a busy host. */
async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function scalpels(args: string[], agent: Agent) {
  return runCli([...args, '--agent', agent.url, '--store', `sqlite://${agent.store}`], {
    cli,
    env: { NO_COLOR: '1' },
    timeoutMs: 0,
  });
}

/** A target process; killing it at the end is expected, not an error. */
const sleeper = (seconds: number) => execa('sleep', [String(seconds)], { reject: false });

const alive = (pid: number): boolean => {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return st.slice(st.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
};

function rawRequest(
  port: number,
  body: object,
): Promise<{ result?: unknown; error?: { code: number; message: string } }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(`${JSON.stringify(body)}\n`));
    let buf = '';
    s.on('data', (c) => {
      buf += c.toString();
      if (buf.includes('\n')) {
        s.destroy();
        resolve(JSON.parse(buf.split('\n')[0]!));
      }
    });
    s.on('error', reject);
  });
}

describe('scalpels agent', () => {
  it('start → status → stop → report, over a 0600 unix socket', async () => {
    const agent = await startAgent();
    expect(statSync(agent.socket).mode & 0o777).toBe(0o600);
    const target = sleeper(30);
    try {
      const started = await scalpels(
        ['start', '-t', 'proc', '--pid', String(target.pid), '--set', 'proc.interval=200ms'],
        agent,
      );
      expect(started.exitCode, started.stderr).toBe(0);
      const taskId = started.stdout.trim();
      // Until the worker sent its first records (a condition, not a fixed wait).
      await until(async () => {
        const s = JSON.parse((await scalpels(['status', '--json'], agent)).stdout) as {
          tasks: { tracers: { records: number }[] }[];
        };
        return (s.tasks[0]?.tracers[0]?.records ?? 0) > 0;
      });
      const status = JSON.parse((await scalpels(['status', '--json'], agent)).stdout) as {
        tasks: {
          id: string;
          tracers: {
            tracer: string;
            status: string;
            pid: number;
            uptimeMs: number;
            records: number;
          }[];
        }[];
      };
      const tr = status.tasks.find((t) => t.id === taskId)!.tracers[0]!;
      expect(tr).toMatchObject({ tracer: 'proc', status: 'running' });
      expect(alive(tr.pid)).toBe(true);
      expect(tr.uptimeMs).toBeGreaterThan(0);
      expect(tr.records).toBeGreaterThan(0);
      const stopped = await scalpels(['stop', '--last'], agent);
      expect(stopped.stdout).toBe(`task ${taskId}: proc stopped`);
      expect(alive(tr.pid)).toBe(false);
      const report = JSON.parse(
        (await scalpels(['report', '--last', '--format', 'json'], agent)).stdout,
      ) as {
        task: { status: string };
        tracers: {
          status: string;
          records: number;
          series: { name: string; labels: Record<string, string> }[];
        }[];
      };
      expect(report.task.status).toBe('stopped');
      expect(report.tracers[0], JSON.stringify(report.tracers[0])).toMatchObject({
        status: 'stopped',
      });
      expect(report.tracers[0]!.records).toBeGreaterThan(0);
      expect(
        report.tracers[0]!.series.some(
          (s) => s.name === 'proc.rss' && s.labels.pid === String(target.pid),
        ),
      ).toBe(true);
      // Named by --agent alone, report reads the agent's store (not this user's default one).
      const viaAgent = await runCli(
        ['report', '--last', '--format', 'json', '--agent', agent.url],
        { cli, env: { NO_COLOR: '1', XDG_DATA_HOME: join(scratch, 'empty-home') }, timeoutMs: 0 },
      );
      expect(viaAgent.exitCode, viaAgent.stderr).toBe(0);
      expect((JSON.parse(viaAgent.stdout) as { task: { id: string } }).task.id).toBe(taskId);
    } finally {
      target.kill();
      agent.proc.kill('SIGTERM');
      await agent.proc;
    }
    expect(existsSync(agent.socket)).toBe(false);
  });

  it('says in one line that no agent is reachable, and how to start one', async () => {
    const r = await runCli(
      ['start', '-t', 'proc', '--agent', `unix://${join(scratch, 'none.sock')}`],
      { cli, timeoutMs: 0 },
    );
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(
      /cannot reach the agent .*no agent is listening; start one with `scalpels agent`/,
    );
  });

  it('a TCP agent refuses requests without the right token and accepts the right one', async () => {
    const tokenFile = join(scratch, 'token');
    writeFileSync(tokenFile, 'a-long-enough-secret-token-1234\n', { mode: 0o600 });
    const port = 20000 + Math.floor(Math.random() * 20000);
    const agent = await startAgent({
      extra: ['--listen', `127.0.0.1:${port}`, '--token-file', tokenFile],
    });
    try {
      const none = await rawRequest(port, { jsonrpc: '2.0', id: 1, method: 'ping' });
      expect(none.error?.message).toMatch(/unauthorized/);
      const wrong = await rawRequest(port, {
        jsonrpc: '2.0',
        id: 2,
        method: 'ping',
        token: 'a-long-enough-secret-token-1235',
      });
      expect(wrong.error?.message).toMatch(/unauthorized/);
      const right = await rawRequest(port, {
        jsonrpc: '2.0',
        id: 3,
        method: 'ping',
        token: 'a-long-enough-secret-token-1234',
      });
      expect(right.error).toBeUndefined();
      expect(right.result).toMatchObject({ pid: agent.proc.pid });
      // The CLI over TCP with the token file works; without it, it is refused before connecting.
      const status = await runCli(
        ['status', '--agent', `tcp://127.0.0.1:${port}`, '--token-file', tokenFile],
        { cli, timeoutMs: 0 },
      );
      expect(status.exitCode, status.stderr).toBe(0);
      const noToken = await runCli(['status', '--agent', `tcp://127.0.0.1:${port}`], {
        cli,
        env: { SCALPELS_TOKEN_FILE: '' },
        timeoutMs: 0,
      });
      expect(noToken.exitCode).toBe(1);
      // A SQLite store is a file on the agent's node: a reader elsewhere is told so, in one line.
      const remoteReport = await runCli(
        ['report', '--last', '--agent', `tcp://127.0.0.1:${port}`, '--token-file', tokenFile],
        { cli, timeoutMs: 0 },
      );
      expect(remoteReport.exitCode).toBe(1);
      expect(remoteReport.stderr.trim()).toMatch(
        /^scalpels: the agent at tcp:\/\/127\.0\.0\.1:\d+ keeps its tasks in sqlite:\/\/\S+ on its own node: read them there, or give --store$/,
      );
    } finally {
      agent.proc.kill('SIGTERM');
      await agent.proc;
    }
    expect(agent.output()).toMatch(/refused ping from 127\.0\.0\.1:\d+: bad or missing token/);
  });

  it('refuses unknown plugins, wrongly typed options, smuggled commands and extra fields, spawning nothing', async () => {
    const agent = await startAgent();
    const c = new AgentClient(agent.url);
    const marker = join(scratch, 'pwned');
    try {
      await expect(c.call('start', { tracers: [{ name: 'nosuch' }] })).rejects.toThrow(
        /unknown tracer "nosuch"/,
      );
      await expect(
        c.call('start', { tracers: [{ name: 'proc', options: { interval: true } }] }),
      ).rejects.toThrow(/proc: option "interval"/);
      await expect(
        c.call('start', {
          tracers: [{ name: 'proc', options: { interval: `1s; touch ${marker}` } }],
        }),
      ).rejects.toThrow(/expected a duration/);
      await expect(
        c.call('start', { tracers: [{ name: 'proc', options: { interval: '$(touch /tmp/x)' } }] }),
      ).rejects.toThrow(/expected a duration/);
      await expect(
        c.call('start', { tracers: [{ name: 'proc', options: { nosuch: 'x' } }] }),
      ).rejects.toThrow(/unknown option "nosuch"/);
      await expect(
        c.call('start', { tracers: [{ name: 'proc', argv: ['sh', '-c', `touch ${marker}`] }] }),
      ).rejects.toThrow(/unknown field argv/);
      await expect(
        c.call('start', { tracers: [{ name: 'proc' }], command: ['sh'] }),
      ).rejects.toThrow(/unknown field command/);
      await expect(c.call('start', { tracers: [{ name: '../../bin/sh' }] })).rejects.toThrow(
        /bad tracer name/,
      );
      await expect(
        c.call('start', { tracers: [{ name: 'proc' }], target: { pids: ['1; reboot'] } }),
      ).rejects.toThrow(/positive integers/);
      await expect(c.call('frobnicate')).rejects.toThrow(/unknown method/);
      expect(childrenOf(agent.proc.pid!)).toEqual([]);
      expect(existsSync(marker)).toBe(false);
      const tasks = JSON.parse((await scalpels(['tasks', '--json'], agent)).stdout) as unknown[];
      expect(tasks).toEqual([]);
    } finally {
      c.close();
      agent.proc.kill('SIGTERM');
      await agent.proc;
    }
  });

  it('50 concurrent start/stop clients leave no orphan, nothing stuck and a consistent store', async () => {
    const agent = await startAgent();
    const target = sleeper(120);
    try {
      const results = await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const c = new AgentClient(agent.url);
          try {
            const { taskId } = await c.call<{ taskId: string }>('start', {
              tracers: [{ name: 'proc', options: { interval: '100ms', system: i % 2 === 0 } }],
              target: { pids: [target.pid] },
              name: `burst-${i}`,
            });
            const stopped = await c.call<{ taskId: string; tracers: { status: string }[] }>(
              'stop',
              { task: taskId },
            );
            return { taskId, status: stopped.tracers[0]!.status };
          } finally {
            c.close();
          }
        }),
      );
      expect(new Set(results.map((r) => r.taskId)).size).toBe(50);
      expect(results.every((r) => r.status === 'stopped')).toBe(true);
      expect(childrenOf(agent.proc.pid!)).toEqual([]);
      const tasks = JSON.parse((await scalpels(['tasks', '--json'], agent)).stdout) as {
        status: string;
        tracers: { status: string }[];
      }[];
      expect(tasks).toHaveLength(50);
      expect(
        tasks.every(
          (t) => t.status === 'stopped' && t.tracers.every((tr) => tr.status === 'stopped'),
        ),
      ).toBe(true);
    } finally {
      target.kill();
      agent.proc.kill('SIGTERM');
      await agent.proc;
    }
  });

  it('after kill -9 of the agent, a new agent kills the orphaned workers, marks them interrupted and keeps the records', async () => {
    const first = await startAgent();
    const target = sleeper(60);
    const Database = createRequire(import.meta.url)('better-sqlite3');
    try {
      const started = await scalpels(
        ['start', '-t', 'proc', '--pid', String(target.pid), '--set', 'proc.interval=100ms'],
        first,
      );
      const taskId = started.stdout.trim();
      const samples = (): number => {
        const db = new Database(first.store, { readonly: true });
        try {
          return Number(db.prepare('SELECT count(*) AS n FROM samples').get().n);
        } finally {
          db.close();
        }
      };
      await until(() => samples() > 0); // a batch is in the store before the kill
      const status = JSON.parse((await scalpels(['status', '--json'], first)).stdout) as {
        tasks: { tracers: { pid: number }[] }[];
      };
      const workerPid = status.tasks[0]!.tracers[0]!.pid;
      const scratchDirs = (): string[] =>
        readdirSync(join(runtime, 'scratch')).filter((d) => d.startsWith(`tracer-${taskId}-1-`));
      expect(scratchDirs()).toHaveLength(1);
      const runtimeDir = join(runtime, 'scratch', scratchDirs()[0]!);
      expect(statSync(runtimeDir).mode & 0o777).toBe(0o700);
      first.proc.kill('SIGKILL');
      await first.proc;
      expect(alive(workerPid)).toBe(true); // its own process group: it outlived the agent
      const flushed = samples();
      expect(flushed).toBeGreaterThan(0);

      const second = await startAgent({ store: first.store, socket: first.socket });
      try {
        expect(alive(workerPid)).toBe(false);
        expect(existsSync(runtimeDir)).toBe(false); // its scratch folder is gone too
        const report = JSON.parse(
          (await scalpels(['report', taskId, '--format', 'json'], second)).stdout,
        ) as {
          task: { status: string };
          tracers: { status: string; error: string; series: { points: number }[] }[];
        };
        expect(report.task.status).toBe('interrupted');
        expect(report.tracers[0]!.status).toBe('interrupted');
        const points = report.tracers[0]!.series.reduce((a, s) => a + s.points, 0);
        expect(points).toBeGreaterThanOrEqual(flushed);
      } finally {
        second.proc.kill('SIGTERM');
        await second.proc;
      }
    } finally {
      target.kill();
    }
  });

  it('restarts a crashed worker with backoff when asked, recording each restart', async () => {
    const agent = await startAgent();
    const target = sleeper(60);
    const c = new AgentClient(agent.url);
    try {
      const { taskId } = await c.call<{ taskId: string }>('start', {
        tracers: [{ name: 'proc', options: { interval: '100ms' } }],
        target: { pids: [target.pid] },
        restarts: 2,
      });
      type S = { tasks: { tracers: { pid: number; restarts: number; status: string }[] }[] };
      const first = (await c.call<S>('status')).tasks[0]!.tracers[0]!;
      process.kill(first.pid, 'SIGKILL');
      let now = first;
      await until(async () => {
        now = (await c.call<S>('status')).tasks[0]!.tracers[0]!;
        return now.restarts === 1 && now.status === 'running' && now.pid !== first.pid;
      }).catch(() => undefined); // the assertion below says what was seen
      expect(now).toMatchObject({ restarts: 1, status: 'running' });
      expect(alive(now.pid)).toBe(true);
      await c.call('stop', { task: taskId });
      const report = JSON.parse(
        (await scalpels(['report', taskId, '--format', 'json'], agent)).stdout,
      ) as { tracers: { status: string; error: string | null }[] };
      expect(report.tracers[0], JSON.stringify(report.tracers[0])).toMatchObject({
        status: 'stopped',
      });
    } finally {
      c.close();
      target.kill();
      agent.proc.kill('SIGTERM');
      await agent.proc;
    }
  });
});
