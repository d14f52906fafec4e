/**
 * The lines the collector prints on stdout, one JSON object each. Counters are already deltas since
 * the previous line of the same kind; times keep the server's unit (picoseconds for
 * performance_schema, milliseconds for PostgreSQL) and are converted by the parser.
 */

/** Printed once the baseline is taken and logs are opened at their end: tracing starts here. */
export interface ReadyLine {
  t: 'ready';
  engine: 'mysql' | 'postgresql';
  technique: string;
  server: string;
  /** Where per-statement events come from, when they are on. */
  events?: string;
  ts: number;
}

/** Increase of one statement digest's counters over one interval. */
export interface DigestLine {
  t: 'digest';
  ts: number;
  engine: 'mysql' | 'postgresql';
  digest: string;
  schema: string;
  /** The server's normalized text (DIGEST_TEXT, pg_stat_statements.query). */
  text: string;
  /** Set when `text` was cut (see MAX_TEXT): the fingerprint of the whole text. */
  fingerprint?: string;
  calls: number;
  /** Integer strings: picoseconds for MySQL/MariaDB (64-bit, beyond double precision). */
  timePs?: string;
  lockPs?: string;
  /** Cumulative maximum since the server first saw the digest, picoseconds. */
  maxPs?: string;
  /** PostgreSQL times are milliseconds already. */
  timeMs?: number;
  maxMs?: number;
  rowsSent?: number;
  rowsExamined?: number;
  rowsAffected?: number;
  errors?: number;
  warnings?: number;
  noIndexUsed?: number;
}

/** Increase of the server's statement counters (MySQL `Com_*`), the tracer's own statements excluded. */
export interface StatusLine {
  t: 'status';
  ts: number;
  counters: Record<string, number>;
}

/** One statement from a server log. */
export interface StatementLine {
  t: 'statement';
  ts: number;
  source: 'slow-log' | 'general-log' | 'pg-log';
  text: string;
  /** Set when `text` was cut (see MAX_TEXT): the fingerprint of the whole text. */
  fingerprint?: string;
  thread?: number;
  user?: string;
  host?: string;
  schema?: string;
  /** Absent for the general log, which has no durations. */
  durationMs?: number;
  lockMs?: number;
  rowsSent?: number;
  rowsExamined?: number;
  rowsAffected?: number;
}

/** Statements the collector knows it could not see (a rotated log, a reset digest table). */
export interface LostLine {
  t: 'lost';
  count: number;
  why: string;
}

/** What qualifies the figures (events that cannot be complete, and why): the tracer's note. */
export interface NoteLine {
  t: 'note';
  message: string;
}

/**
 * Longer texts are cut before they are printed, with the fingerprint of the whole text alongside:
 * the core cuts stdout lines at 1 MiB, and a multi-megabyte bulk INSERT must stay one record.
 */
export const MAX_TEXT = 64 * 1024;

export type CollectorLine =
  ReadyLine | DigestLine | StatusLine | StatementLine | LostLine | NoteLine;
