import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Redis as RedisClient, RedisOptions } from 'ioredis';
import type { Schema, TraceRecord, UndoAction } from '../api.js';
import { UserError } from '../errors.js';
import { readOwnSecretFile } from '../trust.js';
import { ensurePrivateDir, openExclusive, privateDir } from '../private-dir.js';
import type { RecordSink } from '../runner.js';
import { canonicalLabels, fastLabelsKey, newTaskId } from './keys.js';
import type {
  EventRanking,
  EventSummary,
  EventTopRow,
  JournalEntry,
  LeaseRow,
  NewTask,
  NewTracer,
  SeriesSummary,
  Store,
  TaskPatch,
  TaskRow,
  TracerPatch,
  TracerRow,
} from './types.js';

export interface RedisStoreOptions {
  /** Key prefix (URL `?prefix=`), default `scalpels:`. */
  prefix: string;
  /** Approximate cap on entries per task stream (`XADD MAXLEN ~`), URL `?maxlen=`. */
  maxlen: number;
  /** Memory held for batches while Redis is away, URL `?buffer=` (bytes), default 64 MiB. */
  bufferBytes: number;
  /** Spill file size limit, URL `?spill=` (bytes), default 1 GiB. */
  spillBytes: number;
  /**
   * Folder for spill files, URL `?spilldir=`; by default `spill/` in the private runtime folder
   * (`/run/scalpels` for root). Made or checked when first needed: ours, not a symlink, 0700.
   */
  spillDir: string | undefined;
}

/**
 * Reads a Redis password from a file: not a symlink, owned by root or this user, not readable
 * by others (0600 or 0640). A password in a URL on the command line shows in /proc/PID/cmdline;
 * a file does not.
 */
export function readPasswordFile(path: string): string {
  const password = readOwnSecretFile(path, 'Redis password file', {
    groupReadable: true,
    maxBytes: 4096,
  }).replace(/\r?\n$/, '');
  if (!password) throw new UserError(`Redis password file ${path} is empty`);
  return password;
}

/** True when a Redis URL carries its password inline (`redis://:pw@host`). */
export function urlHasPassword(url: string): boolean {
  try {
    const u = new URL(url);
    return (u.protocol === 'redis:' || u.protocol === 'rediss:') && u.password !== '';
  } catch {
    return false;
  }
}

/**
 * Parses `redis://[:password@]host:port/db?prefix=..&maxlen=..` (or `rediss://` for TLS) into
 * ioredis options. The password stays in memory: never logged, never in a worker's argv. It may
 * come from a file instead: `?passwordfile=/etc/scalpels/redis.pw`, or
 * `SCALPELS_REDIS_PASSWORD_FILE` when the URL names none.
 */
export function parseRedisUrl(
  url: string,
  env: NodeJS.ProcessEnv = process.env,
): {
  options: RedisOptions;
  store: RedisStoreOptions;
  display: string;
} {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UserError(`--store/--redis: not a URL: ${redact(url)}`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    throw new UserError(`not a Redis URL (redis:// or rediss://): ${redact(url)}`);
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0)
    throw new UserError(`Redis URL: bad database number in ${redact(url)}`);
  const num = (k: string, d: number): number => {
    const v = u.searchParams.get(k);
    if (v === null) return d;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0)
      throw new UserError(`Redis URL: ${k} must be a positive number`);
    return n;
  };
  return {
    options: {
      host: u.hostname || '127.0.0.1',
      port: u.port ? Number(u.port) : 6379,
      db,
      username: u.username ? decodeURIComponent(u.username) : undefined,
      password: passwordOf(u, env),
      tls: u.protocol === 'rediss:' ? {} : undefined,
      lazyConnect: true,
      // Fail fast while disconnected: the store buffers by itself (bounded), ioredis must not.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      retryStrategy: (times: number) => Math.min(5000, 100 * 2 ** Math.min(times, 6)),
    },
    store: {
      prefix: u.searchParams.get('prefix') ?? 'scalpels:',
      maxlen: num('maxlen', 1_000_000),
      bufferBytes: num('buffer', 64 << 20),
      spillBytes: num('spill', 1 << 30),
      spillDir: u.searchParams.get('spilldir') ?? undefined,
    },
    display: redact(url),
  };
}

function passwordOf(u: URL, env: NodeJS.ProcessEnv): string | undefined {
  const file = u.searchParams.get('passwordfile');
  if (file) return readPasswordFile(file);
  if (u.password) return decodeURIComponent(u.password);
  if (env.SCALPELS_REDIS_PASSWORD_FILE) return readPasswordFile(env.SCALPELS_REDIS_PASSWORD_FILE);
  return undefined;
}

/** The URL with its password replaced, for messages. */
export function redact(url: string): string {
  return url.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@');
}

/**
 * Resolves once the connection is ready, connecting it if it was never asked to. With the
 * offline queue off, a command sent while connecting fails: every caller waits here first.
 */
/** The longest reconnect backoff of the client (retryStrategy below), plus a margin. */
const RECONNECT_WAIT_MS = 6000;

export function ensureReady(redis: RedisClient, timeoutMs = 5000): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  if (redis.status === 'wait') void redis.connect().catch(() => undefined);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new Error(`not connected (${redis.status})`));
    }, timeoutMs);
    const onReady = (): void => {
      clearTimeout(timer);
      resolve();
    };
    redis.once('ready', onReady);
  });
}

export function connectRedis(url: string): {
  redis: RedisClient;
  store: RedisStoreOptions;
  display: string;
} {
  const { options, store, display } = parseRedisUrl(url);
  // ioredis is loaded only when a Redis URL is used.
  const Redis = createRequire(import.meta.url)('ioredis') as typeof import('ioredis').default;
  const redis = new Redis(options);
  redis.on('error', () => undefined); // reconnects by itself; callers see failed commands
  return { redis, store, display };
}

// ---------------------------------------------------------------------------------------------
// Compact batch encoding: one stream entry per batch, with a dictionary of the series it uses.

interface EncodedBatch {
  /** Series used by this batch: [name, canonical labels JSON]. */
  s: [string, string][];
  /** Samples: [series index, ts, value]. */
  p: [number, number, number][];
  /** Events: [type, key, ts, durationMs|null, value|null, data JSON|null]. */
  e: [string, string, number, number | null, number | null, string | null][];
}

export function encodeBatch(batch: readonly TraceRecord[]): { json: string; records: number } {
  const enc: EncodedBatch = { s: [], p: [], e: [] };
  // name → fast labels key → index into enc.s; canonical labels are computed once per series.
  const index = new Map<string, Map<string, number>>();
  const now = Date.now();
  for (const r of batch) {
    if (r.kind === 'sample') {
      let perName = index.get(r.series);
      if (!perName) index.set(r.series, (perName = new Map()));
      const fast = fastLabelsKey(r.labels);
      let i = perName.get(fast);
      if (i === undefined) {
        i = enc.s.length;
        perName.set(fast, i);
        enc.s.push([r.series, canonicalLabels(r.labels)]);
      }
      enc.p.push([i, r.ts ?? now, r.value]);
    } else {
      enc.e.push([
        r.type,
        r.key,
        r.ts ?? now,
        r.durationMs ?? null,
        r.value ?? null,
        r.data === undefined ? null : JSON.stringify(r.data),
      ]);
    }
  }
  return { json: JSON.stringify(enc), records: batch.length };
}

// ---------------------------------------------------------------------------------------------
// Bounded buffer for batches while Redis is away: memory first, then a spill file, and when
// both are full the oldest batches are dropped and counted.

interface Pending {
  stream: string;
  tracerId: number;
  json: string;
  records: number;
}

export class StreamWriter {
  private memory: Pending[] = [];
  private memoryBytes = 0;
  private spilling = false;
  private spillFile: string | undefined;
  private spillFd: number | undefined;
  private droppedRecords = 0;
  private draining: Promise<void> | undefined;
  private waiters: (() => void)[] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private backoffMs = 100;

  constructor(
    private readonly redis: RedisClient,
    private readonly opts: RedisStoreOptions,
  ) {
    // Back again: catch up now rather than at the end of the current backoff.
    redis.on('ready', () => {
      if (!this.retryTimer) return;
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.backoffMs = 100;
      this.kick();
    });
  }

  /** The spill file's path, its folder made (or checked) on first use. */
  private spillPath(): string {
    if (!this.spillFile) {
      const dir = this.opts.spillDir ? ensurePrivateDir(this.opts.spillDir) : privateDir('spill');
      this.spillFile = join(dir, `spill-${process.pid}-${randomBytes(8).toString('hex')}.jsonl`);
    }
    return this.spillFile;
  }

  get dropped(): number {
    return this.droppedRecords;
  }

  /** Batches not yet in Redis. */
  get backlog(): number {
    return this.memory.length + (this.spilling ? 1 : 0);
  }

  enqueue(p: Pending): void {
    if (this.spilling) this.spill(p);
    else {
      this.memory.push(p);
      this.memoryBytes += p.json.length;
      if (this.memoryBytes > this.opts.bufferBytes) {
        // Memory is full: from here on, new batches go to the spill file (order is kept:
        // memory holds the older ones and is drained first).
        this.spilling = true;
      }
    }
    this.kick();
  }

  private spill(p: Pending): void {
    const size = this.spillFd === undefined ? 0 : fstatSync(this.spillFd).size;
    if (size + p.json.length > this.opts.spillBytes) {
      // Both full: drop the oldest batch we hold, and count it.
      const oldest = this.memory.shift();
      if (oldest) {
        this.memoryBytes -= oldest.json.length;
        this.droppedRecords += oldest.records;
        this.memory.push(p);
        this.memoryBytes += p.json.length;
      } else this.droppedRecords += p.records;
      return;
    }
    try {
      // A new file each time (O_EXCL|O_NOFOLLOW): nothing planted at this path is written through.
      this.spillFd ??= openExclusive(this.spillPath());
      writeSync(this.spillFd, `${JSON.stringify(p)}\n`);
    } catch {
      // No disk to spill to: the batch is lost, and counted.
      this.droppedRecords += p.records;
    }
  }

  private closeSpill(): void {
    if (this.spillFd !== undefined) closeSync(this.spillFd);
    this.spillFd = undefined;
  }

  /** A spilled line is sent only if it is a batch of this store (its key prefix). */
  private spilledBatch(line: string): Pending | undefined {
    try {
      const p = JSON.parse(line) as Partial<Pending>;
      if (
        typeof p.stream === 'string' &&
        p.stream.startsWith(this.opts.prefix) &&
        Number.isSafeInteger(p.tracerId) &&
        typeof p.json === 'string' &&
        Number.isSafeInteger(p.records)
      )
        return p as Pending;
    } catch {
      // not JSON: skipped
    }
    return undefined;
  }

  private kick(): void {
    if (this.draining || this.retryTimer) return;
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
    });
  }

  /**
   * Sends what is buffered, oldest first: memory (batches from before spilling began), then the
   * spill file. While the file is being sent, new batches keep going to a fresh spill file, so
   * order holds; memory is used again once no spill file is left.
   */
  private async drain(): Promise<void> {
    try {
      for (;;) {
        while (this.memory.length > 0) {
          const p = this.memory[0]!;
          await this.send(p);
          this.memory.shift();
          this.memoryBytes -= p.json.length;
        }
        if (!this.spilling) break;
        if (this.spillFd === undefined || !this.spillFile) {
          this.spilling = false; // nothing left on disk: back to memory
          continue;
        }
        // New batches go to a fresh file while this one is sent.
        this.closeSpill();
        const draining = `${this.spillFile}.draining`;
        renameSync(this.spillFile, draining);
        const fd = openSync(draining, constants.O_RDONLY | constants.O_NOFOLLOW);
        let text: string;
        try {
          text = readFileSync(fd, 'utf8');
        } finally {
          closeSync(fd);
        }
        const lines = text.split('\n').filter(Boolean);
        for (let i = 0; i < lines.length; i++) {
          const p = this.spilledBatch(lines[i]!);
          if (!p) continue; // not a batch of this store: never sent
          try {
            await this.send(p);
          } catch (e) {
            // Put the rest back in front of what was spilled meanwhile, in order.
            const rest = lines.slice(i).join('\n') + '\n';
            const newer = this.takeSpilled();
            const tmp = `${draining}.tmp`;
            rmSync(tmp, { force: true });
            const out = openExclusive(tmp);
            try {
              writeSync(out, rest + newer);
            } finally {
              closeSync(out);
            }
            renameSync(tmp, this.spillFile);
            this.spillFd = openSync(
              this.spillFile,
              constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW,
            );
            rmSync(draining, { force: true });
            throw e;
          }
        }
        rmSync(draining, { force: true });
      }
      this.backoffMs = 100;
      for (const w of this.waiters.splice(0)) w();
    } catch {
      // Redis is away: try again with backoff; the buffer holds the batches meanwhile.
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.kick();
      }, this.backoffMs);
      this.retryTimer.unref();
      this.backoffMs = Math.min(5000, this.backoffMs * 2);
    }
  }

  private async send(p: Pending): Promise<void> {
    await ensureReady(this.redis, 1000);
    await this.redis.xadd(
      p.stream,
      'MAXLEN',
      '~',
      String(this.opts.maxlen),
      '*',
      't',
      String(p.tracerId),
      'b',
      p.json,
    );
  }

  /** Resolves when everything is in Redis, or after `timeoutMs` (the buffer keeps trying). */
  flush(timeoutMs = 10_000): Promise<void> {
    if (this.memory.length === 0 && !this.spilling) return Promise.resolve();
    // Disconnected: a short last chance (a stop must not wait out the full flush on a dead store).
    const wait = this.redis.status === 'ready' ? timeoutMs : Math.min(timeoutMs, 2000);
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, wait);
      timer.unref();
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
      this.kick();
    });
  }

  /** What was spilled since the current file was opened (and closes it). */
  private takeSpilled(): string {
    if (this.spillFd === undefined || !this.spillFile) return '';
    this.closeSpill();
    const fd = openSync(this.spillFile, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      return readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
      rmSync(this.spillFile, { force: true });
    }
  }

  close(): void {
    clearTimeout(this.retryTimer);
    this.closeSpill();
  }

  /** What is still not in Redis when giving up: records held in memory, and the spill file left. */
  abandon(): { records: number; spillFile?: string } {
    const records = this.memory.reduce((a, p) => a + p.records, 0);
    this.memory = [];
    this.memoryBytes = 0;
    return {
      records,
      spillFile: this.spillFile && existsSync(this.spillFile) ? this.spillFile : undefined,
    };
  }
}

// ---------------------------------------------------------------------------------------------

interface Aggregates {
  series: Map<string, SeriesSummary>;
  events: Map<string, { count: number; durations: number[]; totalValue: number }>;
  eventCount: number;
}

/**
 * A store on Redis: task and tracer rows as JSON keys, records as one stream per task with one
 * entry per batch. Reports read the stream back and aggregate; for large tasks, `scalpels
 * collect` drains streams into SQLite.
 */
export class RedisStore implements Store {
  readonly url: string;
  readonly redis: RedisClient;
  readonly opts: RedisStoreOptions;
  private readonly writer: StreamWriter;
  private readonly P: string;

  constructor(url: string) {
    const c = connectRedis(url);
    this.redis = c.redis;
    this.opts = c.store;
    this.url = c.display;
    this.P = c.store.prefix;
    this.writer = new StreamWriter(this.redis, this.opts);
    this.redis.on('ready', () => (this.down = undefined));
  }

  /** Key names, for the collector and the cluster. */
  key = {
    tasks: (): string => `${this.P}tasks`,
    task: (id: string): string => `${this.P}task:${id}`,
    taskTracers: (id: string): string => `${this.P}task:${id}:tracers`,
    tracer: (id: number): string => `${this.P}tracer:${id}`,
    tracerSeq: (): string => `${this.P}tracer-seq`,
    series: (tracerId: number): string => `${this.P}tracer:${tracerId}:series`,
    live: (): string => `${this.P}live-tracers`,
    records: (taskId: string): string => `${this.P}records:${taskId}`,
    journal: (): string => `${this.P}journal`,
    journalSeq: (): string => `${this.P}journal-seq`,
    leases: (): string => `${this.P}leases`,
    leaseLock: (key: string): string => `${this.P}lease-lock:${key}`,
  };

  /** Set once a command found Redis unreachable; cleared when the connection is ready again. */
  private down: string | undefined;

  /** Until when a command finds the store known-away without waiting for it again. */
  private failFastUntil = 0;

  private async cmd<T>(fn: () => Promise<T>): Promise<T> {
    // Known to be away: wait at most one reconnect period for it (Redis back after an outage:
    // the client reconnects on its backoff, up to 5 s later; an agent's final bookkeeping must
    // not be lost to that), and after such a wait failed, fail at once for a while instead of
    // waiting out a timeout per command (a stop that records a few states would take minutes).
    if (this.down !== undefined && this.redis.status !== 'ready') {
      if (Date.now() < this.failFastUntil)
        throw new UserError(`store ${this.url}: Redis unreachable (${this.down})`);
      try {
        await ensureReady(this.redis, RECONNECT_WAIT_MS);
      } catch {
        this.failFastUntil = Date.now() + 2 * RECONNECT_WAIT_MS;
        throw new UserError(`store ${this.url}: Redis unreachable (${this.down})`);
      }
    }
    try {
      await ensureReady(this.redis);
      return await fn();
    } catch (e) {
      if (this.redis.status !== 'ready') this.down = (e as Error).message;
      throw new UserError(
        `store ${this.url}: Redis unreachable or failing (${(e as Error).message})`,
      );
    }
  }

  async createTask(task: NewTask & { id?: string }): Promise<TaskRow> {
    const id = task.id ?? newTaskId(task.startedAt);
    const row: TaskRow = {
      id,
      name: task.name,
      status: 'running',
      startedAt: task.startedAt,
      stoppedAt: null,
      labels: task.labels,
      nodes: task.nodes,
      ownerPid: task.ownerPid,
      ownerStart: task.ownerStart,
      target: task.target,
    };
    await this.cmd(() =>
      this.redis
        .multi()
        .set(this.key.task(id), JSON.stringify(row))
        .zadd(this.key.tasks(), task.startedAt, id)
        .exec(),
    );
    return row;
  }

  async updateTask(id: string, patch: TaskPatch): Promise<void> {
    const row = await this.taskById(id);
    if (!row) return;
    const next = {
      ...row,
      ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)),
    };
    await this.cmd(() => this.redis.set(this.key.task(id), JSON.stringify(next)));
  }

  private async taskById(id: string): Promise<TaskRow | undefined> {
    const raw = await this.cmd(() => this.redis.get(this.key.task(id)));
    return raw ? (JSON.parse(raw) as TaskRow) : undefined;
  }

  async findTask(ref: string): Promise<TaskRow | undefined> {
    const exact = await this.taskById(ref);
    if (exact) return exact;
    const ids = await this.cmd(() => this.redis.zrange(this.key.tasks(), 0, -1));
    const prefixed = ids.filter((i) => i.startsWith(ref));
    if (prefixed.length > 1) throw new UserError(`task "${ref}" is ambiguous: give more of its id`);
    if (prefixed.length === 1) return this.taskById(prefixed[0]!);
    const all = await this.listTasks();
    return all.filter((t) => t.name === ref).at(-1);
  }

  async lastTask(): Promise<TaskRow | undefined> {
    const [id] = await this.cmd(() => this.redis.zrange(this.key.tasks(), -1, -1));
    return id ? this.taskById(id) : undefined;
  }

  async listTasks(): Promise<TaskRow[]> {
    const ids = await this.cmd(() => this.redis.zrange(this.key.tasks(), 0, -1));
    if (ids.length === 0) return [];
    const raws = await this.cmd(() => this.redis.mget(ids.map((i) => this.key.task(i))));
    return raws.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as TaskRow);
  }

  async createTracer(t: NewTracer): Promise<TracerRow> {
    const id = await this.cmd(() => this.redis.incr(this.key.tracerSeq()));
    const row: TracerRow = {
      id,
      ...t,
      technique: t.technique ?? null,
      status: 'starting',
      exitCode: null,
      error: null,
      stderrTail: null,
      workerPid: null,
      workerStart: null,
      startedAt: null,
      stoppedAt: null,
      records: 0,
      parseErrors: 0,
      dropped: 0,
      restarts: 0,
    };
    await this.cmd(() =>
      this.redis
        .multi()
        .set(this.key.tracer(id), JSON.stringify(row))
        .rpush(this.key.taskTracers(t.taskId), String(id))
        .sadd(this.key.live(), String(id))
        .exec(),
    );
    return row;
  }

  async updateTracer(id: number, patch: TracerPatch): Promise<void> {
    const raw = await this.cmd(() => this.redis.get(this.key.tracer(id)));
    if (!raw) return;
    const next = {
      ...(JSON.parse(raw) as TracerRow),
      ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)),
    } as TracerRow;
    const live = ['starting', 'running', 'stopping'].includes(next.status);
    await this.cmd(() => {
      const m = this.redis.multi().set(this.key.tracer(id), JSON.stringify(next));
      if (live) m.sadd(this.key.live(), String(id));
      else m.srem(this.key.live(), String(id));
      return m.exec();
    });
  }

  async listTracers(taskId: string): Promise<TracerRow[]> {
    const ids = await this.cmd(() => this.redis.lrange(this.key.taskTracers(taskId), 0, -1));
    if (ids.length === 0) return [];
    const raws = await this.cmd(() => this.redis.mget(ids.map((i) => this.key.tracer(Number(i)))));
    return raws.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as TracerRow);
  }

  async liveTracers(): Promise<TracerRow[]> {
    const ids = await this.cmd(() => this.redis.smembers(this.key.live()));
    if (ids.length === 0) return [];
    const raws = await this.cmd(() => this.redis.mget(ids.map((i) => this.key.tracer(Number(i)))));
    return raws
      .filter((r): r is string => r !== null)
      .map((r) => JSON.parse(r) as TracerRow)
      .sort((a, b) => a.id - b.id);
  }

  recordSink(tracer: TracerRow, schema: Schema): RecordSink {
    const known = new Set<string>();
    const knownFast = new Set<string>();
    const stream = this.key.records(tracer.taskId);
    const seriesKey = this.key.series(tracer.id);
    return {
      write: async (batch) => {
        // New series get their unit and kind registered once (best effort while Redis is away:
        // reports fall back to the schema-less defaults for an unregistered series).
        const fresh: string[] = [];
        for (const r of batch) {
          if (r.kind !== 'sample') continue;
          const fast = `${r.series}\0${fastLabelsKey(r.labels)}`;
          if (knownFast.has(fast)) continue;
          knownFast.add(fast);
          const k = `${r.series}\0${canonicalLabels(r.labels)}`;
          if (known.has(k)) continue;
          known.add(k);
          const spec = schema.series[r.series]!;
          fresh.push(k, JSON.stringify({ unit: spec.unit, kind: spec.kind }));
        }
        if (fresh.length)
          await this.redis.hset(seriesKey, ...fresh).catch(() => {
            // Redis away: register these series again with a later batch.
            fresh.forEach((k, i) => i % 2 === 0 && known.delete(k));
            knownFast.clear();
          });
        const { json, records } = encodeBatch(batch);
        this.writer.enqueue({ stream, tracerId: tracer.id, json, records });
      },
      dropped: () => this.writer.dropped,
      flush: () => this.writer.flush(),
    };
  }

  /** Reads a task's stream back, keeping what one tracer wrote. */
  private async aggregate(tracerId: number): Promise<Aggregates> {
    const tracerRaw = await this.cmd(() => this.redis.get(this.key.tracer(tracerId)));
    const out: Aggregates = { series: new Map(), events: new Map(), eventCount: 0 };
    if (!tracerRaw) return out;
    const tracer = JSON.parse(tracerRaw) as TracerRow;
    const meta = await this.cmd(() => this.redis.hgetall(this.key.series(tracerId)));
    const stream = this.key.records(tracer.taskId);
    let start = '-';
    for (;;) {
      const entries = await this.cmd(() => this.redis.xrange(stream, start, '+', 'COUNT', 500));
      for (const [id, fields] of entries) {
        start = `(${id}`;
        const f = fieldMap(fields);
        if (Number(f.t) !== tracerId || !f.b) continue;
        const b = JSON.parse(f.b) as EncodedBatch;
        const keys = b.s.map(([name, labels]) => `${name}\0${labels}`);
        for (const [i, ts, value] of b.p) {
          const k = keys[i]!;
          let s = out.series.get(k);
          if (!s) {
            const [name, labels] = b.s[i]!;
            const m = meta[k]
              ? (JSON.parse(meta[k]!) as { unit: string; kind: SeriesSummary['kind'] })
              : { unit: '', kind: 'gauge' as const };
            s = {
              name,
              unit: m.unit,
              kind: m.kind,
              labels: JSON.parse(labels) as Record<string, string>,
              points: 0,
              sum: 0,
              min: Infinity,
              max: -Infinity,
              mean: 0,
              last: 0,
              firstTs: ts,
              lastTs: ts,
            };
            out.series.set(k, s);
          }
          s.points++;
          s.sum += value;
          if (value < s.min) s.min = value;
          if (value > s.max) s.max = value;
          if (ts >= s.lastTs) {
            s.lastTs = ts;
            s.last = value;
          }
          if (ts < s.firstTs) s.firstTs = ts;
        }
        for (const [, key, , dur, value] of b.e) {
          out.eventCount++;
          let e = out.events.get(key);
          if (!e) out.events.set(key, (e = { count: 0, durations: [], totalValue: 0 }));
          e.count++;
          if (dur !== null) e.durations.push(dur);
          if (value !== null) e.totalValue += value;
        }
      }
      if (entries.length < 500) break;
    }
    for (const s of out.series.values()) s.mean = s.points ? s.sum / s.points : 0;
    return out;
  }

  async seriesSummaries(tracerId: number): Promise<SeriesSummary[]> {
    const a = await this.aggregate(tracerId);
    return [...a.series.values()].sort(
      (x, y) =>
        x.name.localeCompare(y.name) ||
        JSON.stringify(x.labels).localeCompare(JSON.stringify(y.labels)),
    );
  }

  async eventSummary(
    tracerId: number,
    top: number,
    by: EventRanking = 'time',
  ): Promise<EventSummary> {
    const a = await this.aggregate(tracerId);
    const rows: (EventTopRow & { timed: number })[] = [...a.events.entries()].map(([key, e]) => {
      const totalMs = e.durations.reduce((x, y) => x + y, 0);
      const sorted = e.durations.sort((x, y) => x - y);
      const rank = Math.max(0, Math.ceil(0.95 * sorted.length) - 1);
      return {
        key,
        count: e.count,
        totalMs,
        meanMs: sorted.length ? totalMs / sorted.length : 0,
        p95Ms: sorted[rank] ?? 0,
        totalValue: e.totalValue,
        timed: sorted.length,
      };
    });
    const keys: Record<EventRanking, (keyof EventTopRow)[]> = {
      time: ['totalMs', 'count', 'totalValue'],
      count: ['count', 'totalValue', 'totalMs'],
      value: ['totalValue', 'count', 'totalMs'],
    };
    rows.sort((x, y) => {
      for (const k of keys[by]) if (y[k] !== x[k]) return (y[k] as number) - (x[k] as number);
      return x.key.localeCompare(y.key);
    });
    return { count: a.eventCount, top: rows.slice(0, top).map(({ timed: _timed, ...r }) => r) };
  }

  async journal(
    tracerId: number,
    plugin: string,
    action: UndoAction,
    options: Record<string, unknown>,
    node: string,
  ): Promise<void> {
    const id = await this.cmd(() => this.redis.incr(this.key.journalSeq()));
    const entry: JournalEntry & { undoneAt: number | null } = {
      id,
      tracerId,
      plugin,
      action,
      options,
      createdAt: Date.now(),
      node,
      undoneAt: null,
    };
    await this.cmd(() => this.redis.hset(this.key.journal(), String(id), JSON.stringify(entry)));
  }

  async pendingJournal(tracerId?: number): Promise<JournalEntry[]> {
    const all = await this.cmd(() => this.redis.hvals(this.key.journal()));
    return all
      .map((r) => JSON.parse(r) as JournalEntry & { undoneAt: number | null })
      .filter((e) => e.undoneAt === null && (tracerId === undefined || e.tracerId === tracerId))
      .sort((a, b) => b.id - a.id)
      .map(({ undoneAt: _u, ...e }) => ({ ...e, node: e.node ?? null }));
  }

  async tracer(id: number): Promise<TracerRow | undefined> {
    const raw = await this.cmd(() => this.redis.get(this.key.tracer(id)));
    return raw ? (JSON.parse(raw) as TracerRow) : undefined;
  }

  async tryLockLease(key: string, owner: string, ttlMs: number): Promise<boolean> {
    const lock = this.key.leaseLock(key);
    const got = await this.cmd(() => this.redis.set(lock, owner, 'PX', ttlMs, 'NX'));
    if (got === 'OK') return true;
    // Ours already (a retry after a lost reply): extend it.
    return this.renewLeaseLock(key, owner, ttlMs);
  }

  async renewLeaseLock(key: string, owner: string, ttlMs: number): Promise<boolean> {
    const r = await this.cmd(() =>
      this.redis.eval(
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end",
        1,
        this.key.leaseLock(key),
        owner,
        String(ttlMs),
      ),
    );
    return Number(r) === 1;
  }

  async unlockLease(key: string, owner: string): Promise<void> {
    await this.cmd(() =>
      this.redis.eval(
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end",
        1,
        this.key.leaseLock(key),
        owner,
      ),
    );
  }

  async getLease(key: string): Promise<LeaseRow | undefined> {
    const raw = await this.cmd(() => this.redis.hget(this.key.leases(), key));
    return raw ? (JSON.parse(raw) as LeaseRow) : undefined;
  }

  async putLease(row: LeaseRow): Promise<void> {
    await this.cmd(() => this.redis.hset(this.key.leases(), row.key, JSON.stringify(row)));
  }

  async deleteLease(key: string): Promise<void> {
    await this.cmd(() => this.redis.hdel(this.key.leases(), key));
  }

  async listLeases(): Promise<LeaseRow[]> {
    const all = await this.cmd(() => this.redis.hvals(this.key.leases()));
    return all.map((r) => JSON.parse(r) as LeaseRow).sort((a, b) => a.key.localeCompare(b.key));
  }

  async markUndone(journalId: number): Promise<void> {
    const raw = await this.cmd(() => this.redis.hget(this.key.journal(), String(journalId)));
    if (!raw) return;
    await this.cmd(() =>
      this.redis.hset(
        this.key.journal(),
        String(journalId),
        JSON.stringify({ ...JSON.parse(raw), undoneAt: Date.now() }),
      ),
    );
  }

  async close(): Promise<void> {
    await this.writer.flush();
    const left = this.writer.abandon();
    this.writer.close();
    this.redis.disconnect();
    if (left.records > 0)
      process.stderr.write(
        `scalpels: warning: store ${this.url}: Redis unreachable; ${left.records} record(s) not written${left.spillFile ? ` (kept in ${left.spillFile})` : ''}\n`,
      );
  }
}

export function fieldMap(fields: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i]!] = fields[i + 1]!;
  return out;
}

export function decodeBatch(json: string): EncodedBatch {
  return JSON.parse(json) as EncodedBatch;
}
export type { EncodedBatch };
