import { UserError } from '../errors.js';
import type { StartParams, TaskStatus } from '../agent/protocol.js';
import { systemClock, type Clock } from '../services.js';
import type { Store, TaskRow } from '../store/types.js';
import type { Cluster, NodeState } from './cluster.js';

/** What a cluster task runs: as `start` on one agent, without the task id the front end makes. */
export type ClusterStartRequest = Omit<StartParams, 'taskId'>;

/** How one node of a task answered `stop`. */
export type NodeStopResult =
  | { node: string; outcome: 'lost' }
  | { node: string; outcome: 'stopped'; tracers: { tracer: string; status: string }[] }
  | { node: string; outcome: 'failed'; error: string };

/** The task row's `target`: what the tracers follow, said once for every node. */
export function describeTarget(target: ClusterStartRequest['target']): string {
  const pids = target?.pids ?? [];
  const services = target?.services ?? [];
  return pids.length || services.length
    ? [...pids.map((p) => `pid ${p}`), ...services.map((s) => `service ${s}`)].join(', ')
    : 'system-wide';
}

/**
 * Marks live tracers of nodes that stopped sending heartbeats as `interrupted`. An agent that was
 * only cut off sets its rows back to running once its heartbeat is through again
 * (AgentServer.reassertLiveTracers), so marking early loses nothing.
 */
export async function markLostNodes(
  nodes: readonly NodeState[],
  store: Store,
  clock: Clock = systemClock,
): Promise<number> {
  const lost = new Map(nodes.filter((n) => !n.alive).map((n) => [n.node, n]));
  if (lost.size === 0) return 0;
  let marked = 0;
  for (const t of await store.liveTracers()) {
    const n = lost.get(t.node);
    if (!n) continue;
    await store.updateTracer(t.id, {
      status: 'interrupted',
      error: `node ${t.node} lost: no heartbeat for ${Math.round(n.heartbeatAgeMs / 1000)} s`,
      stoppedAt: clock.now(),
    });
    marked++;
  }
  return marked;
}

/**
 * What a cluster front end does (the CLI's `nodes`, `start|stop|status --redis`, or any other
 * process holding the cluster key): pick nodes, start a task on all of them or on none, stop it,
 * ask for status, and mark the tracers of lost nodes. It keeps no state: everything is in Redis
 * and the store. Built with `new` rather than resolved from the container: its Cluster is the
 * caller's connection (Redis URL and key chosen per command), not a root service.
 */
export class ClusterFrontEnd {
  constructor(
    readonly cluster: Cluster,
    readonly store: Store,
    private readonly clock: Clock = systemClock,
  ) {}

  /** Every registered node; the live tracers of lost ones are marked interrupted on the way. */
  async nodes(): Promise<NodeState[]> {
    const nodes = await this.cluster.nodes();
    await markLostNodes(nodes, this.store, this.clock);
    return nodes;
  }

  /** `all` (every live node) or a comma list of names, each of which must be alive. */
  async selectNodes(spec: string): Promise<string[]> {
    const known = await this.cluster.nodes();
    const alive = known.filter((n) => n.alive).map((n) => n.node);
    const wanted =
      spec === 'all'
        ? alive
        : spec
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean);
    if (wanted.length === 0)
      throw new UserError(`no live node in ${this.cluster} (see scalpels nodes)`);
    const missing = wanted.filter((n) => !alive.includes(n));
    if (missing.length)
      throw new UserError(`node ${missing.join(', ')} is not alive (see scalpels nodes)`);
    return wanted;
  }

  /**
   * Creates one task spanning `nodes` and has each node's agent join it. All or nothing: when a
   * node refuses, the nodes that did start are stopped, the task is marked failed and the error
   * says which nodes refused and why.
   */
  async start(nodes: readonly string[], req: ClusterStartRequest): Promise<TaskRow> {
    const task = await this.store.createTask({
      name: req.name ?? req.tracers.map((t) => t.name).join('+'),
      labels: req.labels ?? {},
      nodes: [...nodes],
      ownerPid: null,
      ownerStart: null,
      target: describeTarget(req.target),
      startedAt: this.clock.now(),
    });
    const params: StartParams = {
      taskId: task.id,
      tracers: req.tracers,
      target: { pids: req.target?.pids ?? [], services: req.target?.services ?? [] },
      restarts: req.restarts,
    };
    const results = await Promise.allSettled(
      nodes.map((n) => this.cluster.send(n, 'start', params)),
    );
    const failed = results
      .map((r, i) => [nodes[i]!, r] as const)
      .filter((x): x is readonly [string, PromiseRejectedResult] => x[1].status === 'rejected');
    if (failed.length === 0) return task;
    await Promise.allSettled(
      nodes
        .filter((n) => !failed.some(([f]) => f === n))
        .map((n) => this.cluster.send(n, 'stop', { task: task.id })),
    );
    await this.store.updateTask(task.id, { status: 'failed', stoppedAt: this.clock.now() });
    const why = failed
      .map(([n, r]) => `${n}: ${(r.reason as Error).message.replace(/^node \S+: /, '')}`)
      .join('; ');
    throw new UserError(`task ${task.id} not started: ${why}`);
  }

  /**
   * Stops a task (by id, prefix or name; the last one when `task` is absent or `last` is set) on
   * its live nodes, or only some of its tracers. The task is marked stopped unless only some
   * tracers were asked for. Results come in the task's node order.
   */
  async stop(opts: {
    task?: string;
    last?: boolean;
    tracers?: string[];
  }): Promise<{ task: TaskRow; nodes: NodeStopResult[] }> {
    const task =
      opts.task && !opts.last ? await this.store.findTask(opts.task) : await this.store.lastTask();
    if (!task) throw new UserError(opts.task ? `no task "${opts.task}"` : 'no task to stop');
    const nodes = await this.nodes();
    const alive = new Set(nodes.filter((n) => n.alive).map((n) => n.node));
    const tracers = opts.tracers;
    const results = await Promise.allSettled(
      task.nodes
        .filter((n) => alive.has(n))
        .map((n) =>
          this.cluster.send<{ tracers: { tracer: string; status: string }[] }>(n, 'stop', {
            task: task.id,
            tracers,
          }),
        ),
    );
    const out = task.nodes.map((node): NodeStopResult => {
      if (!alive.has(node)) return { node, outcome: 'lost' };
      const r = results.shift()!;
      return r.status === 'fulfilled'
        ? { node, outcome: 'stopped', tracers: r.value.tracers }
        : { node, outcome: 'failed', error: (r.reason as Error).message };
    });
    if (!tracers?.length)
      await this.store.updateTask(task.id, { status: 'stopped', stoppedAt: this.clock.now() });
    return { task, nodes: out };
  }

  /** Every node, and the tasks the live ones report (a node that does not answer is left out). */
  async status(timeoutMs = 10_000): Promise<{ nodes: NodeState[]; tasks: TaskStatus[] }> {
    const nodes = await this.nodes();
    const answers = await Promise.allSettled(
      nodes
        .filter((n) => n.alive)
        .map((n) => this.cluster.send<{ tasks: TaskStatus[] }>(n.node, 'status', {}, timeoutMs)),
    );
    const tasks = answers.flatMap((a) => (a.status === 'fulfilled' ? a.value.tasks : []));
    return { nodes, tasks };
  }
}
