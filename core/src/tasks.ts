import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject, injectable, type DependencyContainer } from 'tsyringe';
import type { CheckResult, OptionValues, Target, WorkerContext } from './api.js';
import { UserError, errorMessage } from './errors.js';
import { validateOptions } from './options.js';
import { isSameProcess, readStat } from './procfs.js';
import { PluginRegistry, type LoadedPlugin } from './registry.js';
import { WorkerRunner, type RunnerStats, type TracerOutcome } from './runner.js';
import { checkContext, StoreProvider, type Clock, type Config, type Logger } from './services.js';
import { killGroup, type ProcessSpawner } from './spawner.js';
import type { Store, TaskRow, TracerRow } from './store/types.js';
import { TargetResolver, type TargetRequest } from './targets.js';
import { TOKENS } from './tokens.js';

export interface TracerRequest {
  /** Tracer (plugin) name. */
  name: string;
  /** Raw option values (strings from `--set`, or typed JSON values). */
  options: Record<string, unknown>;
}

/** A tracer whose plugin is loaded, options validated and check passed: ready to start. */
export interface PreparedTracer {
  plugin: LoadedPlugin;
  options: OptionValues;
  check: CheckResult;
}

/** What one tracer's child container holds. */
export interface TracerSpec {
  prepared: PreparedTracer;
  row: TracerRow;
  task: TaskRow;
  target: Target;
  /** Restart a crashed worker up to this many times, with backoff (0: off). */
  maxRestarts?: number;
}

/** One tracer's life: setup (journaled), worker, records to the store, stop, undo. */
@injectable()
export class TracerRun {
  private runner: WorkerRunner | undefined;
  private runtimeDir: string | undefined;
  private finished: Promise<TracerOutcome> | undefined;
  private ended = false;
  private stopRequested = false;
  private restarts = 0;
  private readonly totals: RunnerStats = { records: 0, parseErrors: 0, dropped: 0 };
  private ctx: WorkerContext | undefined;
  private workerStartedAt: number | undefined;
  private wakeBackoff: (() => void) | undefined;

  constructor(
    @inject(TOKENS.TracerSpec) readonly spec: TracerSpec,
    @inject(TOKENS.StoreProvider) private readonly stores: StoreProvider,
    @inject(TOKENS.ProcessSpawner) private readonly spawner: ProcessSpawner,
    @inject(TOKENS.Logger) private readonly log: Logger,
    @inject(TOKENS.Clock) private readonly clock: Clock,
  ) {}

  get name(): string {
    return this.spec.row.tracer;
  }

  get pid(): number | undefined {
    return this.runner?.pid;
  }

  /** Resolves when the worker ended (by itself or through stop) and the tracer row is final. */
  get done(): Promise<TracerOutcome> {
    if (!this.finished) throw new Error(`tracer ${this.name} not started`);
    return this.finished;
  }

  /** Records, parse errors and drops so far, over every worker of this tracer (restarts included). */
  get stats(): RunnerStats {
    const live = this.runner?.stats ?? { records: 0, parseErrors: 0, dropped: 0 };
    return {
      records: this.totals.records + live.records,
      parseErrors: this.totals.parseErrors + live.parseErrors,
      dropped: this.totals.dropped + live.dropped,
    };
  }

  get isEnded(): boolean {
    return this.ended;
  }

  get restartCount(): number {
    return this.restarts;
  }

  get startedAt(): number | undefined {
    return this.workerStartedAt;
  }

  async start(): Promise<void> {
    const { prepared, row, task, target } = this.spec;
    const { manifest, info } = prepared.plugin;
    const store = this.stores.get();
    this.runtimeDir = tracerRuntimeDir(task.id, row.id);
    rmSync(this.runtimeDir, { recursive: true, force: true });
    mkdirSync(this.runtimeDir, { recursive: true, mode: 0o700 });
    this.ctx = {
      target,
      taskId: task.id,
      tracerId: row.id,
      technique: prepared.check.technique,
      runtimeDir: this.runtimeDir,
      pluginDir: info.dir,
    };
    try {
      if (manifest.setup)
        await manifest.setup(prepared.options, {
          ...this.ctx,
          journal: (action) =>
            store.journal(
              row.id,
              manifest.name,
              action,
              prepared.options as Record<string, unknown>,
            ),
        });
      await this.spawnWorker();
    } catch (e) {
      const error = `${row.tracer}: ${firstLine(errorMessage(e))}`;
      await this.undo();
      await store.updateTracer(row.id, { status: 'failed', error, stoppedAt: this.clock.now() });
      this.cleanup();
      throw new UserError(error);
    }
    this.finished = this.supervise();
  }

  async stop(): Promise<TracerOutcome> {
    if (!this.finished) throw new Error(`tracer ${this.name} not started`);
    if (this.ended) return this.finished; // the worker already ended by itself
    this.stopRequested = true;
    this.wakeBackoff?.();
    await this.stores.get().updateTracer(this.spec.row.id, { status: 'stopping' });
    await this.runner?.stop();
    return this.finished;
  }

  private async spawnWorker(): Promise<void> {
    const { prepared, row } = this.spec;
    const { manifest } = prepared.plugin;
    const store = this.stores.get();
    const workerSpec = await manifest.worker(prepared.options, this.ctx!);
    const parser = manifest.parser({
      options: prepared.options,
      technique: this.ctx!.technique,
      startedAt: this.clock.now(),
    });
    const runner = new WorkerRunner(
      this.spawner,
      workerSpec,
      parser,
      manifest.schema,
      store.recordSink(row, manifest.schema),
      {
        now: () => this.clock.now(),
        onProgress: () => void store.updateTracer(row.id, this.stats).catch(() => undefined),
      },
    );
    this.runner = runner;
    await runner.start();
    const pid = runner.pid!;
    this.workerStartedAt = this.clock.now();
    await store.updateTracer(row.id, {
      status: 'running',
      workerPid: pid,
      workerStart: readStat(pid)?.startTime ?? null,
      startedAt: this.workerStartedAt,
    });
  }

  /** Waits for the worker; restarts a crashed one with backoff when the tracer allows it. */
  private async supervise(): Promise<TracerOutcome> {
    for (;;) {
      const o = await this.runner!.done;
      this.totals.records += o.records;
      this.totals.parseErrors += o.parseErrors;
      this.totals.dropped += o.dropped;
      const total = { ...o, ...this.totals };
      if (
        o.status !== 'failed' ||
        this.stopRequested ||
        this.restarts >= (this.spec.maxRestarts ?? 0)
      )
        return this.finish(total);
      this.restarts++;
      const backoffMs = Math.min(30_000, 500 * 2 ** (this.restarts - 1));
      this.log.warn(
        `tracer ${this.name} failed (${o.error}); restart ${this.restarts} in ${backoffMs} ms`,
      );
      await this.stores.get().updateTracer(this.spec.row.id, {
        status: 'starting',
        restarts: this.restarts,
        error: `restart ${this.restarts} after: ${o.error}`,
        ...this.totals,
      });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, backoffMs);
        this.wakeBackoff = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeBackoff = undefined;
      if (this.stopRequested) return this.finish({ ...total, status: 'stopped', error: undefined });
      try {
        await this.spawnWorker();
      } catch (e) {
        // Stopped while the new worker was starting: that is a stop, not a failure.
        if (this.stopRequested)
          return this.finish({ ...total, status: 'stopped', error: undefined });
        return this.finish({
          ...total,
          error: `restart ${this.restarts} failed: ${firstLine(errorMessage(e))}`,
        });
      }
    }
  }

  private async finish(o: TracerOutcome): Promise<TracerOutcome> {
    this.ended = true;
    const store = this.stores.get();
    if (o.error) this.log.warn(`tracer ${this.name} failed: ${o.error}`);
    await this.undo();
    await store.updateTracer(this.spec.row.id, {
      status: o.status,
      exitCode: o.exitCode,
      error: o.error ?? null,
      stderrTail: o.stderrTail || null,
      stoppedAt: this.clock.now(),
      records: o.records,
      parseErrors: o.parseErrors,
      dropped: o.dropped,
    });
    this.cleanup();
    return o;
  }

  /** Restores what the tracer changed outside itself, newest change first. */
  private async undo(): Promise<void> {
    await undoJournal(
      this.stores.get(),
      this.spec.row.id,
      async () => this.spec.prepared.plugin,
      this.log,
    );
  }

  private cleanup(): void {
    if (this.runtimeDir) rmSync(this.runtimeDir, { recursive: true, force: true });
    this.runtimeDir = undefined;
  }
}

/** A tracer's scratch folder: named after task and tracer, so that recovery can remove it. */
export function tracerRuntimeDir(taskId: string, tracerId: number): string {
  return join(tmpdir(), `scalpels-${taskId}-${tracerId}`);
}

/** Undoes the pending journal entries of one tracer (or of all, when tracerId is undefined). */
export async function undoJournal(
  store: Store,
  tracerId: number | undefined,
  pluginOf: (name: string) => Promise<LoadedPlugin>,
  log: Logger,
): Promise<{ undone: number; failed: string[] }> {
  const failed: string[] = [];
  let undone = 0;
  for (const entry of await store.pendingJournal(tracerId)) {
    try {
      const { manifest } = await pluginOf(entry.plugin);
      if (!manifest.undo) throw new Error('plugin has no undo()');
      await manifest.undo(entry.action, entry.options as OptionValues);
      await store.markUndone(entry.id);
      undone++;
    } catch (e) {
      const msg = `could not undo "${entry.action.description}" (${entry.plugin}): ${errorMessage(e)}`;
      log.error(msg);
      failed.push(msg);
    }
  }
  return { undone, failed };
}

/** A task whose tracers are running. */
export class RunningTask {
  constructor(
    readonly task: TaskRow,
    readonly tracers: readonly TracerRun[],
    private readonly store: Store,
    private readonly clock: Clock,
    /** False for a task that spans nodes: its front end closes it, not each node. */
    private readonly ownsTask = true,
  ) {}

  /** Whether a tracer of this task is still live. */
  get live(): boolean {
    return this.tracers.some((t) => !t.isEnded);
  }

  /**
   * Stops the named tracers (all when none are named), in parallel; once none is live, the task
   * is closed.
   */
  async stop(names?: readonly string[]): Promise<TracerOutcome[]> {
    const chosen = names?.length
      ? this.tracers.filter((t) => names.includes(t.name))
      : this.tracers;
    const closing =
      chosen.length === this.tracers.filter((t) => !t.isEnded).length || !names?.length;
    if (closing && this.ownsTask) await this.store.updateTask(this.task.id, { status: 'stopping' });
    const outcomes = await Promise.all(chosen.map((t) => t.stop()));
    if (!this.live && this.ownsTask)
      await this.store.updateTask(this.task.id, { status: 'stopped', stoppedAt: this.clock.now() });
    return outcomes;
  }
}

export interface StartOptions {
  name?: string;
  labels?: Record<string, string>;
  /** Restart policy for every tracer of the task: crashed workers are restarted up to this many times. */
  restarts?: number;
  /** Join a task created by a cluster front end instead of creating one. */
  taskId?: string;
}

@injectable()
export class TaskService {
  constructor(
    @inject(TOKENS.Config) private readonly config: Config,
    @inject(TOKENS.PluginRegistry) private readonly registry: PluginRegistry,
    @inject(TOKENS.StoreProvider) private readonly stores: StoreProvider,
    @inject(TOKENS.TargetResolver) private readonly targets: TargetResolver,
    @inject(TOKENS.Logger) private readonly log: Logger,
    @inject(TOKENS.Clock) private readonly clock: Clock,
  ) {}

  /**
   * Loads plugins, validates options and runs each plugin's full check. Touches no store: bad
   * input is refused before anything is written.
   */
  async prepare(requests: readonly TracerRequest[], targeted: boolean): Promise<PreparedTracer[]> {
    if (requests.length === 0)
      throw new UserError('no tracer given (use -t NAME; see `scalpels plugins list`)');
    const seen = new Set<string>();
    for (const r of requests) {
      if (seen.has(r.name)) throw new UserError(`tracer "${r.name}" given twice`);
      seen.add(r.name);
    }
    const loaded = await Promise.all(requests.map((r) => this.registry.load(r.name)));
    const withOptions = requests.map((r, i) => {
      const plugin = loaded[i]!;
      const options = validateOptions(plugin.manifest, r.options);
      if (plugin.manifest.target === 'required' && !targeted)
        throw new UserError(
          `${r.name}: needs a target (--pid, --service, or \`scalpels run -- CMD\`)`,
        );
      return { plugin, options };
    });
    return Promise.all(
      withOptions.map(async ({ plugin, options }) => {
        let check: CheckResult;
        try {
          check = await plugin.manifest.check(checkContext(options, 'full', plugin.info.dir));
        } catch (e) {
          throw new UserError(`${plugin.info.name}: check failed: ${firstLine(errorMessage(e))}`);
        }
        if (check.status !== 'ok')
          throw new UserError(
            `${plugin.info.name} cannot run here: ${check.detail}${check.hint ? ` (fix: ${check.hint})` : ''}`,
          );
        return { plugin, options, check };
      }),
    );
  }

  resolveTarget(req: TargetRequest): Target {
    return this.targets.resolve(req);
  }

  /**
   * Creates the task and starts its tracers, each from its own child container. If any tracer
   * fails to start, the ones already started are stopped and the task is marked failed.
   */
  async start(
    container: DependencyContainer,
    prepared: readonly PreparedTracer[],
    target: Target,
    opts: StartOptions = {},
  ): Promise<RunningTask> {
    const store = this.stores.get();
    const me = readStat(process.pid);
    const startedAt = this.clock.now();
    const joined = opts.taskId ? await store.findTask(opts.taskId) : undefined;
    if (opts.taskId && !joined) throw new UserError(`no task ${opts.taskId} in ${store.url}`);
    const task =
      joined ??
      (await store.createTask({
        name: opts.name ?? prepared.map((p) => p.plugin.info.name).join('+'),
        labels: opts.labels ?? {},
        nodes: [this.config.node],
        ownerPid: process.pid,
        ownerStart: me?.startTime ?? null,
        target: target.description,
        startedAt,
      }));
    const runs: TracerRun[] = [];
    for (const p of prepared) {
      const row = await store.createTracer({
        taskId: task.id,
        tracer: p.plugin.info.name,
        pluginPackage: p.plugin.info.package,
        pluginVersion: p.plugin.info.version,
        node: this.config.node,
        options: p.options as Record<string, unknown>,
        technique: p.check.technique ?? null,
      });
      const child = container.createChildContainer();
      child.register<TracerSpec>(TOKENS.TracerSpec, {
        useValue: { prepared: p, row, task, target, maxRestarts: opts.restarts ?? 0 },
      });
      child.register(TOKENS.TracerRun, { useClass: TracerRun });
      runs.push(child.resolve<TracerRun>(TOKENS.TracerRun));
    }
    const started = await Promise.allSettled(runs.map((r) => r.start()));
    const failure = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failure) {
      await Promise.all(
        runs.filter((_, i) => started[i]!.status === 'fulfilled').map((r) => r.stop()),
      );
      if (!joined)
        await store.updateTask(task.id, { status: 'failed', stoppedAt: this.clock.now() });
      throw failure.reason;
    }
    return new RunningTask(task, runs, store, this.clock, !joined);
  }

  /**
   * Finds tracers left live by an owner that died (a killed CLI or agent): kills their workers
   * when pid and start time still match (never a recycled pid), undoes their journal, and marks
   * them `interrupted`. Returns how many tracers were recovered.
   */
  async recover(): Promise<number> {
    return (await this.recoverDetailed()).tracers;
  }

  private async recoverDetailed(): Promise<{ tracers: number; undone: number; failed: string[] }> {
    const store = this.stores.get();
    const live = await store.liveTracers();
    const tasks = new Map<string, TaskRow | undefined>();
    let recovered = 0;
    let undone = 0;
    const failed: string[] = [];
    for (const t of live) {
      // A shared store (Redis) holds other nodes' tracers: only this node's are ours to reap.
      if (t.node !== this.config.node) continue;
      if (!tasks.has(t.taskId)) tasks.set(t.taskId, await store.findTask(t.taskId));
      const task = tasks.get(t.taskId);
      const ownerAlive = task?.ownerPid ? isSameProcess(task.ownerPid, task.ownerStart) : false;
      if (ownerAlive) continue;
      if (t.workerPid && isSameProcess(t.workerPid, t.workerStart)) {
        killGroup(t.workerPid, 'SIGKILL');
        this.log.info(
          `killed orphaned worker ${t.workerPid} of tracer ${t.tracer} (task ${t.taskId})`,
        );
      }
      const u = await undoJournal(store, t.id, (name) => this.registry.load(name), this.log);
      rmSync(tracerRuntimeDir(t.taskId, t.id), { recursive: true, force: true });
      undone += u.undone;
      failed.push(...u.failed);
      await store.updateTracer(t.id, {
        status: 'interrupted',
        error: 'owner process died',
        stoppedAt: this.clock.now(),
      });
      recovered++;
    }
    for (const [id, task] of tasks) {
      if (!task || !task.ownerPid || !['running', 'stopping'].includes(task.status)) continue;
      const tracers = await store.listTracers(id);
      if (tracers.every((t) => !['starting', 'running', 'stopping'].includes(t.status)))
        await store.updateTask(id, { status: 'interrupted', stoppedAt: this.clock.now() });
    }
    return { tracers: recovered, undone, failed };
  }

  /** `scalpels recover`: recover dead owners' tracers, then retry every pending undo. */
  async recoverAll(): Promise<{ tracers: number; undone: number; failed: string[] }> {
    const first = await this.recoverDetailed();
    const tracers = first.tracers;
    const store = this.stores.get();
    const liveIds = new Set((await store.liveTracers()).map((t) => t.id));
    let undone = first.undone;
    const failed: string[] = [...first.failed];
    const pendingTracers = new Set((await store.pendingJournal()).map((e) => e.tracerId));
    for (const tracerId of pendingTracers) {
      if (liveIds.has(tracerId)) continue; // a running tracer still needs its change
      const r = await undoJournal(store, tracerId, (name) => this.registry.load(name), this.log);
      undone += r.undone;
      failed.push(...r.failed);
    }
    return { tracers, undone, failed };
  }
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}
