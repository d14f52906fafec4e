import { hostname } from 'node:os';
import type { Cluster, NodeState, Store, TaskStatus } from '@scalpels/core/engine';
import { loadEngine, paint, type GlobalArgs } from '../context.js';
import type { StartArgs } from './agent.js';
import { parseLabels, tracerRequests } from './run.js';

export interface ClusterArgs extends GlobalArgs {
  redis?: string;
}

export function redisUrlOf(args: ClusterArgs): string | undefined {
  return args.redis ?? process.env.SCALPELS_REDIS;
}

async function open(
  args: ClusterArgs,
): Promise<{ cluster: Cluster; store: Store; engine: Awaited<ReturnType<typeof loadEngine>> }> {
  const engine = await loadEngine();
  const url = redisUrlOf(args);
  if (!url) throw new engine.UserError('give --redis redis://host:port/db (or SCALPELS_REDIS)');
  const cluster = new engine.Cluster(url);
  const store = engine.openStore(args.store ?? url);
  return { cluster, store, engine };
}

async function closeAll(cluster: Cluster, store: Store): Promise<void> {
  await cluster.close();
  await store.close();
}

/** Marks live tracers of nodes that stopped sending heartbeats as `interrupted`. */
export async function markLostNodes(nodes: NodeState[], store: Store): Promise<number> {
  const lost = new Map(nodes.filter((n) => !n.alive).map((n) => [n.node, n]));
  if (lost.size === 0) return 0;
  let marked = 0;
  for (const t of await store.liveTracers()) {
    const n = lost.get(t.node);
    if (!n) continue;
    await store.updateTracer(t.id, {
      status: 'interrupted',
      error: `node ${t.node} lost: no heartbeat for ${Math.round(n.heartbeatAgeMs / 1000)} s`,
      stoppedAt: Date.now(),
    });
    marked++;
  }
  return marked;
}

export async function nodesCommand(args: ClusterArgs): Promise<number> {
  const { cluster, store, engine } = await open(args);
  try {
    const nodes = await cluster.nodes();
    await markLostNodes(nodes, store);
    if (args.json) {
      process.stdout.write(
        `${JSON.stringify(
          nodes.map((n) => ({ ...n, status: n.alive ? 'alive' : 'lost' })),
          null,
          2,
        )}\n`,
      );
      return 0;
    }
    if (nodes.length === 0) {
      process.stdout.write(
        `no agent registered in ${cluster} (start one: scalpels agent --redis URL --node NAME)\n`,
      );
      return 0;
    }
    const rows = nodes.map((n) => [
      n.node,
      n.alive ? 'alive' : 'lost',
      `${(n.heartbeatAgeMs / 1000).toFixed(1)}s`,
      String(n.alive ? n.tracers : 0),
      String(n.pid),
      n.version,
    ]);
    const text = engine.table(
      ['NODE', 'STATUS', 'HEARTBEAT AGE', 'TRACERS', 'PID', 'VERSION'],
      rows,
    );
    const [head, ...lines] = text.split('\n');
    process.stdout.write(`${paint(head!, 'bold')}\n`);
    for (const [i, l] of lines.entries())
      process.stdout.write(
        `${l.replace(rows[i]![1]!, paint(rows[i]![1]!, nodes[i]!.alive ? 'green' : 'red'))}\n`,
      );
    return 0;
  } finally {
    await closeAll(cluster, store);
  }
}

type ClusterStartArgs = StartArgs & ClusterArgs & { nodes: string };

/** One task spanning nodes: created here, joined by each node's agent through Redis. */
export async function clusterStartCommand(args: ClusterStartArgs): Promise<number> {
  const requests = await tracerRequests(args.tracer, args.set);
  const { cluster, store, engine } = await open(args);
  try {
    const known = await cluster.nodes();
    const alive = known.filter((n) => n.alive).map((n) => n.node);
    const wanted =
      args.nodes === 'all'
        ? alive
        : args.nodes
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean);
    if (wanted.length === 0)
      throw new engine.UserError(`no live node in ${cluster} (see scalpels nodes)`);
    const missing = wanted.filter((n) => !alive.includes(n));
    if (missing.length)
      throw new engine.UserError(`node ${missing.join(', ')} is not alive (see scalpels nodes)`);
    const task = await store.createTask({
      name: args.name ?? requests.map((r) => r.name).join('+'),
      labels: parseLabels(args.label),
      nodes: wanted,
      ownerPid: null,
      ownerStart: null,
      target:
        args.pid?.length || args.service?.length
          ? [
              ...(args.pid ?? []).map((p) => `pid ${p}`),
              ...(args.service ?? []).map((s) => `service ${s}`),
            ].join(', ')
          : 'system-wide',
      startedAt: Date.now(),
    });
    const params = {
      taskId: task.id,
      tracers: requests.map((r) => ({ name: r.name, options: r.options })),
      target: { pids: args.pid ?? [], services: args.service ?? [] },
      restarts: args.restarts,
    };
    const results = await Promise.allSettled(wanted.map((n) => cluster.send(n, 'start', params)));
    const failed = results
      .map((r, i) => [wanted[i]!, r] as const)
      .filter(([, r]) => r.status === 'rejected');
    if (failed.length) {
      // All or nothing: stop what did start, and say which nodes refused and why.
      await Promise.allSettled(
        wanted
          .filter((n) => !failed.some(([f]) => f === n))
          .map((n) => cluster.send(n, 'stop', { task: task.id })),
      );
      await store.updateTask(task.id, { status: 'failed', stoppedAt: Date.now() });
      const why = failed
        .map(
          ([n, r]) =>
            `${n}: ${(r as PromiseRejectedResult).reason.message.replace(/^node \S+: /, '')}`,
        )
        .join('; ');
      throw new engine.UserError(`task ${task.id} not started: ${why}`);
    }
    process.stdout.write(
      args.json ? `${JSON.stringify({ taskId: task.id, nodes: wanted })}\n` : `${task.id}\n`,
    );
    return 0;
  } finally {
    await closeAll(cluster, store);
  }
}

interface ClusterStopArgs extends ClusterArgs {
  task?: string;
  last?: boolean;
  tracer?: string[];
}

export async function clusterStopCommand(args: ClusterStopArgs): Promise<number> {
  const { cluster, store, engine } = await open(args);
  try {
    const task = args.task && !args.last ? await store.findTask(args.task) : await store.lastTask();
    if (!task) throw new engine.UserError(args.task ? `no task "${args.task}"` : 'no task to stop');
    const nodes = await cluster.nodes();
    await markLostNodes(nodes, store);
    const alive = new Set(nodes.filter((n) => n.alive).map((n) => n.node));
    const tracers = args.tracer?.flatMap((t) => t.split(',')).filter(Boolean);
    const results = await Promise.allSettled(
      task.nodes
        .filter((n) => alive.has(n))
        .map((n) =>
          cluster.send<{ tracers: { tracer: string; status: string }[] }>(n, 'stop', {
            task: task.id,
            tracers,
          }),
        ),
    );
    const lines = task.nodes.map((n) => {
      if (!alive.has(n)) return `${n}: lost`;
      const r = results.shift()!;
      return r.status === 'fulfilled'
        ? `${n}: ${r.value.tracers.map((t) => `${t.tracer} ${t.status}`).join(', ')}`
        : `${n}: ${(r.reason as Error).message}`;
    });
    if (!tracers?.length)
      await store.updateTask(task.id, { status: 'stopped', stoppedAt: Date.now() });
    process.stdout.write(
      args.json
        ? `${JSON.stringify({ taskId: task.id, nodes: lines })}\n`
        : `task ${task.id}\n${lines.map((l) => `  ${l}`).join('\n')}\n`,
    );
    return 0;
  } finally {
    await closeAll(cluster, store);
  }
}

export async function clusterStatusCommand(args: ClusterArgs): Promise<number> {
  const { cluster, store, engine } = await open(args);
  try {
    const nodes = await cluster.nodes();
    await markLostNodes(nodes, store);
    const answers = await Promise.allSettled(
      nodes
        .filter((n) => n.alive)
        .map((n) => cluster.send<{ tasks: TaskStatus[] }>(n.node, 'status', {}, 10_000)),
    );
    const tasks = answers.flatMap((a) => (a.status === 'fulfilled' ? a.value.tasks : []));
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ nodes, tasks }, null, 2)}\n`);
      return 0;
    }
    const rows = tasks.flatMap((t) =>
      t.tracers.map((tr) => [
        t.id,
        t.node,
        tr.tracer,
        tr.status,
        tr.pid === null ? '-' : String(tr.pid),
        tr.uptimeMs === null ? '-' : `${Math.round(tr.uptimeMs / 1000)}s`,
        String(tr.records),
        String(tr.parseErrors),
      ]),
    );
    for (const n of nodes.filter((x) => !x.alive))
      rows.push(['-', n.node, '-', 'lost', '-', '-', '-', '-']);
    process.stdout.write(
      rows.length
        ? `${engine.table(['TASK', 'NODE', 'TRACER', 'STATUS', 'PID', 'UPTIME', 'RECORDS', 'PARSE ERR'], rows)}\n`
        : 'no running task on any node\n',
    );
    return 0;
  } finally {
    await closeAll(cluster, store);
  }
}

export function defaultNodeName(): string {
  return process.env.SCALPELS_NODE ?? hostname();
}
