import type { Schema, SeriesKind, UndoAction } from '../api.js';
import type { RecordSink } from '../runner.js';

export type TaskStatus = 'running' | 'stopping' | 'stopped' | 'failed' | 'interrupted';
export type TracerStatus =
  'starting' | 'running' | 'stopping' | 'stopped' | 'failed' | 'interrupted';

export interface TaskRow {
  id: string;
  name: string;
  status: TaskStatus;
  startedAt: number;
  stoppedAt: number | null;
  labels: Record<string, string>;
  nodes: string[];
  /** The process that owns the task's tracers (CLI of `run`, or an agent), to detect a crash. */
  ownerPid: number | null;
  ownerStart: number | null;
  target: string | null;
}

export interface TracerRow {
  id: number;
  taskId: string;
  tracer: string;
  pluginPackage: string;
  pluginVersion: string;
  node: string;
  options: Record<string, unknown>;
  technique: string | null;
  status: TracerStatus;
  exitCode: number | null;
  error: string | null;
  stderrTail: string | null;
  workerPid: number | null;
  /** Start time of the worker process (clock ticks since boot, /proc/PID/stat field 22). */
  workerStart: number | null;
  startedAt: number | null;
  stoppedAt: number | null;
  records: number;
  parseErrors: number;
  dropped: number;
  /** Times a crashed worker was restarted (restart policy). */
  restarts: number;
}

export type NewTask = Pick<
  TaskRow,
  'name' | 'labels' | 'nodes' | 'ownerPid' | 'ownerStart' | 'target'
> & {
  startedAt: number;
};
export type NewTracer = Pick<
  TracerRow,
  'taskId' | 'tracer' | 'pluginPackage' | 'pluginVersion' | 'node' | 'options' | 'technique'
>;

export type TracerPatch = Partial<
  Pick<
    TracerRow,
    | 'status'
    | 'exitCode'
    | 'error'
    | 'stderrTail'
    | 'workerPid'
    | 'workerStart'
    | 'startedAt'
    | 'stoppedAt'
    | 'records'
    | 'parseErrors'
    | 'dropped'
    | 'restarts'
  >
>;
export type TaskPatch = Partial<Pick<TaskRow, 'status' | 'stoppedAt' | 'ownerPid' | 'ownerStart'>>;

/** Aggregates of one series over a task, computed by the store. */
export interface SeriesSummary {
  name: string;
  unit: string;
  kind: SeriesKind;
  labels: Record<string, string>;
  points: number;
  sum: number;
  min: number;
  max: number;
  mean: number;
  last: number;
  firstTs: number;
  lastTs: number;
}

export interface EventTopRow {
  key: string;
  count: number;
  totalMs: number;
  meanMs: number;
  p95Ms: number;
  /** Sum of event values (bytes, rows) when events carry one. */
  totalValue: number;
}

export type EventRanking = 'time' | 'count' | 'value';

export interface EventSummary {
  count: number;
  top: EventTopRow[];
}

export interface JournalEntry {
  id: number;
  tracerId: number;
  plugin: string;
  action: UndoAction;
  options: Record<string, unknown>;
  createdAt: number;
  /** The node whose tracer journaled it (null in entries written before nodes were kept). */
  node: string | null;
}

/** A tracer holding a lease. */
export interface LeaseHolder {
  tracerId: number;
  node: string;
  since: number;
}

/** A change the first holder made, restored when the last holder leaves. */
export interface LeaseRestore {
  plugin: string;
  action: UndoAction;
  options: Record<string, unknown>;
  node: string;
  tracerId: number;
}

/** A shared change held by reference (see SetupContext.lease). */
export interface LeaseRow {
  /** Scoped key: `shared:<resource>` or `node:<node>:<resource>`. */
  key: string;
  holders: LeaseHolder[];
  /** Oldest first; restored newest first. */
  restores: LeaseRestore[];
  createdAt: number;
}

/**
 * Lease records and their locks. A record is only read and written by whoever holds its lock;
 * locks expire (a crashed locker blocks the others for at most its TTL) and are renewed.
 */
export interface LeaseStore {
  /** Takes the lock of a key when free or expired; false when someone else holds it. */
  tryLockLease(key: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Extends the lock while its owner still holds it; false when it was lost. */
  renewLeaseLock(key: string, owner: string, ttlMs: number): Promise<boolean>;
  unlockLease(key: string, owner: string): Promise<void>;
  getLease(key: string): Promise<LeaseRow | undefined>;
  putLease(row: LeaseRow): Promise<void>;
  deleteLease(key: string): Promise<void>;
  listLeases(): Promise<LeaseRow[]>;
}

/** A timestamped note on a task (`scalpels mark TEXT`): reports annotate and split by markers. */
export interface Marker {
  id: number;
  taskId: string;
  ts: number;
  text: string;
  node: string | null;
}

/** Aggregates of one series over one time bucket (`ts` is the bucket start). */
export interface TimelineBucket {
  ts: number;
  sum: number;
  count: number;
  min: number;
  max: number;
}

/** One series with its points grouped into fixed buckets, computed by the store. */
export interface SeriesTimeline {
  name: string;
  unit: string;
  kind: SeriesKind;
  labels: Record<string, string>;
  buckets: TimelineBucket[];
}

/** Aggregates of one series over a time range, plus the sum of squares (for noise estimates). */
export interface SeriesRangeSummary {
  name: string;
  unit: string;
  kind: SeriesKind;
  labels: Record<string, string>;
  points: number;
  sum: number;
  sumSquares: number;
  min: number;
  max: number;
}

/** One stored record, as exported by `report --format jsonl`. */
export type StoredRecord =
  | {
      kind: 'sample';
      ts: number;
      series: string;
      unit: string;
      seriesKind: SeriesKind;
      labels: Record<string, string>;
      value: number;
    }
  | {
      kind: 'event';
      ts: number;
      type: string;
      key: string;
      durationMs: number | null;
      value: number | null;
      data: Record<string, unknown> | null;
    };

/**
 * What reports beyond the summary need (timelines, markers, ranges, exports). Optional on a
 * Store so that a store that cannot do it yet still gives summary reports.
 */
export interface ReportQueries {
  addMarker(marker: Omit<Marker, 'id'>): Promise<Marker>;
  listMarkers(taskId: string): Promise<Marker[]>;
  /** Points of every series of a tracer, grouped into buckets of `stepMs` starting at `fromTs`. */
  seriesTimeline(tracerId: number, fromTs: number, stepMs: number): Promise<SeriesTimeline[]>;
  /** Times of a tracer's first and last points (undefined without points). */
  tracerSpan(tracerId: number): Promise<{ first: number; last: number } | undefined>;
  /** Aggregates of every series of a tracer over points with fromTs <= ts < toTs. */
  seriesRange(tracerId: number, fromTs: number, toTs: number): Promise<SeriesRangeSummary[]>;
  /** Every record of a tracer, in batches: samples (by series, then time), then events (by time). */
  records(tracerId: number): AsyncIterable<StoredRecord[]>;
}

/**
 * Where tasks, tracers and records live. SQLite is the embedded default; Redis streams are the
 * multi-node bus. Reports are aggregations the store computes, never rows loaded into JavaScript.
 */
export interface Store extends LeaseStore {
  readonly url: string;
  createTask(task: NewTask): Promise<TaskRow>;
  updateTask(id: string, patch: TaskPatch): Promise<void>;
  /** A task by full id or unique id prefix, or by name (latest of that name). */
  findTask(ref: string): Promise<TaskRow | undefined>;
  lastTask(): Promise<TaskRow | undefined>;
  listTasks(): Promise<TaskRow[]>;
  createTracer(tracer: NewTracer): Promise<TracerRow>;
  updateTracer(id: number, patch: TracerPatch): Promise<void>;
  listTracers(taskId: string): Promise<TracerRow[]>;
  /** One tracer by id. */
  tracer(id: number): Promise<TracerRow | undefined>;
  /** Tracers in a live state (starting, running, stopping), for crash recovery. */
  liveTracers(): Promise<TracerRow[]>;
  /** A sink for one tracer's records; it keeps the tracer's series dictionary. */
  recordSink(tracer: TracerRow, schema: Schema): RecordSink;
  seriesSummaries(tracerId: number): Promise<SeriesSummary[]>;
  /** Event keys ranked by total time (default), by event count, or by summed value (bytes, rows). */
  eventSummary(tracerId: number, top: number, by?: EventRanking): Promise<EventSummary>;
  /** Stores an undo action durably before the tracer changes something outside itself. */
  journal(
    tracerId: number,
    plugin: string,
    action: UndoAction,
    options: Record<string, unknown>,
    node: string,
  ): Promise<void>;
  pendingJournal(tracerId?: number): Promise<JournalEntry[]>;
  markUndone(journalId: number): Promise<void>;
  close(): Promise<void>;
  addMarker?: ReportQueries['addMarker'];
  listMarkers?: ReportQueries['listMarkers'];
  seriesTimeline?: ReportQueries['seriesTimeline'];
  seriesRange?: ReportQueries['seriesRange'];
  tracerSpan?: ReportQueries['tracerSpan'];
  records?: ReportQueries['records'];
}
