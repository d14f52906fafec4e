import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import type { DependencyContainer } from 'tsyringe';
import { UserError, errorMessage, isUserError } from '../errors.js';
import type { Logger } from '../services.js';
import type { StoreProvider } from '../services.js';
import type { RunningTask, TaskService } from '../tasks.js';
import { TOKENS } from '../tokens.js';
import { LineSplitter } from '../lines.js';
import type { NodeInfo } from '../cluster/cluster.js';
import type { ClusterKey } from '../cluster/signing.js';
import { RefusalLog, escapeControl } from '../text-safety.js';
import {
  MAX_REQUEST_BYTES,
  RPC_ERRORS,
  ensureSocketDir,
  tokenMatches,
  type AgentInfo,
  type RpcRequest,
  type RpcResponse,
  type StartParams,
  type StopParams,
  type TaskStatus,
} from './protocol.js';

export interface TcpLimits {
  /** Connections served at once; more are closed on accept (default 64). */
  maxConnections?: number;
  /** A connection idle this long is closed (default 5 min; the token must come within 10 s). */
  idleTimeoutMs?: number;
  /** Time allowed for the first request (the one carrying the token), default 10 s. */
  authTimeoutMs?: number;
  /** Answers waiting in a connection's send buffer before it stops reading, default 1 MiB. */
  maxQueuedBytes?: number;
  /** Requests of one connection being handled at once, default 16. */
  maxInFlight?: number;
}

export interface AgentOptions {
  socketPath?: string;
  tcp?: { host: string; port: number; token: string } & TcpLimits;
  version: string;
  /** Join a cluster: register with a heartbeat and take signed commands from Redis. */
  cluster?: { redisUrl: string; heartbeatMs: number; key: ClusterKey };
}

class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The agent: owns tracers on this node and serves JSON-RPC on a unix socket (0600) and, when
 * asked, on TCP where every request must carry the token. It runs only what installed plugins
 * declare: requests carry plugin names and options, validated before anything is spawned.
 */
export class AgentServer {
  private readonly tasks = new Map<string, RunningTask>();
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();
  private readonly startedAt = Date.now();
  private readonly service: TaskService;
  private readonly stores: StoreProvider;
  private readonly log: Logger;
  private readonly node: string;
  private closing = false;
  private cluster: import('../cluster/cluster.js').Cluster | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** Starts run one at a time: a burst of requests must not spawn every worker at once. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly inFlight = new Set<Promise<unknown>>();
  private refusals: RefusalLog | undefined;

  constructor(
    private readonly container: DependencyContainer,
    private readonly opts: AgentOptions,
  ) {
    this.service = container.resolve<TaskService>(TOKENS.TaskService);
    this.stores = container.resolve<StoreProvider>(TOKENS.StoreProvider);
    this.log = container.resolve<Logger>(TOKENS.Logger);
    this.node = container.resolve<{ node: string }>(TOKENS.Config).node;
    if (opts.cluster && !opts.cluster.key)
      throw new UserError(
        'an agent in cluster mode needs a cluster key: --cluster-key-file F (or SCALPELS_CLUSTER_KEY_FILE)',
      );
    this.refusals = new RefusalLog((line) => this.log.warn(line));
  }

  /** Recovers what a previous agent left behind, then listens. */
  async listen(): Promise<{ recovered: number }> {
    const recovered = await this.service.recover();
    if (this.opts.socketPath) await this.listenUnix(this.opts.socketPath);
    if (this.opts.tcp) await this.listenTcp(this.opts.tcp.host, this.opts.tcp.port);
    if (this.opts.cluster)
      await this.joinCluster(
        this.opts.cluster.redisUrl,
        this.opts.cluster.heartbeatMs,
        this.opts.cluster.key,
      );
    return { recovered };
  }

  private async joinCluster(redisUrl: string, periodMs: number, key: ClusterKey): Promise<void> {
    const { Cluster } = await import('../cluster/cluster.js');
    const cluster = new Cluster(redisUrl, key);
    this.cluster = cluster;
    const info = (): NodeInfo => ({
      node: this.node,
      pid: process.pid,
      version: this.opts.version,
      startedAt: new Date(this.startedAt).toISOString(),
      heartbeatAt: Date.now(),
      periodMs,
      tracers: [...this.tasks.values()].reduce(
        (n, t) => n + t.tracers.filter((r) => !r.isEnded).length,
        0,
      ),
    });
    try {
      await cluster.heartbeat(info());
    } catch (e) {
      throw new UserError(`cannot join the cluster at ${cluster}: ${errorMessage(e)}`);
    }
    const beat = (): Promise<void> =>
      cluster
        .heartbeat(info())
        .then(() => this.reassertLiveTracers())
        .catch((e: Error) => this.log.warn(`heartbeat failed (Redis away?): ${e.message}`));
    this.heartbeatTimer = setInterval(() => void beat(), periodMs);
    await cluster.serve(
      this.node,
      (method, params) => this.dispatch(method, params),
      (line) => this.log.warn(line),
    );
  }

  /**
   * A front end marks a node's tracers interrupted when its heartbeat is missing: a dead agent, or
   * only Redis away for a while (or this agent starved of CPU). Tracers this agent still runs are
   * live: once its heartbeat is through again, their rows say so again.
   */
  private async reassertLiveTracers(): Promise<void> {
    const store = this.stores.get();
    for (const running of this.tasks.values()) {
      const live = running.tracers.filter((t) => !t.isEnded);
      if (live.length === 0) continue;
      const rows = await store.listTracers(running.task.id);
      for (const t of live) {
        const row = rows.find((r) => r.id === t.spec.row.id);
        if (row?.status !== 'interrupted') continue;
        await store.updateTracer(row.id, { status: 'running', error: null, stoppedAt: null });
        this.log.warn(
          `tracer ${t.name} of task ${running.task.id} was marked interrupted while this node was unreachable; it still runs`,
        );
      }
    }
  }

  get address(): net.AddressInfo | undefined {
    const tcp = this.servers.find((s) => typeof s.address() === 'object');
    return tcp?.address() as net.AddressInfo | undefined;
  }

  private async listenUnix(path: string): Promise<void> {
    ensureSocketDir(path);
    if (existsSync(path)) {
      if (!lstatSync(path).isSocket()) throw new UserError(`${path} exists and is not a socket`);
      // A live agent answers; a stale socket from a killed one is replaced.
      const alive = await new Promise<boolean>((resolve) => {
        const c = net.connect(path, () => {
          c.destroy();
          resolve(true);
        });
        c.once('error', () => resolve(false));
      });
      if (alive) throw new UserError(`an agent is already listening on ${path}`);
      unlinkSync(path);
    }
    const server = net.createServer((s) => this.accept(s));
    // Created with umask 077 so there is no moment at which others could connect.
    const umask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => resolve());
      });
    } finally {
      process.umask(umask);
    }
    chmodSync(path, 0o600);
    this.servers.push(server);
  }

  private async listenTcp(host: string, port: number): Promise<void> {
    const server = net.createServer((s) => this.acceptTcp(s));
    // Past the limit the kernel-level accept still happens, but node closes the socket at once.
    server.maxConnections = this.opts.tcp?.maxConnections ?? 64;
    server.on('drop', (d?: { remoteAddress?: string }) =>
      this.refusals?.refuse(
        d?.remoteAddress ?? 'tcp',
        `connection from ${d?.remoteAddress ?? 'tcp'}: too many connections`,
      ),
    );
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) =>
        reject(new UserError(`cannot listen on ${host}:${port}: ${e.message}`)),
      );
      server.listen(port, host, () => resolve());
    });
    this.servers.push(server);
  }

  /** Unix socket: whoever can open it (mode 0600: root) is trusted; one request per line. */
  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    this.serveLines(socket, (line) => this.handle(line));
  }

  /**
   * TCP: the first request must carry the token (compared in constant time); a bad or missing
   * one closes the connection. Then requests need no token. Idle connections are closed, and a
   * client that does not read its answers stops being read (back-pressure).
   */
  private acceptTcp(socket: net.Socket): void {
    const tcp = this.opts.tcp!;
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const source = socket.remoteAddress ?? 'tcp';
    let authed = false;
    const idleMs = tcp.idleTimeoutMs ?? 300_000;
    socket.setTimeout(tcp.authTimeoutMs ?? 10_000);
    socket.on('timeout', () => {
      if (!authed) this.refusals?.refuse(source, `connection from ${peer}: no token in time`);
      socket.destroy();
    });
    this.serveLines(socket, async (line) => {
      if (authed) return this.handle(line);
      let req: Partial<RpcRequest> | undefined;
      try {
        req = JSON.parse(line) as Partial<RpcRequest>;
      } catch {
        req = undefined;
      }
      if (!tokenMatches(tcp.token, req?.token)) {
        const method = typeof req?.method === 'string' ? req.method : 'request';
        this.refusals?.refuse(source, `${method} from ${peer}: bad or missing token`);
        const id = typeof req?.id === 'number' || typeof req?.id === 'string' ? req.id : null;
        // Tell the client why, then close: nothing more is read from this connection.
        socket.end(
          `${JSON.stringify({
            jsonrpc: '2.0',
            id,
            error: { code: RPC_ERRORS.unauthorized, message: 'unauthorized: bad or missing token' },
          } satisfies RpcResponse)}\n`,
        );
        // A client that never reads must not hold the connection open.
        setTimeout(() => socket.destroy(), 1000).unref();
        return undefined;
      }
      authed = true;
      socket.setTimeout(idleMs);
      return this.handle(line);
    });
  }

  /**
   * Reads requests line by line, at most `maxInFlight` handled at once per connection; stops
   * reading while answers wait in the send buffer, so a client that never reads cannot make the
   * agent queue answers without bound.
   */
  private serveLines(
    socket: net.Socket,
    handle: (line: string) => Promise<RpcResponse | undefined>,
  ): void {
    const maxQueued = this.opts.tcp?.maxQueuedBytes ?? 1 << 20;
    const maxInFlight = this.opts.tcp?.maxInFlight ?? 16;
    let inFlight = 0;
    let closed = false;
    // Lines read but not yet handled: bounded by what one read can hold, since reading pauses
    // while this connection is at its limit.
    const waiting: string[] = [];
    socket.once('close', () => {
      closed = true;
      waiting.length = 0;
    });
    const gone = (): boolean => closed || socket.destroyed || socket.writableEnded;
    const pump = (): void => {
      while (!gone() && waiting.length > 0 && inFlight < maxInFlight) {
        const line = waiting.shift()!;
        inFlight++;
        void handle(line).then((resp) => {
          inFlight--;
          if (resp && !gone() && !socket.write(`${JSON.stringify(resp)}\n`)) socket.pause();
          pump();
        });
      }
      if (gone()) {
        // Refused or closing: read nothing more (the kernel buffer fills, the sender blocks).
        waiting.length = 0;
        socket.pause();
        return;
      }
      const room = inFlight < maxInFlight && socket.writableLength < maxQueued;
      if (room && waiting.length === 0) socket.resume();
      else socket.pause();
    };
    socket.on('drain', pump);
    const splitter = new LineSplitter(
      (line) => {
        if (line.trim() !== '' && !gone()) waiting.push(line);
      },
      MAX_REQUEST_BYTES,
      () => {
        // A request longer than the limit: answer once and close (it is not a client of ours).
        if (gone()) return;
        waiting.length = 0;
        socket.end(
          `${JSON.stringify({
            jsonrpc: '2.0',
            id: null,
            error: { code: RPC_ERRORS.invalidRequest, message: 'request too long' },
          } satisfies RpcResponse)}\n`,
        );
      },
    );
    socket.on('data', (chunk: Buffer) => {
      if (gone()) return;
      splitter.push(chunk);
      pump();
    });
  }

  private async handle(line: string): Promise<RpcResponse> {
    let req: RpcRequest;
    try {
      req = JSON.parse(line) as RpcRequest;
    } catch {
      return {
        jsonrpc: '2.0',
        id: null,
        error: { code: RPC_ERRORS.parse, message: 'request is not JSON' },
      };
    }
    const id = typeof req?.id === 'number' || typeof req?.id === 'string' ? req.id : null;
    if (req?.jsonrpc !== '2.0' || typeof req.method !== 'string' || id === null)
      return {
        jsonrpc: '2.0',
        id,
        error: { code: RPC_ERRORS.invalidRequest, message: 'not a JSON-RPC 2.0 request' },
      };
    try {
      const result = await this.dispatch(req.method, req.params);
      return { jsonrpc: '2.0', id, result };
    } catch (e) {
      const code =
        e instanceof RpcError ? e.code : isUserError(e) ? RPC_ERRORS.user : RPC_ERRORS.internal;
      if (code === RPC_ERRORS.internal)
        this.log.error(
          `${escapeControl(req.method, 100)} failed: ${escapeControl(errorMessage(e))}`,
        );
      return { jsonrpc: '2.0', id, error: { code, message: errorMessage(e).split('\n')[0]! } };
    }
  }

  private dispatch(method: string, params: unknown): Promise<unknown> {
    switch (method) {
      case 'ping':
        return Promise.resolve(this.info());
      case 'start':
        return this.serialized(() => this.start(checkStartParams(params)));
      case 'stop':
        return this.tracked(this.stop(checkStopParams(params)));
      case 'status':
        return this.status();
      case 'mark':
        return this.mark(checkMarkParams(params));
      default:
        return Promise.reject(
          new RpcError(RPC_ERRORS.methodNotFound, `unknown method "${escapeControl(method, 100)}"`),
        );
    }
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return this.tracked(run);
  }

  private tracked<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p)).catch(() => undefined);
    return p;
  }

  private info(): AgentInfo {
    return {
      node: this.node,
      pid: process.pid,
      version: this.opts.version,
      store: this.stores.get().url,
      startedAt: new Date(this.startedAt).toISOString(),
    };
  }

  private async start(p: StartParams): Promise<{ taskId: string }> {
    if (this.closing) throw new UserError('agent is shutting down');
    const requests = p.tracers.map((t) => ({ name: t.name, options: t.options ?? {} }));
    const targetRequest = p.target ?? {};
    const targeted = Boolean(targetRequest.pids?.length || targetRequest.services?.length);
    const prepared = await this.service.prepare(requests, targeted);
    const target = this.service.resolveTarget(targetRequest);
    const running = await this.service.start(this.container, prepared, target, {
      name: p.name,
      labels: p.labels,
      restarts: p.restarts,
      taskId: p.taskId,
    });
    this.tasks.set(running.task.id, running);
    return { taskId: running.task.id };
  }

  private async stop(
    p: StopParams,
  ): Promise<{ taskId: string; tracers: { tracer: string; status: string }[] }> {
    const store = this.stores.get();
    const task = p.task ? await store.findTask(p.task) : await store.lastTask();
    if (!task) throw new UserError(p.task ? `no task "${p.task}"` : 'no task to stop');
    const running = this.tasks.get(task.id);
    if (!running)
      throw new UserError(`task ${task.id} is not running on this agent (status ${task.status})`);
    const unknown = (p.tracers ?? []).filter((n) => !running.tracers.some((t) => t.name === n));
    if (unknown.length) throw new UserError(`task ${task.id} has no tracer ${unknown.join(', ')}`);
    const names = p.tracers?.length ? p.tracers : running.tracers.map((t) => t.name);
    const outcomes = await running.stop(p.tracers);
    if (!running.live) this.tasks.delete(task.id);
    return {
      taskId: task.id,
      tracers: outcomes.map((o, i) => ({ tracer: names[i]!, status: o.status })),
    };
  }

  /** A marker on a task of this agent (the newest running one when none is named). */
  private async mark(p: {
    text: string;
    task?: string;
    ts?: number;
  }): Promise<{ taskId: string; ts: string }> {
    const store = this.stores.get();
    if (!store.addMarker) throw new UserError(`store ${store.url} cannot hold markers`);
    let taskId: string | undefined;
    if (p.task) taskId = (await store.findTask(p.task))?.id;
    else taskId = [...this.tasks.values()].filter((t) => t.live).at(-1)?.task.id;
    if (!taskId)
      throw new UserError(p.task ? `no task "${p.task}"` : 'no running task on this agent to mark');
    const m = await store.addMarker({
      taskId,
      ts: p.ts ?? Date.now(),
      text: p.text,
      node: this.node,
    });
    return { taskId, ts: new Date(m.ts).toISOString() };
  }

  private async status(): Promise<{ agent: AgentInfo; tasks: TaskStatus[] }> {
    const store = this.stores.get();
    const now = Date.now();
    const tasks: TaskStatus[] = [];
    for (const running of this.tasks.values()) {
      const task = (await store.findTask(running.task.id)) ?? running.task;
      const rows = await store.listTracers(task.id);
      tasks.push({
        id: task.id,
        node: this.node,
        name: task.name,
        status: task.status,
        startedAt: new Date(task.startedAt).toISOString(),
        target: task.target,
        tracers: running.tracers.map((t) => {
          const row = rows.find((r) => r.id === t.spec.row.id);
          const live = !t.isEnded;
          const stats = t.stats;
          return {
            id: t.spec.row.id,
            tracer: t.name,
            status: row?.status ?? 'unknown',
            pid: live ? (t.pid ?? null) : null,
            uptimeMs: live && t.startedAt ? now - t.startedAt : null,
            records: stats.records,
            parseErrors: stats.parseErrors,
            dropped: stats.dropped,
            restarts: t.restartCount,
            error: row?.error ?? null,
          };
        }),
      });
    }
    return { agent: this.info(), tasks };
  }

  /** Stops every tracer cleanly, then closes the listeners (SIGTERM/SIGINT). */
  async close(): Promise<void> {
    this.closing = true;
    this.refusals?.close();
    await Promise.allSettled([...this.inFlight]);
    await Promise.all([...this.tasks.values()].map((t) => t.stop().catch(() => [])));
    this.tasks.clear();
    clearInterval(this.heartbeatTimer);
    await this.cluster?.leave(this.node).catch(() => undefined);
    await this.cluster?.close();
    for (const s of this.sockets) s.destroy();
    await Promise.all(
      this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
    );
    if (this.opts.socketPath && existsSync(this.opts.socketPath)) unlinkSync(this.opts.socketPath);
  }
}

// ---------------------------------------------------------------------------------------------
// Request validation: shapes are checked strictly; unknown fields are refused, so nothing that
// looks like a command line can ride along.

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyKeys(o: Record<string, unknown>, allowed: string[], what: string): void {
  const extra = Object.keys(o).filter((k) => !allowed.includes(k));
  if (extra.length)
    throw new RpcError(RPC_ERRORS.invalidParams, `${what}: unknown field ${extra.join(', ')}`);
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

function checkStartParams(p: unknown): StartParams {
  if (!isObject(p)) throw new RpcError(RPC_ERRORS.invalidParams, 'start: params must be an object');
  onlyKeys(p, ['tracers', 'target', 'name', 'labels', 'restarts', 'taskId'], 'start');
  if (p.taskId !== undefined && (typeof p.taskId !== 'string' || !/^[\w-]{1,64}$/.test(p.taskId)))
    throw new RpcError(RPC_ERRORS.invalidParams, 'start: "taskId" must be a task id');
  if (!Array.isArray(p.tracers) || p.tracers.length === 0)
    throw new RpcError(RPC_ERRORS.invalidParams, 'start: "tracers" must be a non-empty array');
  for (const t of p.tracers) {
    if (!isObject(t))
      throw new RpcError(RPC_ERRORS.invalidParams, 'start: each tracer must be an object');
    onlyKeys(t, ['name', 'options'], 'start tracer');
    if (typeof t.name !== 'string' || !NAME.test(t.name))
      throw new RpcError(
        RPC_ERRORS.invalidParams,
        `start: bad tracer name ${JSON.stringify(t.name)}`,
      );
    if (t.options !== undefined) {
      if (!isObject(t.options))
        throw new RpcError(RPC_ERRORS.invalidParams, `${t.name}: options must be an object`);
      for (const [k, v] of Object.entries(t.options)) {
        const ok =
          ['string', 'number', 'boolean'].includes(typeof v) ||
          (Array.isArray(v) && v.every((x) => typeof x === 'string'));
        if (!ok)
          throw new RpcError(
            RPC_ERRORS.invalidParams,
            `${t.name}: option "${k}" must be a string, number, boolean or list of strings`,
          );
      }
    }
  }
  if (p.target !== undefined) {
    if (!isObject(p.target))
      throw new RpcError(RPC_ERRORS.invalidParams, 'start: "target" must be an object');
    onlyKeys(p.target, ['pids', 'services'], 'start target');
    const { pids, services } = p.target;
    if (
      pids !== undefined &&
      (!Array.isArray(pids) || !pids.every((x) => Number.isSafeInteger(x) && (x as number) > 0))
    )
      throw new RpcError(
        RPC_ERRORS.invalidParams,
        'start: "target.pids" must be positive integers',
      );
    if (
      services !== undefined &&
      (!Array.isArray(services) ||
        !services.every((x) => typeof x === 'string' && /^[\w@.:+-]{1,128}$/.test(x)))
    )
      throw new RpcError(
        RPC_ERRORS.invalidParams,
        'start: "target.services" must be service names',
      );
  }
  if (p.name !== undefined && (typeof p.name !== 'string' || p.name.length > 200))
    throw new RpcError(RPC_ERRORS.invalidParams, 'start: "name" must be a string');
  if (
    p.labels !== undefined &&
    (!isObject(p.labels) || !Object.values(p.labels).every((v) => typeof v === 'string'))
  )
    throw new RpcError(RPC_ERRORS.invalidParams, 'start: "labels" must map strings to strings');
  if (
    p.restarts !== undefined &&
    (!Number.isInteger(p.restarts) || (p.restarts as number) < 0 || (p.restarts as number) > 100)
  )
    throw new RpcError(RPC_ERRORS.invalidParams, 'start: "restarts" must be an integer 0-100');
  return p as unknown as StartParams;
}

function checkMarkParams(p: unknown): { text: string; task?: string; ts?: number } {
  if (!isObject(p)) throw new RpcError(RPC_ERRORS.invalidParams, 'mark: params must be an object');
  onlyKeys(p, ['text', 'task', 'ts'], 'mark');
  if (typeof p.text !== 'string' || p.text.trim() === '' || p.text.length > 500)
    throw new RpcError(RPC_ERRORS.invalidParams, 'mark: "text" must be 1-500 characters');
  if (p.task !== undefined && typeof p.task !== 'string')
    throw new RpcError(RPC_ERRORS.invalidParams, 'mark: "task" must be a string');
  if (p.ts !== undefined && !Number.isSafeInteger(p.ts))
    throw new RpcError(RPC_ERRORS.invalidParams, 'mark: "ts" must be milliseconds since the epoch');
  return p as { text: string; task?: string; ts?: number };
}

function checkStopParams(p: unknown): StopParams {
  if (p === undefined) return {};
  if (!isObject(p)) throw new RpcError(RPC_ERRORS.invalidParams, 'stop: params must be an object');
  onlyKeys(p, ['task', 'tracers'], 'stop');
  if (p.task !== undefined && typeof p.task !== 'string')
    throw new RpcError(RPC_ERRORS.invalidParams, 'stop: "task" must be a string');
  if (
    p.tracers !== undefined &&
    (!Array.isArray(p.tracers) || !p.tracers.every((x) => typeof x === 'string'))
  )
    throw new RpcError(RPC_ERRORS.invalidParams, 'stop: "tracers" must be names');
  return p as StopParams;
}
