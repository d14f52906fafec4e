import { constants, existsSync, mkdirSync, openSync, readSync, closeSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import type { Labels, Schema, TraceRecord, UndoAction } from '../api.js';
import { UserError } from '../errors.js';
import type { RecordSink } from '../runner.js';
import { canonicalLabels, fastLabelsKey, newTaskId } from './keys.js';
import type {
  EventRanking,
  EventSummary,
  JournalEntry,
  LeaseRow,
  Marker,
  NewTask,
  NewTracer,
  SeriesRangeSummary,
  SeriesSummary,
  SeriesTimeline,
  Store,
  StoredRecord,
  TaskPatch,
  TaskRow,
  TracerPatch,
  TracerRow,
} from './types.js';

/** Schema migrations, applied in order; `PRAGMA user_version` holds how many ran. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE tasks (
     id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
     started_at INTEGER NOT NULL, stopped_at INTEGER, labels TEXT NOT NULL DEFAULT '{}',
     nodes TEXT NOT NULL DEFAULT '[]', owner_pid INTEGER, owner_start INTEGER, target TEXT);
   CREATE INDEX tasks_started ON tasks(started_at);
   CREATE TABLE tracers (
     id INTEGER PRIMARY KEY, task_id TEXT NOT NULL REFERENCES tasks(id), tracer TEXT NOT NULL,
     plugin_package TEXT NOT NULL, plugin_version TEXT NOT NULL, node TEXT NOT NULL,
     options TEXT NOT NULL DEFAULT '{}', technique TEXT, status TEXT NOT NULL,
     exit_code INTEGER, error TEXT, stderr_tail TEXT, worker_pid INTEGER, worker_start INTEGER,
     started_at INTEGER, stopped_at INTEGER,
     records INTEGER NOT NULL DEFAULT 0, parse_errors INTEGER NOT NULL DEFAULT 0,
     dropped INTEGER NOT NULL DEFAULT 0);
   CREATE INDEX tracers_task ON tracers(task_id);
   CREATE INDEX tracers_status ON tracers(status);
   CREATE TABLE series (
     id INTEGER PRIMARY KEY, tracer_id INTEGER NOT NULL, name TEXT NOT NULL, labels TEXT NOT NULL,
     unit TEXT NOT NULL, kind TEXT NOT NULL, UNIQUE (tracer_id, name, labels));
   CREATE TABLE samples (series_id INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL);
   -- Covering index: per-series aggregates walk it in order, without touching the table.
   CREATE INDEX samples_series ON samples(series_id, ts, value);
   CREATE TABLE events (
     tracer_id INTEGER NOT NULL, ts INTEGER NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL,
     duration_ms REAL, value REAL, data TEXT);
   CREATE INDEX events_key ON events(tracer_id, key, duration_ms);
   CREATE TABLE journal (
     id INTEGER PRIMARY KEY, tracer_id INTEGER NOT NULL, plugin TEXT NOT NULL, kind TEXT NOT NULL,
     data TEXT NOT NULL, description TEXT NOT NULL, options TEXT NOT NULL DEFAULT '{}',
     created_at INTEGER NOT NULL, undone_at INTEGER);
   CREATE INDEX journal_pending ON journal(undone_at, tracer_id);`,
  `ALTER TABLE tracers ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;`,
  `CREATE TABLE markers (
     id INTEGER PRIMARY KEY, task_id TEXT NOT NULL, ts INTEGER NOT NULL, text TEXT NOT NULL,
     node TEXT);
   CREATE INDEX markers_task ON markers(task_id, ts);
   CREATE INDEX events_ts ON events(tracer_id, ts);`,
  `CREATE TABLE imported_tracers (source TEXT NOT NULL, origin_id INTEGER NOT NULL, tracer_id INTEGER NOT NULL,
     PRIMARY KEY (source, origin_id)) WITHOUT ROWID;
   CREATE TABLE imported_entries (source TEXT NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (source, entry)) WITHOUT ROWID;`,
  `ALTER TABLE journal ADD COLUMN node TEXT;
   CREATE TABLE leases (key TEXT PRIMARY KEY, row TEXT NOT NULL) WITHOUT ROWID;
   CREATE TABLE lease_locks (key TEXT PRIMARY KEY, owner TEXT NOT NULL, until INTEGER NOT NULL) WITHOUT ROWID;`,
];

export const SQLITE_SCHEMA_VERSION = MIGRATIONS.length;

const LIVE = `('starting','running','stopping')`;

/** Rows per multi-row INSERT: binding many rows per statement call cuts the per-row overhead. */
const SAMPLES_PER_INSERT = 64;

type Row = Record<string, unknown>;

/** Opens (creating when missing) a SQLite store. Errors are UserErrors that say what is wrong. */
export class SqliteStore implements Store {
  readonly url: string;
  readonly db: BetterSqlite3.Database;
  private readonly stmts: ReturnType<SqliteStore['prepare']>;

  constructor(readonly path: string) {
    this.url = `sqlite://${path}`;
    this.db = openDatabase(path);
    this.stmts = this.prepare();
  }

  private prepare() {
    const db = this.db;
    return {
      insertTask: db.prepare(
        `INSERT INTO tasks (id, name, status, started_at, labels, nodes, owner_pid, owner_start, target)
         VALUES (@id, @name, 'running', @startedAt, @labels, @nodes, @ownerPid, @ownerStart, @target)`,
      ),
      taskById: db.prepare(`SELECT * FROM tasks WHERE id = ?`),
      tasksByPrefix: db.prepare(
        `SELECT * FROM tasks WHERE id LIKE ? ESCAPE '\\' ORDER BY started_at DESC LIMIT 2`,
      ),
      taskByName: db.prepare(
        `SELECT * FROM tasks WHERE name = ? ORDER BY started_at DESC, rowid DESC LIMIT 1`,
      ),
      lastTask: db.prepare(`SELECT * FROM tasks ORDER BY started_at DESC, rowid DESC LIMIT 1`),
      listTasks: db.prepare(`SELECT * FROM tasks ORDER BY started_at, rowid`),
      insertTracer: db.prepare(
        `INSERT INTO tracers (task_id, tracer, plugin_package, plugin_version, node, options, technique, status)
         VALUES (@taskId, @tracer, @pluginPackage, @pluginVersion, @node, @options, @technique, 'starting')`,
      ),
      tracerById: db.prepare(`SELECT * FROM tracers WHERE id = ?`),
      tracersOfTask: db.prepare(`SELECT * FROM tracers WHERE task_id = ? ORDER BY id`),
      liveTracers: db.prepare(`SELECT * FROM tracers WHERE status IN ${LIVE} ORDER BY id`),
      seriesOfTracer: db.prepare(
        `SELECT id, name, labels, unit, kind FROM series WHERE tracer_id = ? ORDER BY id`,
      ),
      insertSeries: db.prepare(
        `INSERT INTO series (tracer_id, name, labels, unit, kind) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (tracer_id, name, labels) DO UPDATE SET unit = excluded.unit RETURNING id`,
      ),
      insertSample: db.prepare(`INSERT INTO samples (series_id, ts, value) VALUES (?, ?, ?)`),
      insertSamples: db.prepare(
        `INSERT INTO samples (series_id, ts, value) VALUES ${Array(SAMPLES_PER_INSERT).fill('(?, ?, ?)').join(', ')}`,
      ),
      insertEvent: db.prepare(
        `INSERT INTO events (tracer_id, ts, type, key, duration_ms, value, data) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ),
      // One correlated aggregate per series walks that series' stretch of the covering index
      // (no GROUP BY sorter, no join comparator per row); the first and last points are index
      // lookups. The aggregates travel as one text value (%!.17g keeps every double exact).
      aggregates: db.prepare(
        `SELECT s.name, s.labels, s.unit, s.kind,
                (SELECT printf('%d %!.17g %!.17g %!.17g', count(*), total(value), min(value), max(value))
                 FROM samples p WHERE p.series_id = s.id) AS agg,
                (SELECT ts FROM samples f WHERE f.series_id = s.id ORDER BY ts LIMIT 1) AS first_ts,
                (SELECT printf('%d %!.17g', ts, value) FROM samples l
                 WHERE l.series_id = s.id ORDER BY ts DESC LIMIT 1) AS last
         FROM series s WHERE s.tracer_id = ? ORDER BY s.name, s.labels`,
      ),
      eventCount: db.prepare(`SELECT count(*) AS n FROM events WHERE tracer_id = ?`),
      eventTop: Object.fromEntries(
        (
          [
            ['time', 'total_ms DESC, count DESC, total_value DESC'],
            ['count', 'count DESC, total_value DESC, total_ms DESC'],
            ['value', 'total_value DESC, count DESC, total_ms DESC'],
          ] as const
        ).map(([by, order]) => [
          by,
          db.prepare(
            `SELECT key, count(*) AS count, total(duration_ms) AS total_ms, count(duration_ms) AS timed,
                    total(value) AS total_value
             FROM events WHERE tracer_id = ? GROUP BY key ORDER BY ${order}, key LIMIT ?`,
          ),
        ]),
      ) as Record<EventRanking, BetterSqlite3.Statement>,
      eventNth: db.prepare(
        `SELECT duration_ms FROM events WHERE tracer_id = ? AND key = ? AND duration_ms IS NOT NULL
         ORDER BY duration_ms LIMIT 1 OFFSET ?`,
      ),
      insertJournal: db.prepare(
        `INSERT INTO journal (tracer_id, plugin, kind, data, description, options, created_at, node)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      pendingJournal: db.prepare(`SELECT * FROM journal WHERE undone_at IS NULL ORDER BY id DESC`),
      pendingJournalOf: db.prepare(
        `SELECT * FROM journal WHERE undone_at IS NULL AND tracer_id = ? ORDER BY id DESC`,
      ),
      markUndone: db.prepare(`UPDATE journal SET undone_at = ? WHERE id = ?`),
      insertMarker: db.prepare(
        `INSERT INTO markers (task_id, ts, text, node) VALUES (?, ?, ?, ?) RETURNING *`,
      ),
      markersOfTask: db.prepare(`SELECT * FROM markers WHERE task_id = ? ORDER BY ts, id`),
      // Buckets: integer division of the time offset; one pass over the covering index.
      timeline: db.prepare(
        `SELECT p.series_id AS id, (p.ts - CAST(@from AS INTEGER)) / CAST(@step AS INTEGER) AS b, total(p.value) AS sum,
                count(*) AS n, min(p.value) AS min, max(p.value) AS max
         FROM series s JOIN samples p ON p.series_id = s.id
         WHERE s.tracer_id = @tracer GROUP BY p.series_id, b ORDER BY p.series_id, b`,
      ),
      // Buckets as index range scans per series (no sorter): rows only for non-empty buckets.
      timelineRanges: db.prepare(
        `WITH RECURSIVE b(i) AS (SELECT @first UNION ALL SELECT i + 1 FROM b WHERE i < @last)
         SELECT s.id, b.i,
                (SELECT printf('%d %!.17g %!.17g %!.17g', count(*), total(value), min(value), max(value))
                 FROM samples p WHERE p.series_id = s.id
                   AND p.ts >= CASE WHEN b.i = @first THEN -9e18 ELSE @from + b.i * @step END
                   AND p.ts < CASE WHEN b.i = @last THEN 9e18 ELSE @from + (b.i + 1) * @step END) AS agg
         FROM series s, b WHERE s.tracer_id = @tracer`,
      ),
      tracerTsRange: db.prepare(
        `SELECT min((SELECT ts FROM samples f WHERE f.series_id = s.id ORDER BY ts LIMIT 1)) AS lo,
                max((SELECT ts FROM samples l WHERE l.series_id = s.id ORDER BY ts DESC LIMIT 1)) AS hi
         FROM series s WHERE s.tracer_id = ?`,
      ),
      range: db.prepare(
        `SELECT s.name, s.labels, s.unit, s.kind, count(p.series_id) AS points,
                total(p.value) AS sum, total(p.value * p.value) AS sumsq,
                min(p.value) AS min, max(p.value) AS max
         FROM series s JOIN samples p ON p.series_id = s.id AND p.ts >= ? AND p.ts < ?
         WHERE s.tracer_id = ? GROUP BY s.id ORDER BY s.name, s.labels`,
      ),
      // Per series, in index order: no sorter over the whole task.
      samplesOfSeries: db
        .prepare(`SELECT ts, value FROM samples WHERE series_id = ? ORDER BY ts`)
        .raw(true),
      eventsOfTracer: db.prepare(
        `SELECT ts, type, key, duration_ms, value, data FROM events WHERE tracer_id = ? ORDER BY ts`,
      ),
    };
  }

  async createTask(task: NewTask): Promise<TaskRow> {
    const id = newTaskId(task.startedAt);
    this.write(() =>
      this.stmts.insertTask.run({
        id,
        name: task.name,
        startedAt: task.startedAt,
        labels: JSON.stringify(task.labels),
        nodes: JSON.stringify(task.nodes),
        ownerPid: task.ownerPid,
        ownerStart: task.ownerStart,
        target: task.target,
      }),
    );
    return toTask(this.stmts.taskById.get(id) as Row);
  }

  async updateTask(id: string, patch: TaskPatch): Promise<void> {
    const cols: Record<string, unknown> = {
      status: patch.status,
      stopped_at: patch.stoppedAt,
      owner_pid: patch.ownerPid,
      owner_start: patch.ownerStart,
    };
    this.update('tasks', id, cols);
  }

  async findTask(ref: string): Promise<TaskRow | undefined> {
    const exact = this.stmts.taskById.get(ref) as Row | undefined;
    if (exact) return toTask(exact);
    const prefixed = this.stmts.tasksByPrefix.all(
      `${ref.replace(/[\\%_]/g, (c) => `\\${c}`)}%`,
    ) as Row[];
    if (prefixed.length > 1) throw new UserError(`task "${ref}" is ambiguous: give more of its id`);
    if (prefixed.length === 1) return toTask(prefixed[0]!);
    const named = this.stmts.taskByName.get(ref) as Row | undefined;
    return named ? toTask(named) : undefined;
  }

  async lastTask(): Promise<TaskRow | undefined> {
    const row = this.stmts.lastTask.get() as Row | undefined;
    return row ? toTask(row) : undefined;
  }

  async listTasks(): Promise<TaskRow[]> {
    return (this.stmts.listTasks.all() as Row[]).map(toTask);
  }

  async createTracer(t: NewTracer): Promise<TracerRow> {
    const info = this.write(() =>
      this.stmts.insertTracer.run({
        ...t,
        options: JSON.stringify(t.options),
        technique: t.technique ?? null,
      }),
    );
    return toTracer(this.stmts.tracerById.get(info.lastInsertRowid) as Row);
  }

  async updateTracer(id: number, patch: TracerPatch): Promise<void> {
    this.update('tracers', id, {
      status: patch.status,
      exit_code: patch.exitCode,
      error: patch.error,
      stderr_tail: patch.stderrTail,
      worker_pid: patch.workerPid,
      worker_start: patch.workerStart,
      started_at: patch.startedAt,
      stopped_at: patch.stoppedAt,
      records: patch.records,
      parse_errors: patch.parseErrors,
      dropped: patch.dropped,
      restarts: patch.restarts,
    });
  }

  async listTracers(taskId: string): Promise<TracerRow[]> {
    return (this.stmts.tracersOfTask.all(taskId) as Row[]).map(toTracer);
  }

  async liveTracers(): Promise<TracerRow[]> {
    return (this.stmts.liveTracers.all() as Row[]).map(toTracer);
  }

  recordSink(tracer: TracerRow, schema: Schema): RecordSink {
    const writeBatch = this.db.transaction(this.batchInserter(tracer, schema));
    return { write: (batch) => this.write(() => writeBatch(batch)) };
  }

  /** Inserts one batch of a tracer's records (the caller holds the transaction). */
  private batchInserter(
    tracer: TracerRow,
    schema: Schema,
  ): (batch: readonly TraceRecord[]) => void {
    const { insertSample, insertSamples, insertEvent, insertSeries, seriesOfTracer } = this.stmts;
    // Series dictionary: name → (labels in the parser's key order → series id).
    const ids = new Map<string, Map<string, number>>();
    const byCanonical = new Map<string, number>();
    for (const r of seriesOfTracer.all(tracer.id) as Row[])
      byCanonical.set(`${r.name}\0${r.labels}`, Number(r.id));
    const tracerId = tracer.id;
    const seriesId = (name: string, labels: Labels | undefined): number => {
      let perName = ids.get(name);
      if (!perName) ids.set(name, (perName = new Map()));
      const key = fastLabelsKey(labels);
      let id = perName.get(key);
      if (id === undefined) {
        const canonical = canonicalLabels(labels);
        id = byCanonical.get(`${name}\0${canonical}`);
        if (id === undefined) {
          const spec = schema.series[name]!;
          id = Number(
            (insertSeries.get(tracerId, name, canonical, spec.unit, spec.kind) as Row).id,
          );
          byCanonical.set(`${name}\0${canonical}`, id);
        }
        perName.set(key, id);
      }
      return id;
    };
    const params: unknown[] = new Array(SAMPLES_PER_INSERT * 3);
    const insertBatch = (batch: readonly TraceRecord[]): void => {
      let n = 0;
      for (const r of batch) {
        if (r.kind === 'sample') {
          params[n++] = seriesId(r.series, r.labels);
          params[n++] = r.ts;
          params[n++] = r.value;
          if (n === params.length) {
            insertSamples.run(params);
            n = 0;
          }
        } else
          insertEvent.run(
            tracerId,
            r.ts,
            r.type,
            r.key,
            r.durationMs ?? null,
            r.value ?? null,
            r.data === undefined ? null : JSON.stringify(r.data),
          );
      }
      for (let i = 0; i < n; i += 3) insertSample.run(params[i], params[i + 1], params[i + 2]);
    };
    return insertBatch;
  }

  /**
   * For the collector: writes a batch fetched from elsewhere together with its origin key in one
   * transaction; a batch whose key was already imported is skipped (false).
   */
  importer(
    tracer: TracerRow,
    schema: Schema,
  ): (source: string, entry: string, batch: readonly TraceRecord[]) => boolean {
    const insertBatch = this.batchInserter(tracer, schema);
    const mark = this.db.prepare(
      `INSERT OR IGNORE INTO imported_entries (source, entry) VALUES (?, ?)`,
    );
    const tx = this.db.transaction(
      (source: string, entry: string, batch: readonly TraceRecord[]) => {
        if (mark.run(source, entry).changes === 0) return false;
        insertBatch(batch);
        return true;
      },
    );
    return (source, entry, batch) => this.write(() => tx(source, entry, batch));
  }

  /** The local tracer id a tracer from another store was imported as, creating it the first time. */
  importTracer(source: string, origin: TracerRow, task: TaskRow): TracerRow {
    return this.write(() =>
      this.db.transaction(() => {
        if (!this.stmts.taskById.get(task.id))
          this.db
            .prepare(
              `INSERT INTO tasks (id, name, status, started_at, stopped_at, labels, nodes, owner_pid, owner_start, target)
               VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)`,
            )
            .run(
              task.id,
              task.name,
              task.status,
              task.startedAt,
              task.stoppedAt,
              JSON.stringify(task.labels),
              JSON.stringify(task.nodes),
              task.target,
            );
        const known = this.db
          .prepare(`SELECT tracer_id FROM imported_tracers WHERE source = ? AND origin_id = ?`)
          .get(source, origin.id) as Row | undefined;
        if (known) return toTracer(this.stmts.tracerById.get(Number(known.tracer_id)) as Row);
        const info = this.stmts.insertTracer.run({
          ...origin,
          options: JSON.stringify(origin.options),
          technique: origin.technique ?? null,
        });
        this.db
          .prepare(`INSERT INTO imported_tracers (source, origin_id, tracer_id) VALUES (?, ?, ?)`)
          .run(source, origin.id, info.lastInsertRowid);
        return toTracer(this.stmts.tracerById.get(info.lastInsertRowid) as Row);
      })(),
    );
  }

  async seriesSummaries(tracerId: number): Promise<SeriesSummary[]> {
    const out: SeriesSummary[] = [];
    for (const r of this.stmts.aggregates.all(tracerId) as Row[]) {
      if (r.last === null) continue; // a series without points
      const [points, sum, min, max] = String(r.agg).split(' ').map(fromG) as [
        number,
        number,
        number,
        number,
      ];
      const [lastTs, last] = String(r.last).split(' ').map(fromG) as [number, number];
      out.push({
        name: String(r.name),
        unit: String(r.unit),
        kind: r.kind as SeriesSummary['kind'],
        labels: JSON.parse(String(r.labels)) as Record<string, string>,
        points,
        sum,
        min,
        max,
        mean: points ? sum / points : 0,
        last,
        firstTs: Number(r.first_ts),
        lastTs,
      });
    }
    return out;
  }

  async eventSummary(
    tracerId: number,
    top: number,
    by: EventRanking = 'time',
  ): Promise<EventSummary> {
    const count = Number((this.stmts.eventCount.get(tracerId) as Row).n);
    const rows = this.stmts.eventTop[by].all(tracerId, top) as Row[];
    return {
      count,
      top: rows.map((r) => {
        const timed = Number(r.timed);
        const totalMs = Number(r.total_ms);
        // Nearest-rank p95 over the events that have a duration.
        const rank = Math.max(0, Math.ceil(0.95 * timed) - 1);
        const p95 = timed
          ? (this.stmts.eventNth.get(tracerId, r.key, rank) as Row | undefined)
          : undefined;
        return {
          key: String(r.key),
          count: Number(r.count),
          totalMs,
          meanMs: timed ? totalMs / timed : 0,
          p95Ms: p95 ? Number(p95.duration_ms) : 0,
          totalValue: Number(r.total_value),
        };
      }),
    };
  }

  async journal(
    tracerId: number,
    plugin: string,
    action: UndoAction,
    options: Record<string, unknown>,
    node: string,
  ): Promise<void> {
    this.write(() =>
      this.stmts.insertJournal.run(
        tracerId,
        plugin,
        action.kind,
        JSON.stringify(action.data ?? null),
        action.description,
        JSON.stringify(options),
        Date.now(),
        node,
      ),
    );
  }

  async tryLockLease(key: string, owner: string, ttlMs: number): Promise<boolean> {
    const now = Date.now();
    const info = this.write(() =>
      this.db
        .prepare(
          `INSERT INTO lease_locks (key, owner, until) VALUES (?, ?, ?)
           ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, until = excluded.until
           WHERE lease_locks.until < ? OR lease_locks.owner = excluded.owner`,
        )
        .run(key, owner, now + ttlMs, now),
    );
    return info.changes === 1;
  }

  async renewLeaseLock(key: string, owner: string, ttlMs: number): Promise<boolean> {
    const info = this.write(() =>
      this.db
        .prepare(`UPDATE lease_locks SET until = ? WHERE key = ? AND owner = ?`)
        .run(Date.now() + ttlMs, key, owner),
    );
    return info.changes === 1;
  }

  async unlockLease(key: string, owner: string): Promise<void> {
    this.write(() =>
      this.db.prepare(`DELETE FROM lease_locks WHERE key = ? AND owner = ?`).run(key, owner),
    );
  }

  async getLease(key: string): Promise<LeaseRow | undefined> {
    const r = this.db.prepare(`SELECT row FROM leases WHERE key = ?`).get(key) as Row | undefined;
    return r ? (JSON.parse(String(r.row)) as LeaseRow) : undefined;
  }

  async putLease(row: LeaseRow): Promise<void> {
    this.write(() =>
      this.db
        .prepare(
          `INSERT INTO leases (key, row) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET row = excluded.row`,
        )
        .run(row.key, JSON.stringify(row)),
    );
  }

  async deleteLease(key: string): Promise<void> {
    this.write(() => this.db.prepare(`DELETE FROM leases WHERE key = ?`).run(key));
  }

  async listLeases(): Promise<LeaseRow[]> {
    return (this.db.prepare(`SELECT row FROM leases ORDER BY key`).all() as Row[]).map(
      (r) => JSON.parse(String(r.row)) as LeaseRow,
    );
  }

  async tracer(id: number): Promise<TracerRow | undefined> {
    const r = this.stmts.tracerById.get(id) as Row | undefined;
    return r ? toTracer(r) : undefined;
  }

  async pendingJournal(tracerId?: number): Promise<JournalEntry[]> {
    const rows = (
      tracerId === undefined
        ? this.stmts.pendingJournal.all()
        : this.stmts.pendingJournalOf.all(tracerId)
    ) as Row[];
    return rows.map((r) => ({
      id: Number(r.id),
      tracerId: Number(r.tracer_id),
      plugin: String(r.plugin),
      action: {
        kind: String(r.kind),
        data: JSON.parse(String(r.data)),
        description: String(r.description),
      },
      options: JSON.parse(String(r.options)) as Record<string, unknown>,
      createdAt: Number(r.created_at),
      node: r.node === null || r.node === undefined ? null : String(r.node),
    }));
  }

  async addMarker(m: Omit<Marker, 'id'>): Promise<Marker> {
    const row = this.write(
      () => this.stmts.insertMarker.get(m.taskId, m.ts, m.text, m.node) as Row,
    );
    return toMarker(row);
  }

  async listMarkers(taskId: string): Promise<Marker[]> {
    return (this.stmts.markersOfTask.all(taskId) as Row[]).map(toMarker);
  }

  async seriesTimeline(
    tracerId: number,
    fromTs: number,
    stepMs: number,
  ): Promise<SeriesTimeline[]> {
    const step = Math.max(1, Math.round(stepMs));
    const from = Math.round(fromTs);
    const meta = this.seriesMeta(tracerId);
    const out = new Map<number, SeriesTimeline>();
    const span = this.stmts.tracerTsRange.get(tracerId) as Row;
    if (span.lo === null) return [];
    const first = Math.floor((Number(span.lo) - from) / step);
    const last = Math.floor((Number(span.hi) - from) / step);
    if (last - first <= 20_000) {
      const rows = this.stmts.timelineRanges.iterate({
        first,
        last,
        from,
        step,
        tracer: tracerId,
      }) as Iterable<Row>;
      for (const r of rows) {
        if ((r.agg as string).startsWith('0 ')) continue; // an empty bucket
        const id = Number(r.id);
        let t = out.get(id);
        if (!t) out.set(id, (t = { ...meta.get(id)!, buckets: [] }));
        const [count, sum, min, max] = String(r.agg).split(' ').map(fromG) as [
          number,
          number,
          number,
          number,
        ];
        t.buckets.push({ ts: from + Number(r.i) * step, sum, count, min, max });
      }
      for (const t of out.values()) t.buckets.sort((a, b) => a.ts - b.ts);
      return [...out.values()];
    }
    // Points spread over too many buckets for range scans: one GROUP BY pass.
    for (const r of this.stmts.timeline.iterate({
      from,
      step,
      tracer: tracerId,
    }) as Iterable<Row>) {
      const id = Number(r.id);
      let t = out.get(id);
      if (!t) {
        const m = meta.get(id)!;
        out.set(id, (t = { ...m, buckets: [] }));
      }
      t.buckets.push({
        ts: from + Number(r.b) * step,
        sum: Number(r.sum),
        count: Number(r.n),
        min: Number(r.min),
        max: Number(r.max),
      });
    }
    return [...out.values()];
  }

  async tracerSpan(tracerId: number): Promise<{ first: number; last: number } | undefined> {
    const r = this.stmts.tracerTsRange.get(tracerId) as Row;
    return r.lo === null ? undefined : { first: Number(r.lo), last: Number(r.hi) };
  }

  async seriesRange(tracerId: number, fromTs: number, toTs: number): Promise<SeriesRangeSummary[]> {
    return (this.stmts.range.all(fromTs, toTs, tracerId) as Row[]).map((r) => ({
      name: String(r.name),
      unit: String(r.unit),
      kind: r.kind as SeriesRangeSummary['kind'],
      labels: JSON.parse(String(r.labels)) as Record<string, string>,
      points: Number(r.points),
      sum: Number(r.sum),
      sumSquares: Number(r.sumsq),
      min: Number(r.min),
      max: Number(r.max),
    }));
  }

  async *records(tracerId: number): AsyncIterable<StoredRecord[]> {
    const BATCH = 4096;
    let batch: StoredRecord[] = [];
    for (const [id, m] of this.seriesMeta(tracerId)) {
      for (const [ts, value] of this.stmts.samplesOfSeries.iterate(id) as Iterable<
        [number, number]
      >) {
        batch.push({
          kind: 'sample',
          ts: Number(ts),
          series: m.name,
          unit: m.unit,
          seriesKind: m.kind,
          labels: m.labels,
          value: Number(value),
        });
        if (batch.length === BATCH) {
          yield batch;
          batch = [];
        }
      }
    }
    for (const r of this.stmts.eventsOfTracer.iterate(tracerId) as Iterable<Row>) {
      batch.push({
        kind: 'event',
        ts: Number(r.ts),
        type: String(r.type),
        key: String(r.key),
        durationMs: r.duration_ms === null ? null : Number(r.duration_ms),
        value: r.value === null ? null : Number(r.value),
        data: r.data === null ? null : (JSON.parse(String(r.data)) as Record<string, unknown>),
      });
      if (batch.length === BATCH) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length) yield batch;
  }

  private seriesMeta(tracerId: number) {
    const meta = new Map<number, Pick<SeriesTimeline, 'name' | 'unit' | 'kind' | 'labels'>>();
    for (const r of this.stmts.seriesOfTracer.all(tracerId) as Row[])
      meta.set(Number(r.id), {
        name: String(r.name),
        unit: String(r.unit),
        kind: r.kind as SeriesTimeline['kind'],
        labels: JSON.parse(String(r.labels)) as Record<string, string>,
      });
    return meta;
  }

  async markUndone(journalId: number): Promise<void> {
    this.write(() => this.stmts.markUndone.run(Date.now(), journalId));
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  private update(
    table: 'tasks' | 'tracers',
    id: string | number,
    cols: Record<string, unknown>,
  ): void {
    const set = Object.entries(cols).filter(([, v]) => v !== undefined);
    if (set.length === 0) return;
    const sql = `UPDATE ${table} SET ${set.map(([k]) => `${k} = ?`).join(', ')} WHERE id = ?`;
    this.write(() => this.db.prepare(sql).run(...set.map(([, v]) => v), id));
  }

  /** Runs a write, turning SQLite's busy/corrupt/full errors into one-line user errors. */
  private write<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw storeError(this.path, e);
    }
  }
}

const SQLITE_MAGIC = 'SQLite format 3\0';

function openDatabase(path: string): BetterSqlite3.Database {
  if (existsSync(path)) {
    if (!statSync(path).isFile()) throw new UserError(`store ${path} is not a file`);
    // Refuse anything that is not a SQLite file before SQLite opens it: nothing is touched.
    const size = statSync(path).size;
    if (size > 0) {
      const head = Buffer.alloc(16);
      const fd = openSync(path, 'r');
      try {
        readSync(fd, head, 0, 16, 0);
      } finally {
        closeSync(fd);
      }
      if (head.toString('latin1') !== SQLITE_MAGIC)
        throw new UserError(
          `store ${path} is not a SQLite database (corrupt or another file); nothing was changed`,
        );
    }
  } else {
    // Records can hold SQL text and process names: a new store is the user's alone (0600 in a
    // 0700 folder), made with O_EXCL|O_NOFOLLOW so nothing planted at the path is opened.
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    try {
      closeSync(
        openSync(
          path,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          0o600,
        ),
      );
    } catch (e) {
      // Another process made it meanwhile: SQLite opens it as it is.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw storeError(path, e);
    }
  }
  // better-sqlite3 is loaded on first use only: commands that never open a store stay fast.
  const Database = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;
  let db: BetterSqlite3.Database | undefined;
  try {
    db = new Database(path, { timeout: 3000 });
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    const version = Number(db.pragma('user_version', { simple: true }));
    if (version > MIGRATIONS.length)
      throw new UserError(
        `store ${path} has schema version ${version}, newer than this scalpels understands (${MIGRATIONS.length}); upgrade scalpels`,
      );
    if (version < MIGRATIONS.length) {
      db.transaction(() => {
        for (let v = version; v < MIGRATIONS.length; v++) db!.exec(MIGRATIONS[v]!);
        db!.pragma(`user_version = ${MIGRATIONS.length}`);
      })();
    }
    return db;
  } catch (e) {
    db?.close();
    throw storeError(path, e);
  }
}

function storeError(path: string, e: unknown): Error {
  if (e instanceof UserError) return e;
  const code = (e as { code?: string }).code ?? '';
  const msg = (e as Error).message;
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'))
    return new UserError(
      `store ${path} is locked by another process (${msg}); try again when it is done`,
    );
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT'))
    return new UserError(`store ${path} is corrupt (${msg}); nothing was changed`);
  if (code === 'SQLITE_FULL') return new UserError(`store ${path}: disk full (${msg})`);
  if (
    code.startsWith('SQLITE_READONLY') ||
    code.startsWith('SQLITE_CANTOPEN') ||
    code.startsWith('SQLITE_PERM')
  )
    return new UserError(`store ${path} cannot be written (${msg})`);
  return e instanceof Error ? e : new Error(String(e));
}

function toTask(r: Row): TaskRow {
  return {
    id: String(r.id),
    name: String(r.name),
    status: r.status as TaskRow['status'],
    startedAt: Number(r.started_at),
    stoppedAt: r.stopped_at === null ? null : Number(r.stopped_at),
    labels: JSON.parse(String(r.labels)) as Record<string, string>,
    nodes: JSON.parse(String(r.nodes)) as string[],
    ownerPid: r.owner_pid === null ? null : Number(r.owner_pid),
    ownerStart: r.owner_start === null ? null : Number(r.owner_start),
    target: r.target === null ? null : String(r.target),
  };
}

/** A number printed by SQLite's printf %g (infinities are spelled Inf). */
const fromG = (s: string): number =>
  s.endsWith('Inf') ? (s[0] === '-' ? -Infinity : Infinity) : Number(s);

function toMarker(r: Row): Marker {
  return {
    id: Number(r.id),
    taskId: String(r.task_id),
    ts: Number(r.ts),
    text: String(r.text),
    node: r.node === null ? null : String(r.node),
  };
}

function toTracer(r: Row): TracerRow {
  const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
  return {
    id: Number(r.id),
    taskId: String(r.task_id),
    tracer: String(r.tracer),
    pluginPackage: String(r.plugin_package),
    pluginVersion: String(r.plugin_version),
    node: String(r.node),
    options: JSON.parse(String(r.options)) as Record<string, unknown>,
    technique: r.technique === null ? null : String(r.technique),
    status: r.status as TracerRow['status'],
    exitCode: num(r.exit_code),
    error: r.error === null ? null : String(r.error),
    stderrTail: r.stderr_tail === null ? null : String(r.stderr_tail),
    workerPid: num(r.worker_pid),
    workerStart: num(r.worker_start),
    startedAt: num(r.started_at),
    stoppedAt: num(r.stopped_at),
    records: Number(r.records),
    parseErrors: Number(r.parse_errors),
    dropped: Number(r.dropped),
    restarts: Number(r.restarts ?? 0),
  };
}
