import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '@scalpels/core/testing';
import { RedisStore, decodeBatch, fieldMap } from '@scalpels/core/engine';
import { hasRedisServer, privateRedisServers } from './private-redis.js';

const cli = fileURLToPath(new URL('../cli/dist/main.js', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-cluster-'));
const startRedis = privateRedisServers();
// Cluster commands are signed: every agent and front end of a cluster holds the same key file.
const keyFile = join(scratch, 'cluster.key');
writeFileSync(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
const procs: ResultPromise[] = [];
afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await Promise.allSettled(procs);
  rmSync(scratch, { recursive: true, force: true });
});

/** Wrapped in an object: an execa process is a thenable, and returning it would await its exit. */
async function agent(redis: string, node: string): Promise<{ proc: ResultPromise }> {
  const proc = execa(
    process.execPath,
    [
      cli,
      'agent',
      '--redis',
      redis,
      '--node',
      node,
      '--socket',
      join(scratch, `${node}.sock`),
      '--heartbeat',
      '500ms',
      '--cluster-key-file',
      keyFile,
    ],
    {
      reject: false,
      all: true,
      env: { NO_COLOR: '1' },
    },
  );
  procs.push(proc);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    proc.all!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('cluster member')) resolve();
    });
    void proc.then(() => reject(new Error(`agent ${node} exited: ${out}`)));
  });
  return { proc };
}

const scalpels = (args: string[], redis: string) =>
  runCli([...args, '--redis', redis, '--cluster-key-file', keyFile], {
    cli,
    env: { NO_COLOR: '1' },
    timeoutMs: 0,
  });

/**
 * Polls `probe` until it returns a value (not undefined), or fails after `timeoutMs`: the host is
 * busy, so a fixed sleep is either too short there or wasted here.
 */
async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 120_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function lastReport(redis: string): Promise<Report | undefined> {
  const r = await scalpels(['report', '--last', '--format', 'json'], redis);
  if (r.exitCode !== 0) return undefined;
  try {
    return JSON.parse(r.stdout) as Report;
  } catch {
    return undefined;
  }
}

async function nodeStatus(redis: string): Promise<Record<string, string>> {
  const r = await scalpels(['nodes', '--json'], redis);
  const nodes = JSON.parse(r.stdout) as { node: string; status: string }[];
  return Object.fromEntries(nodes.map((n) => [n.node, n.status]));
}

interface Report {
  task: { status: string; nodes: string[] };
  combined?: {
    tracer: string;
    nodes: string[];
    series: { name: string; sum: number; points: number }[];
  }[];
  tracers: {
    node: string;
    status: string;
    records: number;
    dropped: number;
    error: string | null;
    series: { name: string; points: number; sum: number }[];
  }[];
}

describe.runIf(hasRedisServer())('multi-node through Redis', () => {
  it('three agents: one start --nodes all, stop, and a report with every node', async () => {
    const { url: redis } = await startRedis();
    const agents = (
      await Promise.all(['node-a', 'node-b', 'node-c'].map((n) => agent(redis, n)))
    ).map((a) => a.proc);
    const nodes = JSON.parse((await scalpels(['nodes', '--json'], redis)).stdout) as {
      node: string;
      status: string;
    }[];
    expect(nodes.map((n) => `${n.node}:${n.status}`)).toEqual([
      'node-a:alive',
      'node-b:alive',
      'node-c:alive',
    ]);
    const started = await scalpels(
      ['start', '--nodes', 'all', '-t', 'proc', '--set', 'proc.interval=200ms'],
      redis,
    );
    expect(started.exitCode, started.stderr).toBe(0);
    // Every node's tracer has stored records (instead of a fixed 1.5 s).
    await until('records from all three nodes', async () => {
      const r = await lastReport(redis);
      return r && r.tracers.length === 3 && r.tracers.every((t) => t.records > 0) ? r : undefined;
    });
    const status = JSON.parse((await scalpels(['status', '--json'], redis)).stdout) as {
      tasks: { node: string }[];
    };
    expect(status.tasks.map((t) => t.node).sort()).toEqual(['node-a', 'node-b', 'node-c']);
    const stopped = await scalpels(['stop', '--last'], redis);
    expect(stopped.exitCode, stopped.stderr).toBe(0);
    const report = JSON.parse(
      (await scalpels(['report', '--last', '--format', 'json'], redis)).stdout,
    ) as Report;
    expect(report.task.status).toBe('stopped');
    expect(report.task.nodes).toEqual(['node-a', 'node-b', 'node-c']);
    expect(report.tracers.map((t) => t.node).sort()).toEqual(['node-a', 'node-b', 'node-c']);
    for (const t of report.tracers) {
      expect(t.status).toBe('stopped');
      expect(t.records).toBeGreaterThan(0);
    }
    // Combined figures: a counter's total over the cluster is the sum of the nodes' totals.
    const sumOf = (series: Report['tracers'][0]['series']) =>
      series.find((s) => s.name === 'kernel.context_switches')!.sum;
    const combined = report.combined!.find((c) => c.tracer === 'proc')!;
    expect(combined.nodes.sort()).toEqual(['node-a', 'node-b', 'node-c']);
    expect(sumOf(combined.series)).toBeCloseTo(
      report.tracers.reduce((a, t) => a + sumOf(t.series), 0),
      6,
    );
    const text = await scalpels(['report', '--last'], redis);
    expect(text.stdout).toMatch(
      /^proc · .* combined over 3 nodes \(node-[abc], node-[abc], node-[abc]\)/m,
    );
    for (const a of agents) a.kill('SIGTERM');
    await Promise.all(agents);
  });

  it('a node killed with SIGKILL is lost within three heartbeats and its tracers are interrupted', async () => {
    const { url: redis } = await startRedis();
    const [a, b] = (await Promise.all([agent(redis, 'node-a'), agent(redis, 'node-b')])).map(
      (x) => x.proc,
    );
    expect(
      (
        await scalpels(
          ['start', '--nodes', 'all', '-t', 'proc', '--set', 'proc.interval=200ms'],
          redis,
        )
      ).exitCode,
    ).toBe(0);
    await until('both tracers running', async () => {
      const r = await lastReport(redis);
      return r && r.tracers.length === 2 && r.tracers.every((t) => t.status === 'running')
        ? r
        : undefined;
    });
    b!.kill('SIGKILL');
    await b;
    // Lost once three heartbeat periods (500 ms) pass without one: polled, not slept.
    const nodes = await until('node-b lost', async () => {
      const n = await nodeStatus(redis);
      return n['node-b'] === 'lost' ? n : undefined;
    });
    expect(nodes['node-a']).toBe('alive');
    const report = await until('node-b tracer interrupted', async () => {
      const r = await lastReport(redis);
      return r?.tracers.find((t) => t.node === 'node-b')?.status === 'interrupted' ? r : undefined;
    });
    const lost = report.tracers.find((t) => t.node === 'node-b')!;
    expect(lost.status).toBe('interrupted');
    expect(lost.error).toMatch(/node node-b lost/);
    expect(report.tracers.find((t) => t.node === 'node-a')!.status).toBe('running');
    await scalpels(['stop', '--last'], redis);
    a!.kill('SIGTERM');
    await a;
  });

  it('Redis down in the middle of a task: the agent keeps tracing, catches up in order, drops nothing', async () => {
    const outageMs = Number(process.env.SCALPELS_OUTAGE_MS ?? 20_000);
    // Persistent, so that what was stored before the outage is there after the restart.
    const server = await startRedis({ persist: true });
    const redis = server.url;
    const { proc: node } = await agent(redis, 'node-a');
    const started = await scalpels(
      ['start', '--nodes', 'node-a', '-t', 'proc', '--set', 'proc.interval=250ms'],
      redis,
    );
    expect(started.exitCode, started.stderr).toBe(0);
    const taskId = started.stdout.trim();
    await until('first records stored', async () => {
      const r = await scalpels(['report', taskId, '--format', 'json'], redis);
      return r.exitCode === 0 && (JSON.parse(r.stdout) as Report).tracers[0]?.records
        ? true
        : undefined;
    });
    await server.stop('SIGTERM');
    await new Promise((r) => setTimeout(r, outageMs));
    await server.restart();
    // Reconnected: its heartbeat is back (catching up is what stop and the report check).
    await until('node-a alive again', async () =>
      (await nodeStatus(redis).catch(() => ({}) as Record<string, string>))['node-a'] === 'alive'
        ? true
        : undefined,
    );
    expect((await scalpels(['stop', taskId], redis)).exitCode).toBe(0);
    const report = JSON.parse(
      (await scalpels(['report', taskId, '--format', 'json'], redis)).stdout,
    ) as Report;
    const t = report.tracers[0]!;
    expect(t.status).toBe('stopped');
    expect(t.dropped).toBe(0);
    // One kernel.context_switches point per interval: the timestamps must have no hole.
    const store = new RedisStore(redis);
    expect(await store.findTask(taskId)).toBeDefined(); // also waits for the connection
    const entries = await store.redis.xrange(store.key.records(taskId), '-', '+');
    const ts: number[] = [];
    for (const [, fields] of entries) {
      const b = decodeBatch(fieldMap(fields).b!);
      const idx = b.s.findIndex(([name]) => name === 'kernel.context_switches');
      for (const [i, at] of b.p) if (i === idx) ts.push(at);
    }
    await store.close();
    // The points span the outage, and none of the gaps between them is outage-sized: a lost
    // stretch would leave a hole of about outageMs; a busy host only delays a sample or two.
    expect(ts.at(-1)! - ts[0]!).toBeGreaterThan(outageMs);
    const gaps = ts.slice(1).map((x, i) => x - ts[i]!);
    expect(Math.max(...gaps)).toBeLessThan(Math.max(2000, outageMs / 4));
    expect(gaps.every((g) => g > 0)).toBe(true); // in order
    node.kill('SIGTERM');
    await node;
  });
});
