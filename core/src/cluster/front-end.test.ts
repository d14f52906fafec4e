// The cluster front end against the real Redis: agents are Cluster instances serving commands
// in this process, each under a prefix of its own test, signed with one key.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { RedisStore } from '../store/redis.js';
import { sharedRedis } from '../store/redis.test-helpers.js';
import type { Store } from '../store/types.js';
import { Cluster } from './cluster.js';
import { ClusterFrontEnd, describeTarget, markLostNodes } from './front-end.js';
import { ClusterKey } from './signing.js';

const shared = await sharedRedis('fe');
const key = ClusterKey.fromSecret(randomBytes(32).toString('base64'));
const toClose: { close(): Promise<void> }[] = [];

afterEach(async () => {
  for (const c of toClose.splice(0).reverse()) await c.close();
});

interface Call {
  method: string;
  params: Record<string, unknown>;
}

/** A fresh cluster (its own prefix), a store in the same Redis and a front end over both. */
function setup(): {
  url: string;
  store: Store;
  front: ClusterFrontEnd;
  agent: (node: string, refuse?: string) => Promise<Call[]>;
  lostNode: (node: string) => Promise<void>;
} {
  const url = shared.url();
  const cluster = new Cluster(url, key);
  const store = new RedisStore(url);
  toClose.push(store, cluster);
  const front = new ClusterFrontEnd(cluster, store);
  const agent = async (node: string, refuse?: string): Promise<Call[]> => {
    const c = new Cluster(url, key);
    toClose.push(c);
    const calls: Call[] = [];
    await c.heartbeat(info(node, 60_000));
    await c.serve(
      node,
      async (method, params) => {
        calls.push({ method, params: params as Record<string, unknown> });
        if (method === 'start' && refuse) throw new Error(refuse);
        if (method === 'stop') return { tracers: [{ tracer: 'proc', status: 'stopped' }] };
        if (method === 'status') return { tasks: [] };
        return { taskId: (params as { taskId?: string }).taskId };
      },
      () => {},
    );
    return calls;
  };
  // A heartbeat whose key expires at once: the node stays registered, and is lost.
  const lostNode = async (node: string): Promise<void> => {
    const c = new Cluster(url, key);
    toClose.push(c);
    await c.heartbeat(info(node, 1));
    await until(async () => (await cluster.nodes()).some((n) => n.node === node && !n.alive));
  };
  return { url, store, front, agent, lostNode };
}

function info(node: string, periodMs: number) {
  return {
    node,
    pid: process.pid,
    version: '0.0.0-test',
    startedAt: new Date().toISOString(),
    heartbeatAt: Date.now(),
    periodMs,
    tracers: 0,
  };
}

async function until(probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function tracerOn(store: Store, taskId: string, node: string) {
  const t = await store.createTracer({
    taskId,
    tracer: 'demo',
    pluginPackage: 'p',
    pluginVersion: '1.0.0',
    node,
    options: {},
    technique: null,
  });
  await store.updateTracer(t.id, { status: 'running' });
  return t;
}

describe('describeTarget', () => {
  it('names pids and services, or says system-wide', () => {
    expect(describeTarget({ pids: [1, 2], services: ['nova-api'] })).toBe(
      'pid 1, pid 2, service nova-api',
    );
    expect(describeTarget({ pids: [], services: [] })).toBe('system-wide');
    expect(describeTarget(undefined)).toBe('system-wide');
  });
});

describe.runIf(shared.available)('ClusterFrontEnd (real Redis)', () => {
  it('selects every live node for "all", checks named ones, refuses when none is alive', async () => {
    const { front, agent, lostNode, url } = setup();
    await expect(front.selectNodes('all')).rejects.toThrow(
      `no live node in ${url} (see scalpels nodes)`,
    );
    await agent('b');
    await agent('a');
    await lostNode('gone');
    expect(await front.selectNodes('all')).toEqual(['a', 'b']);
    expect(await front.selectNodes(' b , a,')).toEqual(['b', 'a']);
    const refused = front.selectNodes('a,gone,ghost');
    await expect(refused).rejects.toThrow('node gone, ghost is not alive (see scalpels nodes)');
    await expect(refused).rejects.toMatchObject({ name: 'UserError' });
    await expect(front.selectNodes(',')).rejects.toThrow(/^no live node in/);
  });

  it('starts a task on every node, with one task id and the target said once', async () => {
    const { front, agent, store } = setup();
    const a = await agent('a');
    const b = await agent('b');
    const task = await front.start(['a', 'b'], {
      tracers: [
        { name: 'proc', options: { interval: '1s' } },
        { name: 'syscalls', options: {} },
      ],
      target: { pids: [42], services: [] },
      labels: { env: 'ci' },
      restarts: 2,
    });
    expect(task).toMatchObject({
      name: 'proc+syscalls',
      nodes: ['a', 'b'],
      labels: { env: 'ci' },
      target: 'pid 42',
      ownerPid: null,
    });
    for (const calls of [a, b])
      expect(calls).toEqual([
        {
          method: 'start',
          params: {
            taskId: task.id,
            tracers: [
              { name: 'proc', options: { interval: '1s' } },
              { name: 'syscalls', options: {} },
            ],
            target: { pids: [42], services: [] },
            restarts: 2,
          },
        },
      ]);
    expect((await store.findTask(task.id))?.status).toBe('running');
  });

  it('all or nothing: a node refusing stops the nodes that started and fails the task', async () => {
    const { front, agent, store } = setup();
    const a = await agent('a');
    const b = await agent('b', 'tracer proc is not installed');
    const c = await agent('c');
    const err = await front
      .start(['a', 'b', 'c'], { tracers: [{ name: 'proc' }], name: 'web' })
      .then(
        () => undefined,
        (e: Error) => e,
      );
    expect(err?.name).toBe('UserError');
    const m = /^task (\S+) not started: b: tracer proc is not installed$/.exec(err!.message);
    expect(m, err?.message).not.toBeNull();
    const taskId = m![1]!;
    for (const calls of [a, c])
      expect(calls.map((x) => [x.method, x.params.task ?? x.params.taskId])).toEqual([
        ['start', taskId],
        ['stop', taskId],
      ]);
    // The refusing node is not asked to stop what it never started.
    expect(b.map((x) => x.method)).toEqual(['start']);
    const row = await store.findTask(taskId);
    expect(row).toMatchObject({ name: 'web', status: 'failed', nodes: ['a', 'b', 'c'] });
    expect(row?.stoppedAt).toBeGreaterThan(0);
  });

  it('says every refusing node and why, in node order', async () => {
    const { front, agent } = setup();
    await agent('a', 'no such tracer "x"');
    await agent('b', 'bpftrace not found');
    await expect(front.start(['a', 'b'], { tracers: [{ name: 'x' }] })).rejects.toThrow(
      /not started: a: no such tracer "x"; b: bpftrace not found$/,
    );
  });

  it('marks the live tracers of lost nodes interrupted, and only theirs', async () => {
    const { front, agent, lostNode, store } = setup();
    await agent('a');
    await lostNode('gone');
    const task = await store.createTask({
      name: 't',
      labels: {},
      nodes: ['a', 'gone'],
      ownerPid: null,
      ownerStart: null,
      target: 'system-wide',
      startedAt: Date.now(),
    });
    const onA = await tracerOn(store, task.id, 'a');
    const onGone = await tracerOn(store, task.id, 'gone');
    const nodes = await front.nodes();
    expect(nodes.map((n) => [n.node, n.alive])).toEqual([
      ['a', true],
      ['gone', false],
    ]);
    expect((await store.tracer(onA.id))?.status).toBe('running');
    const gone = await store.tracer(onGone.id);
    expect(gone?.status).toBe('interrupted');
    expect(gone?.error).toMatch(/^node gone lost: no heartbeat for \d+ s$/);
    expect(gone?.stoppedAt).toBeGreaterThan(0);
    // Already interrupted: nothing left to mark; no lost node: nothing read.
    expect(await markLostNodes(nodes, store)).toBe(0);
    expect(await markLostNodes([], store)).toBe(0);
  });

  it('stops a task on its live nodes, reports lost ones, and marks the task stopped', async () => {
    const { front, agent, lostNode, store } = setup();
    const a = await agent('a');
    await lostNode('gone');
    const task = await store.createTask({
      name: 'stop-me',
      labels: {},
      nodes: ['gone', 'a'],
      ownerPid: null,
      ownerStart: null,
      target: 'system-wide',
      startedAt: Date.now(),
    });
    const onGone = await tracerOn(store, task.id, 'gone');
    await expect(front.stop({ task: 'no-such-task' })).rejects.toThrow('no task "no-such-task"');
    const r = await front.stop({ task: 'stop-me' });
    expect(r.task.id).toBe(task.id);
    expect(r.nodes).toEqual([
      { node: 'gone', outcome: 'lost' },
      { node: 'a', outcome: 'stopped', tracers: [{ tracer: 'proc', status: 'stopped' }] },
    ]);
    expect(a).toEqual([{ method: 'stop', params: { task: task.id } }]);
    expect((await store.findTask(task.id))?.status).toBe('stopped');
    expect((await store.tracer(onGone.id))?.status).toBe('interrupted');
  });

  it('stopping some tracers leaves the task running; --last takes the last task', async () => {
    const { front, agent, store } = setup();
    const a = await agent('a');
    const task = await store.createTask({
      name: 'partly',
      labels: {},
      nodes: ['a'],
      ownerPid: null,
      ownerStart: null,
      target: 'system-wide',
      startedAt: Date.now(),
    });
    const r = await front.stop({ task: 'ignored', last: true, tracers: ['proc'] });
    expect(r.task.id).toBe(task.id);
    expect(a[0]?.params).toEqual({ task: task.id, tracers: ['proc'] });
    expect((await store.findTask(task.id))?.status).toBe('running');
  });

  it('status asks every live node and keeps lost ones in the node list', async () => {
    const { front, agent, lostNode } = setup();
    const a = await agent('a');
    await lostNode('gone');
    const s = await front.status();
    expect(s.nodes.map((n) => [n.node, n.alive])).toEqual([
      ['a', true],
      ['gone', false],
    ]);
    expect(a.map((x) => x.method)).toEqual(['status']);
    expect(s.tasks).toEqual([]);
  });
});
