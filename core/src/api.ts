/**
 * The plugin contract (plugin API 1.x). Everything a tracer plugin sees of the core is here;
 * plugins import these types and nothing else from the core's internals.
 */

/** The version of this contract. Plugins declare a semver range that must include it. */
export const PLUGIN_API_VERSION = '1.3.0';

// ---------------------------------------------------------------------------------------------
// Options

interface OptionBase {
  description: string;
  /** Unit shown in `plugins info` (for example `ms`, `bytes`). */
  unit?: string;
  /** When set, the option must be given (no default applies). */
  required?: boolean;
  /**
   * Former names of this option, still accepted (plugin API 1.2): the core maps each to this
   * name with a warning naming both; giving an old and the new name together is refused. Keep an
   * alias for a release after a rename, then drop it.
   */
  aliases?: readonly string[];
}

export type OptionSpec =
  | (OptionBase & { type: 'integer'; default?: number; min?: number; max?: number })
  | (OptionBase & { type: 'number'; default?: number; min?: number; max?: number })
  | (OptionBase & { type: 'boolean'; default?: boolean })
  /** A duration written `500ms`, `2s`, `1m`; the parsed value is in milliseconds. */
  | (OptionBase & { type: 'duration'; default?: string; min?: string; max?: string })
  /** A size written `512`, `64k`, `16M`; the parsed value is in bytes. */
  | (OptionBase & { type: 'size'; default?: string; min?: string; max?: string })
  | (OptionBase & {
      type: 'string';
      default?: string;
      pattern?: RegExp;
      choices?: readonly string[];
    })
  /** Comma-separated list of strings; the parsed value is a string array. */
  | (OptionBase & { type: 'list'; default?: readonly string[]; pattern?: RegExp })
  /** A process id: positive integer of a live process. */
  | (OptionBase & { type: 'pid' })
  /** A TCP/UDP port, 1-65535. */
  | (OptionBase & { type: 'port'; default?: number })
  /** A filesystem path; `mustExist` checks it at validation time. */
  | (OptionBase & { type: 'path'; default?: string; mustExist?: boolean })
  /**
   * A file the core checks with `trustedFile()` before the plugin may read it (see TrustKind):
   * `credential` (passwords, option files) or `script` (needs `--allow-scripts`). The parsed value
   * is the path to use; read credentials with `readTrustedFile()`, which checks again at open.
   */
  | (OptionBase & { type: 'file'; trust: 'credential' | 'script' });

export type OptionSpecs = Record<string, OptionSpec>;
export type OptionValue = number | boolean | string | readonly string[];
export type OptionValues = Record<string, OptionValue | undefined>;

/**
 * The value the core hands a plugin for one option spec, after validation: numbers for
 * `integer`, `number`, `duration` (ms), `size` (bytes), `pid` and `port`; a string array for
 * `list`; the union of `choices` for a string that has them.
 */
export type OptionValueOf<S extends OptionSpec> = S extends {
  type: 'integer' | 'number' | 'duration' | 'size' | 'pid' | 'port';
}
  ? number
  : S extends { type: 'boolean' }
    ? boolean
    : S extends { type: 'list' }
      ? readonly string[]
      : S extends { type: 'string'; choices: readonly (infer C extends string)[] }
        ? C
        : string;

/** Whether the core always gives a value: the option is required or has a default. */
type AlwaysSet<S> = S extends { required: true }
  ? true
  : S extends { default: unknown }
    ? true
    : false;

/**
 * The options a plugin's functions receive, typed from its option specs (plugin API 1.2):
 * defaults are applied by the core, so a required or defaulted option is never undefined.
 * `OptionValuesOf<OptionSpecs>` is the untyped `OptionValues` shape.
 */
export type OptionValuesOf<O extends OptionSpecs> = {
  readonly [K in keyof O]: AlwaysSet<O[K]> extends true
    ? OptionValueOf<O[K]>
    : OptionValueOf<O[K]> | undefined;
};

// ---------------------------------------------------------------------------------------------
// Trust

/**
 * What root allowed when it started the agent (or `scalpels run`), beyond declared options.
 * Absent means nothing is allowed. Binaries never come from options: they are the plugin's own or
 * come from the node configuration (`nodeSettings()`, /etc/scalpels/config.json).
 */
export interface TrustPolicy {
  /** `--allow-scripts`: user scripts (SystemTap .stp, tapset folders) from trusted files. */
  allowScripts: boolean;
  /** `--allow-guru`: SystemTap guru mode (embedded C, writes to kernel memory). */
  allowGuru: boolean;
}

/**
 * How a file named by an option or by the node configuration must be protected before root uses it:
 * `program` (run), `script` (read and run by a tool: .stp), `folder` (a tapset/include folder),
 * `credential` (a password or option file: read, never echoed).
 */
export type TrustKind = 'program' | 'script' | 'folder' | 'credential';

// ---------------------------------------------------------------------------------------------
// Records and schema

export type Labels = Readonly<Record<string, string>>;

/** A numeric point of a named series. For counters the value is the increase since the previous point. */
export interface Sample {
  kind: 'sample';
  /** Series name, declared in the plugin's schema. */
  series: string;
  labels?: Labels;
  value: number;
  /** Milliseconds since the epoch; the core stamps the arrival time when absent. */
  ts?: number;
}

/** A timestamped structured fact: one SQL statement, one RPC message, one opened file. */
export interface TraceEvent {
  kind: 'event';
  /** Event type, declared in the plugin's schema. */
  type: string;
  /** Normalized key reports group by (SQL fingerprint, `exchange/topic.method`, `module:function`, path). */
  key: string;
  ts?: number;
  /** Duration in milliseconds, when the event has one. */
  durationMs?: number;
  /** A numeric magnitude (bytes, rows) when the event has one. */
  value?: number;
  /** Further fields, stored as JSON. Never secrets. */
  data?: Record<string, unknown>;
}

export type TraceRecord = Sample | TraceEvent;

export type SeriesKind = 'counter' | 'gauge' | 'histogram';

export interface SeriesSpec {
  /** `counter`: value is an increase per point, summed over the task. `gauge`: a level. `histogram`: a bucket count (label `le`). */
  kind: SeriesKind;
  /** Unit of the value: `ms`, `bytes`, `count`, `percent`, `pages`, ... */
  unit: string;
  description: string;
  /** Label names the series carries. */
  labels?: readonly string[];
}

export interface EventSpec {
  description: string;
  /** What the event's key is. */
  key: string;
  /** Unit of `value`, when events carry one. */
  valueUnit?: string;
  fields?: Readonly<Record<string, string>>;
}

export interface Schema {
  series: Readonly<Record<string, SeriesSpec>>;
  events?: Readonly<Record<string, EventSpec>>;
}

// ---------------------------------------------------------------------------------------------
// Parsing

/** What the parser hands back per line. Return records, nothing, or a diagnostic. */
export type ParseResult =
  TraceRecord | readonly (TraceRecord | ParseNote)[] | ParseDiagnostic | null | undefined | void;

/** A malformed line. Counted as a parse error; the tracer keeps going. */
export interface ParseDiagnostic {
  kind: 'diagnostic';
  message: string;
}

/**
 * Something the reader of the report must know about the figures (an undercount and its cause,
 * traffic that nothing decoded). Not a parse error; shown as the tracer's note in reports and
 * printed when the tracer stops.
 */
export interface ParseNote {
  kind: 'note';
  message: string;
}

/** Lost events reported by the kernel side (bpftrace lost events, perf LOST records). */
export interface DroppedNotice {
  kind: 'dropped';
  count: number;
}

export interface Parser {
  /** One stdout line, without its newline. Must not throw for bad input; return a diagnostic. */
  line(text: string): ParseResult | DroppedNotice | ParseNote;
  /** Called once after the worker's stdout ends (flush multi-line state). */
  end?(): ParseResult | ParseNote;
}

export interface ParseContext<V = OptionValues> {
  /** Validated options, defaults applied. */
  options: V;
  /** The technique the check chose, when the plugin has several. */
  technique?: string;
  /** Wall-clock milliseconds at the worker's start, for workers that print relative times. */
  startedAt: number;
}

export function note(message: string): ParseNote {
  return { kind: 'note', message };
}

export function diagnostic(message: string): ParseDiagnostic {
  return { kind: 'diagnostic', message };
}

// ---------------------------------------------------------------------------------------------
// Targets

export interface Target {
  /** `none`: system-wide. `pid`: given pids. `service`: matched services. `run`: the command of `scalpels run`. */
  kind: 'none' | 'pid' | 'service' | 'run';
  /** Root processes of the target; descendants belong to it too (follow them). */
  pids: readonly number[];
  /** For `run`: the command line being traced (for display; never to execute). */
  command?: readonly string[];
  /**
   * For `run`: the pid of the core's launcher, which is `pids[0]`. It starts the command once
   * every tracer is ready and stays until they stopped; it is not part of the workload, so
   * tracers may leave it out of their figures (its children are the workload).
   */
  launcher?: number;
  /** Human description: `pid 1234`, `service nova-api (3 processes)`, `run: python3 x.py`. */
  description: string;
  /**
   * The roots (same order as `pids`) with their start time, so a recycled pid is never taken for
   * them (see `isSameProcess`), and the service name reports label their tree with: the
   * `--service` that matched, or for `--pid` the name its command line gives (`keystone` for
   * `uwsgi_python311 --ini /etc/keystone/keystone-uwsgi.ini`). Absent for `none` and `run`.
   */
  roots?: readonly TargetRoot[];
}

export interface TargetRoot {
  pid: number;
  /** Clock ticks since boot when it started (/proc/PID/stat field 22): pid + start time name one process. */
  startTime: number;
  /** Service name for reports; absent when the command line says no more than its comm. */
  service?: string;
}

// ---------------------------------------------------------------------------------------------
// Checks

export type CheckStatus = 'ok' | 'fixable' | 'unavailable';

export interface CheckResult {
  status: CheckStatus;
  /** One line: what works, or why not. */
  detail: string;
  /** For `fixable`: how to make it available (a command to run, a package to install). */
  hint?: string;
  /** The technique chosen, for plugins with a fallback chain. */
  technique?: string;
  /**
   * The check failed for a reason that may pass (a probe timed out under load, a server did not
   * answer in time): the core retries within a bounded budget before refusing (plugin API 1.1).
   * A probe run through `exec()` that failed that way marks the check transient by itself.
   */
  transient?: boolean;
}

export interface CheckContext<V = OptionValues> {
  /**
   * Validated options, defaults applied. A `quick` check (`plugins list`) runs without user
   * options: then it sees the defaults only, and required options are absent.
   */
  options: V;
  /**
   * `quick` (for `plugins list`): cheap probes only (files, PATH), no process spawned, no network.
   * `full` (for `doctor` and before starting): everything, including running the tool and connecting.
   */
  depth: 'quick' | 'full';
  isRoot: boolean;
  /**
   * Run a command (argv, no shell) and capture its output; never throws. Exit code 124: timed
   * out; 127: not found; 126: not executable. `transient` (plugin API 1.1): it failed in a way that
   * may pass (a timeout on a busy host, no resources to spawn); the core then retries the check.
   */
  exec(
    argv: readonly string[],
    timeoutMs?: number,
  ): Promise<{ exitCode: number; stdout: string; stderr: string; transient?: boolean }>;
  /** Find a binary on PATH. */
  which(binary: string): Promise<string | undefined>;
  /** Absolute path of the plugin package's root folder, when the core knows it. */
  pluginDir?: string;
  /** What root allowed (scripts, guru mode); absent: nothing. */
  policy?: TrustPolicy;
}

export interface Requirement {
  /** `binary`, `root`, `capability`, `kernel`, `service`, `file`. */
  kind: string;
  what: string;
  /** Why it is needed. */
  why?: string;
}

// ---------------------------------------------------------------------------------------------
// Workers

export interface WorkerContext {
  target: Target;
  taskId: string;
  tracerId: number;
  /** Technique chosen by check(), for plugins with a fallback chain. */
  technique?: string;
  /** Directory for the worker's scratch files (sockets, state); removed after the tracer stops. */
  runtimeDir: string;
  /** Absolute path of the plugin package's root folder (to locate shipped scripts). */
  pluginDir: string;
  /** What root allowed (scripts, guru mode); absent: nothing. */
  policy?: TrustPolicy;
}

export interface WorkerSpec {
  /** The command as an argv array; never run through a shell. */
  argv: readonly string[];
  env?: Readonly<Record<string, string>>;
  cwd?: string;
  /** Data written to the worker's stdin (for example a generated script), then stdin is closed. */
  stdin?: string;
  stop?: {
    /** Signal that asks the worker to flush and exit. Default SIGTERM. */
    signal?: NodeJS.Signals;
    /** How long to wait after the signal before killing the process group. Default 5000. */
    graceMs?: number;
  };
  /**
   * Whether the worker may end by itself with its job done (for example when the traced process
   * exits). Then exit code 0 means `stopped`; otherwise any exit before stop means `failed`.
   */
  mayExit?: boolean;
  /** When the worker is ready to observe (the workload of `run` waits for every tracer to be ready). */
  ready?: {
    /** A stdout line matching this marks it ready (the line still goes to the parser). */
    stdout?: RegExp;
    /** A stderr line matching this marks it ready. */
    stderr?: RegExp;
    /** Give up waiting after this long and fail the tracer. Default 30000. */
    timeoutMs?: number;
  };
}

/**
 * The ready line of workers written for Scalpels (node or Python scripts a plugin ships): printed
 * on stdout, alone on its line, once the worker observes (baseline taken, probes attached). A
 * program a worker generates for a tool that prints our text (a bpftrace `BEGIN { printf }`)
 * prints the same text, optionally followed by a space and details for the parser. Workers that
 * are a tool's own output (strace, perf) keep matching that tool's line. The parser sees the line
 * too (see WorkerSpec.ready) and should ignore it.
 */
export const WORKER_READY_LINE = 'scalpels: ready';

/** The `WorkerSpec.ready.stdout` pattern for WORKER_READY_LINE (with or without details after it). */
export function readyLine(): RegExp {
  return /^scalpels: ready(?: |$)/;
}

/** Prints WORKER_READY_LINE on the worker's stdout (for node workers). */
export function announceReady(out: { write(text: string): unknown } = process.stdout): void {
  out.write(`${WORKER_READY_LINE}\n`);
}

/** A way of doing the plugin's job; `check()` picks the first that works here. */
export interface Technique<V = OptionValues> {
  name: string;
  description: string;
  check(ctx: CheckContext<V>): Promise<CheckResult>;
}

/** Things a tracer changes outside itself, undone on stop, on crash recovery and by `scalpels recover`. */
export interface UndoAction {
  /** Plugin-defined kind, handed back to `undo()`. */
  kind: string;
  /** JSON-serializable old state. */
  data: unknown;
  description: string;
}

/**
 * A plugin's manifest. `O` is its option specs: every function receives the options typed from
 * them (see OptionValuesOf). Without a type argument it is the untyped manifest the core handles.
 */
export interface PluginManifest<O extends OptionSpecs = OptionSpecs> {
  name: string;
  version: string;
  description: string;
  /** Semver range of plugin API versions this plugin works with. */
  apiVersion: string;
  options: O;
  /**
   * Options this plugin no longer takes, each with where its setting lives now (for example an
   * option that named a program, now read from the node configuration). Naming one is refused
   * with that text.
   */
  retiredOptions?: Readonly<Record<string, string>>;
  requires?: readonly Requirement[];
  /** Whether the tracer watches processes. `required`: it needs a target; `optional`: system-wide without one. */
  target: 'none' | 'optional' | 'required';
  /** Ordered fallback chain; `check()` usually walks it. */
  techniques?: readonly Technique<OptionValuesOf<O>>[];
  check(ctx: CheckContext<OptionValuesOf<O>>): Promise<CheckResult>;
  /** Extra validation across options, after each option passed its own spec. Return an error message or nothing. */
  validate?(options: OptionValuesOf<O>): string | undefined;
  /**
   * Deeper validation without starting anything, stage by stage (for example compiling a script
   * as far as this machine allows): `scalpels plugins validate NAME key=value ...`.
   */
  verify?(
    options: OptionValuesOf<O>,
    ctx: CheckContext<OptionValuesOf<O>>,
  ): Promise<readonly VerifyStage[]>;
  worker(options: OptionValuesOf<O>, ctx: WorkerContext): WorkerSpec | Promise<WorkerSpec>;
  parser(ctx: ParseContext<OptionValuesOf<O>>): Parser;
  schema: Schema;
  /**
   * Runs in the core before the worker starts, for tracers that change something outside
   * themselves (a server setting, tracing on a vhost). Call `ctx.journal()` with the old state
   * *before* each change: the journal is stored first, so the change is undone even after a crash.
   */
  setup?(options: OptionValuesOf<O>, ctx: SetupContext): Promise<void>;
  /** Restore something the tracer changed outside itself (see UndoAction). Must be idempotent. */
  undo?(action: UndoAction, options: OptionValuesOf<O>): Promise<void>;
  /**
   * How reports summarize this tracer's records: section title, headline figures, top tables.
   * The core renders every format (table, JSON, HTML) from it; without one, a generic view ranks
   * the plugin's series by kind.
   */
  report?: ReportView;
}

// ---------------------------------------------------------------------------------------------
// Report views

/**
 * What a figure or column takes of the matched series. `total`: counter totals (or the summed
 * levels of gauges), summed; `peak`: the highest point of each matched series, summed (one
 * process tree: its peak); `mean`: the series means, summed; `p50`/`p95`/`p99`: a quantile of a
 * histogram's buckets, read as the bucket's upper bound `le`.
 */
export type ReportAggregate = 'total' | 'peak' | 'mean' | 'p50' | 'p95' | 'p99';

/** One figure of the report's headline ("CPU time 1.62 s", "SQL statements 6964"). */
export interface ReportFigure {
  label: string;
  /** Series name(s) of this plugin's schema; several are summed (user + system CPU time). */
  series: string | readonly string[];
  /** Default `total` for counters and histograms' bucket counts, `peak` for gauges. */
  of?: ReportAggregate;
  /** Only series whose labels have these values. */
  where?: Readonly<Record<string, string>>;
  /** Unit to show when it differs from the series' (for example a histogram's `le` unit). */
  unit?: string;
}

/** One column of a top table. */
export interface ReportColumn {
  label: string;
  /** Series summed into the column, per row key. */
  series?: string | readonly string[];
  /** What the column takes of the series (see ReportAggregate; default as for figures). */
  of?: ReportAggregate;
  /**
   * A field of the table's event rows (`events`): the value for keys that have no series, or
   * the only value when `series` is absent (p95 of statement durations).
   */
  event?: 'count' | 'totalMs' | 'meanMs' | 'p95Ms' | 'totalValue';
  /** The quotient of two other columns (by label): mean time = time / calls. */
  ratio?: readonly [string, string];
  /** This column's share of its total, as a fraction (shown as a percentage). */
  share?: string;
  unit?: string;
}

/** A ranked table: one row per value of the key labels (per syscall, per file, per fingerprint). */
export interface ReportTableView {
  title: string;
  /** Label names that make a row's key; series without them are left out. */
  key: readonly string[];
  columns: readonly ReportColumn[];
  /**
   * Column labels that rank the rows, in order of preference: the first with a non-zero total
   * ranks (time when the tracer measured it, else calls). Default: the first column.
   */
  rank?: readonly string[];
  /**
   * Join the tracer's top event keys to the rows (the event key equals the row key's single label
   * value); keys without series become rows of their own.
   */
  events?: boolean;
  /** Only series whose labels have these values. */
  where?: Readonly<Record<string, string>>;
  /** At most this many rows, whatever `--top` says (tables that give context, not the subject). */
  limit?: number;
}

export interface ReportHistogramView {
  /** Unit of the `le` bounds (`ns`, `ms`). */
  boundUnit: string;
  /** Whether a bucket counts everything up to `le` (Prometheus style) or only its own range. */
  cumulative: boolean;
}

export interface ReportView {
  /** Section title ("System calls", "SQL profile"). */
  title: string;
  headline?: readonly ReportFigure[];
  tables?: readonly ReportTableView[];
  /** Histogram series of the schema: how to read their buckets. */
  histograms?: Readonly<Record<string, ReportHistogramView>>;
}

export interface VerifyStage {
  stage: string;
  status: 'passed' | 'failed' | 'skipped';
  detail: string;
}

export interface SetupContext extends WorkerContext {
  /** Store an undo action durably. Resolves once it is stored; only then make the change. */
  journal(action: UndoAction): Promise<void>;
  /**
   * Takes a reference on a change several tracers may share (a server setting, an extension,
   * tracing on a vhost, a tracefs mount), held until the tracer stops (plugin API 1.1).
   * The first holder runs `change()`: it journals the original state and makes the change.
   * Later holders only take a reference (their `change()` does not run). When the last holder
   * releases, the core restores what the first journaled, newest first, through `undo()`.
   * Crash recovery releases only the dead holders' references. Resolves once held.
   */
  lease(request: LeaseRequest): Promise<LeaseGrant>;
}

/** A shared change (see SetupContext.lease). */
export interface LeaseRequest {
  /**
   * What is shared: the resource and the setting, as a stable key that names the server itself
   * (not how this node reaches it), for example `postgresql:<system id>:<port>/postgres/pg_stat_statements`
   * or `rabbitmq:rabbit@host/vhost:/:trace_on`. Tracers that give the same key share one lease.
   */
  resource: string;
  /**
   * `node`: the resource belongs to this host (tracefs, a local mount); the key is scoped to the
   * node. `shared` (default): a server that tracers of several nodes may reach; holders on every
   * node of a shared store count.
   */
  scope?: 'node' | 'shared';
  /**
   * First holder only, while no other tracer can take or release the lease: read the current
   * state, `journal()` it (stored before it resolves), then change it. Journal nothing when the
   * state is already as needed: then nothing is restored.
   *
   * `state.reapplying` is true when the record already holds a dead holder's journal (its change
   * may still be in place, left by a tracer of this store): the state read now may be that
   * change, not another party's. Since API 1.3.
   */
  change(journal: (action: UndoAction) => Promise<void>, state: LeaseChangeState): Promise<void>;
}

export interface LeaseChangeState {
  /** A dead holder of this store journaled the original state; its change may still be in place. */
  reapplying: boolean;
}

export interface LeaseGrant {
  /** Whether this tracer ran `change()` (or re-applied a change whose restore had failed). */
  first: boolean;
  /** Holders, this one included. */
  holders: number;
}

/**
 * What `definePlugin` returns: the manifest as the core and tests call it (options of any shape
 * the core validated), with its option specs' literal type kept so that `validateOptions(plugin,
 * ...)` and `OptionValuesOf<typeof plugin.options>` are typed. Callers written against 1.1
 * (`plugin.check(checkContext({}, 'quick'))`) still compile.
 */
export type DefinedPlugin<O extends OptionSpecs> = Omit<PluginManifest, 'options'> & { options: O };

/**
 * Identity helper that gives plugin authors type checking on their manifest, and (plugin API
 * 1.2) options typed from their specs: `worker(options)` sees `options.interval` as a number
 * when `interval` is an integer with a default, with no type written by the author.
 */
export function definePlugin<const O extends OptionSpecs>(
  manifest: PluginManifest<O>,
): DefinedPlugin<O> {
  return manifest;
}
