import type {
  DroppedNotice,
  ParseDiagnostic,
  ParseNote,
  ParseResult,
  Parser,
  Schema,
  TraceRecord,
  WorkerSpec,
} from './api.js';
import { LineSplitter, TailBuffer } from './lines.js';
import type { ProcessSpawner, WorkerProcess } from './spawner.js';

/** Where a tracer's records go. Sync sinks return nothing; async ones return a promise. */
export interface RecordSink {
  write(records: TraceRecord[]): void | Promise<void>;
  /** Records the sink itself had to drop (a full buffer while its backend was away). */
  dropped?(): number;
  /** Resolves once everything written so far is durably in the backend (or dropped and counted). */
  flush?(): Promise<void>;
}

export interface RunnerStats {
  records: number;
  parseErrors: number;
  dropped: number;
}

export type TracerOutcome = RunnerStats & {
  status: 'stopped' | 'failed';
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stderrTail: string;
  /** Why it failed, in one line. */
  error?: string;
  /** First few parse diagnostics, for display. */
  diagnostics: string[];
  /** Notes the parser gave about the figures (see ParseNote), each once. */
  notes: string[];
  /** The worker ignored the stop signal for the whole grace period and was killed. */
  forcedKill: boolean;
};

export interface RunnerOptions {
  /** Records per store batch. */
  batchSize?: number;
  /** Flush a partial batch after this long, so live views see fresh data. */
  flushMs?: number;
  /** Called after flushes with the running totals (at most once a second). */
  onProgress?: (stats: RunnerStats) => void;
  now?: () => number;
}

const MAX_DIAGNOSTICS = 10;

/**
 * Runs one worker: spawns it, splits its stdout into lines, parses them, batches records into
 * the sink with back-pressure, keeps the stderr tail, and stops it (signal, grace, SIGKILL to
 * the process group).
 */
export class WorkerRunner {
  readonly stats: RunnerStats = { records: 0, parseErrors: 0, dropped: 0 };
  private proc: WorkerProcess | undefined;
  private batch: TraceRecord[] = [];
  private readonly stderrTail = new TailBuffer(8192);
  private readonly diagnostics: string[] = [];
  private readonly notes: string[] = [];
  private stopRequested = false;
  private killedAfterGrace = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private lastProgress = 0;
  private pendingWrite: Promise<void> | undefined;
  private sinkError: string | undefined;
  private readyResolve: (() => void) | undefined;
  private stdoutDone!: Promise<void>;
  private outcome: Promise<TracerOutcome> | undefined;
  private now: () => number;
  private chunkTs = 0;

  constructor(
    private readonly spawner: ProcessSpawner,
    private readonly spec: WorkerSpec,
    private readonly parser: Parser,
    private readonly schema: Schema,
    private readonly sink: RecordSink,
    private readonly options: RunnerOptions = {},
  ) {
    this.now = options.now ?? Date.now;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Spawns the worker and resolves once it is ready (see WorkerSpec.ready). */
  async start(): Promise<void> {
    const proc = await this.spawner.spawn(this.spec);
    this.proc = proc;
    const ready = new Promise<void>((resolve) => (this.readyResolve = resolve));
    const wantsReady = this.spec.ready?.stdout ?? this.spec.ready?.stderr;
    if (!wantsReady) this.markReady();

    const stdoutLines = new LineSplitter(
      (line) => this.onLine(line),
      undefined,
      () => this.diagnose('line longer than 1 MiB: dropped up to its end'),
    );
    this.stdoutDone = new Promise<void>((resolve) => {
      proc.stdout.on('data', (chunk: Buffer) => {
        this.chunkTs = this.now();
        stdoutLines.push(chunk);
        if (this.batch.length >= (this.options.batchSize ?? 8192)) this.flush();
      });
      proc.stdout.once('end', () => {
        stdoutLines.end();
        resolve();
      });
      proc.stdout.once('error', () => resolve());
    });
    const stderrReady = this.spec.ready?.stderr;
    const stderrLines = stderrReady
      ? new LineSplitter((line) => {
          if (stderrReady.test(line)) this.markReady();
        })
      : undefined;
    proc.stderr.on('data', (chunk: Buffer) => {
      this.stderrTail.push(chunk);
      stderrLines?.push(chunk);
    });
    this.flushTimer = setInterval(() => this.flush(), this.options.flushMs ?? 250);
    this.flushTimer.unref();
    this.outcome = this.finish(proc);

    const timeoutMs = this.spec.ready?.timeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const failed = await Promise.race([
      ready.then(() => undefined),
      this.outcome.then((o) =>
        o.signal
          ? `worker killed by ${o.signal} before it was ready`
          : o.exitCode !== null
            ? `worker exited with code ${o.exitCode} before it was ready`
            : (o.error ?? 'worker ended before it was ready'),
      ),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve(`worker not ready after ${timeoutMs} ms`), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (failed !== undefined) {
      await this.stop();
      const tail = this.stderrTail.toString().trim().split('\n').slice(-3).join(' | ');
      throw new Error(tail ? `${failed}: ${tail}` : failed);
    }
  }

  /** Resolves when the worker has ended, by itself or through stop(). */
  get done(): Promise<TracerOutcome> {
    if (!this.outcome) throw new Error('worker not started');
    return this.outcome;
  }

  /** Asks the worker to stop (plugin's signal), waits the grace period, then kills its process group. */
  async stop(): Promise<TracerOutcome> {
    const proc = this.proc;
    if (!proc || !this.outcome) throw new Error('worker not started');
    if (!this.stopRequested) {
      this.stopRequested = true;
      const graceMs = this.spec.stop?.graceMs ?? 5000;
      proc.signalGroup(this.spec.stop?.signal ?? 'SIGTERM');
      const timer = setTimeout(() => {
        this.killedAfterGrace = true;
        proc.signalGroup('SIGKILL');
      }, graceMs);
      void this.outcome.finally(() => clearTimeout(timer));
    }
    return this.outcome;
  }

  private markReady(): void {
    this.readyResolve?.();
    this.readyResolve = undefined;
  }

  private async finish(proc: WorkerProcess): Promise<TracerOutcome> {
    const exit = await proc.exited;
    // Decided now, before the awaits below, during which a stop() may still arrive: a worker that
    // died on its own stays failed. A signal that is neither the stop signal nor the SIGKILL after
    // the grace period came from elsewhere, whenever a stop was asked.
    const stopSignal = this.spec.stop?.signal ?? 'SIGTERM';
    const exitedAlone =
      !this.stopRequested ||
      (exit.signal !== null &&
        exit.signal !== stopSignal &&
        !(exit.signal === 'SIGKILL' && this.killedAfterGrace));
    // The leader is gone; anything it left in its group goes too, so no orphan survives.
    proc.signalGroup('SIGKILL');
    await this.stdoutDone;
    if (this.parser.end) this.take(safeParse(() => this.parser.end!()));
    clearInterval(this.flushTimer);
    this.flush();
    await this.pendingWrite;
    await this.sink.flush?.();
    this.stats.dropped += this.sink.dropped?.() ?? 0;
    this.options.onProgress?.({ ...this.stats });

    const cleanExit = exit.exitCode === 0;
    let error: string | undefined;
    if (exit.error) error = exit.error;
    else if (exitedAlone && !(cleanExit && this.spec.mayExit))
      error = exit.signal
        ? `worker killed by ${exit.signal}`
        : `worker exited with code ${exit.exitCode} before it was stopped`;
    else if (!exitedAlone && exit.exitCode !== null && exit.exitCode !== 0)
      error = `worker exited with code ${exit.exitCode} while stopping`;
    // The worker's own last word, when it said one, is usually the reason.
    const lastLine = this.stderrTail.toString().trim().split('\n').pop()?.trim();
    if (error && lastLine) error = `${error}: ${lastLine.slice(0, 300)}`;
    if (this.sinkError) error = `store write failed: ${this.sinkError}`;
    return {
      ...this.stats,
      status: error ? 'failed' : 'stopped',
      exitCode: exit.exitCode,
      signal: exit.signal,
      stderrTail: this.stderrTail.toString(),
      error,
      diagnostics: this.diagnostics,
      notes: this.notes,
      forcedKill: this.killedAfterGrace,
    };
  }

  private onLine(line: string): void {
    const ready = this.spec.ready?.stdout;
    if (ready && this.readyResolve && ready.test(line)) this.markReady();
    this.take(safeParse(() => this.parser.line(line)));
  }

  private take(result: ParseResult | DroppedNotice | ParseNote): void {
    if (result === null || result === undefined) return;
    if (Array.isArray(result)) {
      for (const r of result as readonly (TraceRecord | ParseNote)[]) this.take(r);
      return;
    }
    const one = result as TraceRecord | DroppedNotice | ParseNote | ParseDiagnostic;
    if (one.kind === 'diagnostic') this.diagnose(one.message);
    else if (one.kind === 'note') {
      if (!this.notes.includes(one.message) && this.notes.length < MAX_DIAGNOSTICS)
        this.notes.push(one.message);
    } else if (one.kind === 'dropped') this.stats.dropped += one.count;
    else this.accept(one);
  }

  private accept(r: TraceRecord): void {
    if (r.kind === 'sample') {
      if (this.schema.series[r.series] === undefined)
        return this.diagnose(`unknown series "${r.series}"`);
      if (!Number.isFinite(r.value))
        return this.diagnose(`series "${r.series}": value is not a number`);
    } else if (r.kind === 'event') {
      if (this.schema.events?.[r.type] === undefined)
        return this.diagnose(`unknown event type "${r.type}"`);
    } else {
      return this.diagnose('parser returned something that is not a record');
    }
    // The store refused a write: the worker is being stopped; what still comes is counted, not kept.
    if (this.sinkError !== undefined) {
      this.stats.dropped++;
      return;
    }
    if (r.ts === undefined) r.ts = this.chunkTs || this.now();
    this.batch.push(r);
  }

  private diagnose(message: string): void {
    this.stats.parseErrors++;
    if (this.diagnostics.length < MAX_DIAGNOSTICS) this.diagnostics.push(message);
  }

  private flush(): void {
    if (this.batch.length === 0 || this.sinkError) return;
    const batch = this.batch;
    this.batch = [];
    const count = batch.length;
    try {
      const pending = this.sink.write(batch);
      if (pending) {
        // Async sink: stop reading the worker's stdout until the store caught up, so the pipe
        // fills and the worker blocks instead of our memory growing.
        this.proc?.stdout.pause();
        const prev = this.pendingWrite ?? Promise.resolve();
        this.pendingWrite = prev
          .then(() => pending)
          .then(
            () => {
              this.stats.records += count;
              this.proc?.stdout.resume();
              this.progress();
            },
            (e: Error) => this.sinkFailed(e, count),
          );
        return;
      }
      this.stats.records += count;
      this.progress();
    } catch (e) {
      this.sinkFailed(e as Error, count);
    }
  }

  /**
   * A store write failed: that batch and everything after it are dropped (and counted), and the
   * worker is stopped. The pipe keeps being drained so the worker is not blocked while it stops.
   */
  private sinkFailed(e: Error, count: number): void {
    this.sinkError ??= e.message;
    this.stats.dropped += count + this.batch.length;
    this.batch = [];
    this.proc?.stdout.resume();
    if (this.proc && !this.stopRequested) void this.stop();
  }

  private progress(): void {
    const t = this.now();
    if (this.options.onProgress && t - this.lastProgress >= 1000) {
      this.lastProgress = t;
      this.options.onProgress({
        ...this.stats,
        dropped: this.stats.dropped + (this.sink.dropped?.() ?? 0),
      });
    }
  }
}

function safeParse(
  fn: () => ParseResult | DroppedNotice | ParseNote,
): ParseResult | DroppedNotice | ParseNote {
  try {
    return fn();
  } catch (e) {
    return { kind: 'diagnostic', message: `parser threw: ${(e as Error).message}` };
  }
}
