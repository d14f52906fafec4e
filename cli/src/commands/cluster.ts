import { hostname } from 'node:os';
import type { ClusterFrontEnd } from '@scalpels/core/engine';
import { loadEngine, paint, type GlobalArgs } from '../context.js';
import type { StartArgs } from './agent.js';
import { parseLabels, tracerRequests } from './run.js';

export interface ClusterArgs extends GlobalArgs {
  redis?: string;
}

export function redisUrlOf(args: ClusterArgs): string | undefined {
  return args.redis ?? process.env.SCALPELS_REDIS;
}

async function open(args: ClusterArgs): Promise<{
  front: ClusterFrontEnd;
  engine: Awaited<ReturnType<typeof loadEngine>>;
}> {
  const engine = await loadEngine();
  const url = redisUrlOf(args);
  if (!url) throw new engine.UserError('give --redis redis://host:port/db (or SCALPELS_REDIS)');
  const keyFile = engine.clusterKeyFileOf(args.clusterKeyFile);
  if (!keyFile)
    throw new engine.UserError(
      'cluster commands are signed: give --cluster-key-file F (or SCALPELS_CLUSTER_KEY_FILE), the key file every agent of the cluster has',
    );
  const cluster = new engine.Cluster(url, engine.ClusterKey.fromFile(keyFile));
  const store = engine.openStore(args.store ?? url);
  return { front: new engine.ClusterFrontEnd(cluster, store), engine };
}

async function closeAll(front: ClusterFrontEnd): Promise<void> {
  await front.cluster.close();
  await front.store.close();
}

export async function nodesCommand(args: ClusterArgs): Promise<number> {
  const { front, engine } = await open(args);
  try {
    const nodes = await front.nodes();
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
        `no agent registered in ${front.cluster} (start one: scalpels agent --redis URL --node NAME)\n`,
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
    await closeAll(front);
  }
}

type ClusterStartArgs = StartArgs & ClusterArgs & { nodes: string };

/** One task spanning nodes: created here, joined by each node's agent through Redis. */
export async function clusterStartCommand(args: ClusterStartArgs): Promise<number> {
  const requests = await tracerRequests(args.tracer, args.set);
  const { front } = await open(args);
  try {
    const wanted = await front.selectNodes(args.nodes);
    const task = await front.start(wanted, {
      name: args.name,
      labels: parseLabels(args.label),
      tracers: requests.map((r) => ({ name: r.name, options: r.options })),
      target: { pids: args.pid ?? [], services: args.service ?? [] },
      restarts: args.restarts,
    });
    process.stdout.write(
      args.json ? `${JSON.stringify({ taskId: task.id, nodes: wanted })}\n` : `${task.id}\n`,
    );
    return 0;
  } finally {
    await closeAll(front);
  }
}

interface ClusterStopArgs extends ClusterArgs {
  task?: string;
  last?: boolean;
  tracer?: string[];
}

export async function clusterStopCommand(args: ClusterStopArgs): Promise<number> {
  const { front } = await open(args);
  try {
    const { task, nodes } = await front.stop({
      task: args.task,
      last: args.last,
      tracers: args.tracer?.flatMap((t) => t.split(',')).filter(Boolean),
    });
    const lines = nodes.map((r) =>
      r.outcome === 'lost'
        ? `${r.node}: lost`
        : r.outcome === 'stopped'
          ? `${r.node}: ${r.tracers.map((t) => `${t.tracer} ${t.status}`).join(', ')}`
          : `${r.node}: ${r.error}`,
    );
    process.stdout.write(
      args.json
        ? `${JSON.stringify({ taskId: task.id, nodes: lines })}\n`
        : `task ${task.id}\n${lines.map((l) => `  ${l}`).join('\n')}\n`,
    );
    return 0;
  } finally {
    await closeAll(front);
  }
}

export async function clusterStatusCommand(args: ClusterArgs): Promise<number> {
  const { front, engine } = await open(args);
  try {
    const { nodes, tasks } = await front.status();
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
    await closeAll(front);
  }
}

export function defaultNodeName(): string {
  return process.env.SCALPELS_NODE ?? hostname();
}
