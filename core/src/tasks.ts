import { rmSync } from 'node:fs';
import { inject, injectable, type DependencyContainer } from 'tsyringe';
import type { CheckResult, OptionValues, Target, TrustPolicy, WorkerContext } from './api.js';
import { UserError, errorMessage, isUserError } from './errors.js';
import { defaultOptions, resolveAliases, validateOptions } from './options.js';
import { LEASE_ACTION, Leases, leaseKey } from './leases.js';
import { isSameProcess, readStat } from './procfs.js';
import { PluginRegistry, type LoadedPlugin } from './registry.js';
import { WorkerRunner, type RunnerStats, type TracerOutcome } from './runner.js';
import { checkContext, StoreProvider, type Clock, type Config, type Logger } from './services.js';
import type { ProbeLog } from './check-context.js';
import { killGroup, type ProcessSpawner } from './spawner.js';
import type { Store, TaskRow, TracerRow } from './store/types.js';
import { TargetResolver, type TargetRequest } from './targets.js';
import { TOKENS } from './tokens.js';
import { makeScratchDir, removeScratchDirs } from './private-dir.js';

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
  /** What root allowed when the tracer was prepared; handed to setup and worker. */
  policy?: TrustPolicy;
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
  private stoppingWrite: Promise<void> | undefined;

  constructor(
    @inject(TOKENS.TracerSpec) readonly spec: TracerSpec,
    @inject(TOKENS.StoreProvider) private readonly stores: StoreProvider,
    @inject(TOKENS.ProcessSpawner) private readonly spawner: ProcessSpawner,
    @inject(TOKENS.Logger) private readonly log: Logger,
    @inject(TOKENS.Clock) private readonly clock: Clock,
    @inject(TOKENS.Config) private readonly config: Config,
    @inject(TOKENS.PluginRegistry) private readonly registry: PluginRegistry,
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
    // A fresh folder of root's own (mkdtemp under /run/scalpels), never a guessable /tmp path.
    this.runtimeDir = makeScratchDir(tracerRuntimePrefix(task.id, row.id));
    this.ctx = {
      target,
      taskId: task.id,
      tracerId: row.id,
      technique: prepared.check.technique,
      runtimeDir: this.runtimeDir,
      pluginDir: info.dir,
      policy: prepared.policy,
    };
    try {
      const node = this.config.node;
      const options = prepared.options as Record<string, unknown>;
      if (manifest.setup)
        await manifest.setup(prepared.options, {
          ...this.ctx,
          journal: (action) => store.journal(row.id, manifest.name, action, options, node),
          lease: async (req) => {
            const key = leaseKey(node, req);
            // Journaled before the reference is taken: a crash in between still releases it.
            await store.journal(
              row.id,
              manifest.name,
              { kind: LEASE_ACTION, data: { key }, description: `release the lease on ${key}` },
              options,
              node,
            );
            return new Leases(store).acquire(
              key,
              { tracerId: row.id, node },
              { plugin: manifest.name, options },
              req.change,
              (h) => deadHolder(store, node, h),
            );
          },
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
    // The worker first: a store that is away must never keep it running.
    const stopping = this.runner?.stop();
    this.stoppingWrite = this.bestEffort('its stopping state', () =>
      this.stores.get().updateTracer(this.spec.row.id, { status: 'stopping' }),
    );
    await stopping;
    return this.finished;
  }

  /**
   * Store bookkeeping that must not stand in the way of stopping: a failure is one clear warning
   * (the tracer's state is fixed later by `scalpels recover`), never a stop that hangs or throws.
   */
  private async bestEffort(what: string, write: () => Promise<unknown>): Promise<void> {
    try {
      await write();
    } catch (e) {
      this.log.warn(
        `tracer ${this.name}: could not record ${what} in the store (${firstLine(errorMessage(e))}); run \`scalpels recover\` once it is back`,
      );
    }
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
    // A note qualifies the figures (an undercount and why): said now and kept with the tracer,
    // in the error field when there is no error, so every report shows it.
    const notes = o.notes ?? [];
    for (const n of notes) this.log.warn(`tracer ${this.name}: note: ${n}`);
    await this.bestEffort('the undo of its changes', () => this.undo());
    await this.stoppingWrite; // never overwrite the final state with 'stopping'
    await this.bestEffort('its final state', () =>
      store.updateTracer(this.spec.row.id, {
        status: o.status,
        exitCode: o.exitCode,
        error: o.error ?? (notes.length > 0 ? `note: ${notes.join('; ')}` : null),
        stderrTail: o.stderrTail || null,
        stoppedAt: this.clock.now(),
        records: o.records,
        parseErrors: o.parseErrors,
        dropped: o.dropped,
      }),
    );
    this.cleanup();
    return o;
  }

  /** Restores what the tracer changed outside itself, newest change first. */
  private async undo(): Promise<void> {
    const own = this.spec.prepared.plugin;
    await undoJournal(
      this.stores.get(),
      this.spec.row.id,
      // A lease may have been changed by another plugin's tracer (same resource key).
      async (name) => (name === own.info.name ? own : this.registry.load(name)),
      this.log,
      this.config.node,
    );
  }

  private cleanup(): void {
    if (this.runtimeDir) rmSync(this.runtimeDir, { recursive: true, force: true });
    this.runtimeDir = undefined;
  }
}

/** A tracer's scratch folders start with this: named after task and tracer, so that recovery can remove them. */
export function tracerRuntimePrefix(taskId: string, tracerId: number): string {
  return `tracer-${taskId}-${tracerId}-`;
}

/**
 * Undoes the pending journal entries of one tracer (or of all, when tracerId is undefined),
 * newest first: only this node's entries, of tracers the store knows on this node and of the
 * plugin that tracer ran. Options handed to undo() are checked against the plugin's option specs
 * (a journal entry is data from the store, which a shared store lets others write).
 */
export async function undoJournal(
  store: Store,
  tracerId: number | undefined,
  pluginOf: (name: string) => Promise<LoadedPlugin>,
  log: Logger,
  node: string,
): Promise<{ undone: number; failed: string[] }> {
  const failed: string[] = [];
  let undone = 0;
  const tracers = new Map<number, TracerRow | undefined>();
  for (const entry of await store.pendingJournal(tracerId)) {
    if (entry.node !== null && entry.node !== node) continue; // another node's
    if (!tracers.has(entry.tracerId))
      tracers.set(entry.tracerId, await store.tracer(entry.tracerId));
    const tracer = tracers.get(entry.tracerId);
    if (!tracer || tracer.node !== node || tracer.tracer !== entry.plugin) {
      const msg = `journal entry ${entry.id} (${entry.plugin}, tracer ${entry.tracerId}) matches no tracer of node ${node}: left alone`;
      log.warn(msg);
      failed.push(msg);
      continue;
    }
    try {
      if (entry.action.kind === LEASE_ACTION) {
        const key = (entry.action.data as { key?: unknown } | null)?.key;
        if (typeof key !== 'string') throw new Error('lease entry without a key');
        await new Leases(store).release(
          key,
          { tracerId: entry.tracerId, node },
          async (r) => {
            const { manifest } = await pluginOf(r.plugin);
            if (!manifest.undo) throw new Error(`plugin ${r.plugin} has no undo()`);
            await manifest.undo(r.action, undoOptions(manifest, r.options));
          },
          (h) => deadHolder(store, node, h),
        );
      } else {
        const { manifest } = await pluginOf(entry.plugin);
        if (!manifest.undo) throw new Error('plugin has no undo()');
        await manifest.undo(entry.action, undoOptions(manifest, entry.options));
      }
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

/**
 * Whether a lease holder is a tracer of this node that can no longer release by itself: its row
 * is final, or the process that owned it died. Holders of other nodes, and tracers the store does
 * not know, are never judged here.
 */
async function deadHolder(
  store: Store,
  node: string,
  h: { tracerId: number; node: string },
): Promise<boolean> {
  if (h.node !== node) return false;
  const t = await store.tracer(h.tracerId);
  if (!t) return false;
  if (!['starting', 'running', 'stopping'].includes(t.status)) return true;
  const task = await store.findTask(t.taskId);
  return task?.ownerPid ? !isSameProcess(task.ownerPid, task.ownerStart) : false;
}

/**
 * Options stored with a journal entry, as undo() gets them: every key must be an option the
 * plugin declares, strings must match their choices and patterns. Liveness checks (a pid still
 * running, a path still there) are not redone: the tracer may be long gone. A journal written
 * before an option was renamed names it by its former name, and one written before an option
 * existed lacks it: both are brought to the plugin's current options, defaults applied.
 */
function undoOptions(
  manifest: LoadedPlugin['manifest'],
  journaled: Record<string, unknown>,
): OptionValues {
  // Silent: nobody typed these names, an older version stored them.
  const stored = resolveAliases(manifest, journaled, () => {});
  for (const [key, value] of Object.entries(stored)) {
    const spec = manifest.options[key];
    if (!spec || !Object.hasOwn(manifest.options, key))
      throw new UserError(`${manifest.name}: journal names unknown option "${key}": refused`);
    if (value === undefined || value === null) continue;
    if (spec.type === 'string') {
      const bad =
        typeof value !== 'string' ||
        (spec.choices && !spec.choices.includes(value)) ||
        (spec.pattern && !spec.pattern.test(value));
      if (bad)
        throw new UserError(`${manifest.name}: journal option "${key}" is not valid: refused`);
    }
  }
  const options: OptionValues = { ...defaultOptions(manifest) };
  for (const [key, value] of Object.entries(stored))
    if (value !== undefined && value !== null) options[key] = value as OptionValues[string];
  return options;
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
    private readonly log?: Logger,
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
    // Workers are signalled first; the task's state in the store is best effort.
    const outcomes = Promise.all(chosen.map((t) => t.stop()));
    if (closing && this.ownsTask)
      await this.bestEffort(() => this.store.updateTask(this.task.id, { status: 'stopping' }));
    const done = await outcomes;
    if (!this.live && this.ownsTask)
      await this.bestEffort(() =>
        this.store.updateTask(this.task.id, { status: 'stopped', stoppedAt: this.clock.now() }),
      );
    return done;
  }

  /** The pids of the tracers' workers still running (their process groups), for a forced exit. */
  get workerPids(): number[] {
    return this.tracers.flatMap((t) => (!t.isEnded && t.pid ? [t.pid] : []));
  }

  private async bestEffort(write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (e) {
      const msg = `task ${this.task.id}: could not record its state in the store (${firstLine(errorMessage(e))}); run \`scalpels recover\` once it is back`;
      if (this.log) this.log.warn(msg);
      else throw e;
    }
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
  private readonly checks = new Map<string, { result: Promise<CheckResult>; until: number }>();

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
      const options = validateOptions(plugin.manifest, r.options, this.config.policy, (m) =>
        this.log.warn(m),
      );
      if (plugin.manifest.target === 'required' && !targeted)
        throw new UserError(
          `${r.name}: needs a target (--pid, --service, or \`scalpels run -- CMD\`)`,
        );
      return { plugin, options };
    });
    return Promise.all(
      withOptions.map(async ({ plugin, options }) => ({
        plugin,
        options,
        check: await this.readiness(plugin, options),
        policy: this.config.policy,
      })),
    );
  }

  /**
   * Runs a plugin's full check. A failure that may pass (a probe that timed out or could not be
   * spawned on a busy host, or a check that says so) is retried with more time per probe, within
   * a bounded budget; a real "cannot run here" is refused at once.
   */
  private async readiness(plugin: LoadedPlugin, options: OptionValues): Promise<CheckResult> {
    // Identical checks at once (a burst of starts on an agent) share one run, and a passed check
    // holds for a few seconds: readiness does not change that fast, and a burst of probes is
    // what makes them time out on a busy host.
    const key = `${plugin.info.package}@${plugin.info.version}\0${JSON.stringify(options)}`;
    const cached = this.checks.get(key);
    if (cached && cached.until > this.clock.now()) return cached.result;
    const result = this.checkWithRetries(plugin, options);
    this.checks.set(key, { result, until: Infinity });
    try {
      await result;
      this.checks.set(key, { result, until: this.clock.now() + CHECK_REUSE_MS });
    } catch {
      this.checks.delete(key);
    }
    return result;
  }

  private async checkWithRetries(
    plugin: LoadedPlugin,
    options: OptionValues,
  ): Promise<CheckResult> {
    const name = plugin.info.name;
    const deadline = this.clock.now() + READINESS_BUDGET_MS;
    for (let attempt = 0; ; attempt++) {
      const probes: ProbeLog = { transient: false };
      let check: CheckResult | undefined;
      let thrown: unknown;
      try {
        check = await plugin.manifest.check(
          checkContext(options, 'full', plugin.info.dir, this.config.policy, probes, 2 ** attempt),
        );
      } catch (e) {
        thrown = e;
      }
      if (check?.status === 'ok') return check;
      const transient = probes.transient || check?.transient === true;
      if (transient && attempt < READINESS_RETRIES && this.clock.now() < deadline) {
        this.log.warn(
          `${name}: check failed for a reason that may pass (${probes.why ?? check?.detail ?? firstLine(errorMessage(thrown))}); retrying`,
        );
        await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
        continue;
      }
      const tries = attempt > 0 ? ` (after ${attempt + 1} tries)` : '';
      // A refusal (an untrusted file, a retired setting) already names plugin and option.
      if (!check && isUserError(thrown)) throw new UserError(firstLine(thrown.message));
      if (!check)
        throw new UserError(`${name}: check failed${tries}: ${firstLine(errorMessage(thrown))}`);
      throw new UserError(
        `${name} cannot run here${tries}: ${check.detail}${check.hint ? ` (fix: ${check.hint})` : ''}`,
      );
    }
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
    // One rule for pid reuse: a root is its pid and start time. A root that exited since the
    // target was resolved (its pid possibly taken by another process) is not traced.
    const gone = (target.roots ?? []).filter((r) => !isSameProcess(r.pid, r.startTime));
    if (gone.length > 0)
      throw new UserError(
        `target ${gone.map((r) => `pid ${r.pid}${r.service ? ` (${r.service})` : ''}`).join(', ')} exited since it was resolved: not traced (start again)`,
      );
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
    return new RunningTask(task, runs, store, this.clock, !joined, this.log);
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
      const u = await undoJournal(
        store,
        t.id,
        (name) => this.registry.load(name),
        this.log,
        this.config.node,
      );
      removeScratchDirs(tracerRuntimePrefix(t.taskId, t.id));
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
    const node = this.config.node;
    // A shared store holds other nodes' entries: only this node's are ours to undo.
    const pendingTracers = new Set(
      (await store.pendingJournal())
        .filter((e) => e.node === null || e.node === node)
        .map((e) => e.tracerId),
    );
    for (const tracerId of pendingTracers) {
      if (liveIds.has(tracerId)) continue; // a running tracer still needs its change
      const r = await undoJournal(
        store,
        tracerId,
        (name) => this.registry.load(name),
        this.log,
        node,
      );
      undone += r.undone;
      failed.push(...r.failed);
    }
    return { tracers, undone, failed };
  }
}

/** Retries of a check that failed transiently, and the time they may take in all. */
const READINESS_RETRIES = 3;
const READINESS_BUDGET_MS = 90_000;
/** How long a passed check is reused for identical requests. */
const CHECK_REUSE_MS = 5000;

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}
