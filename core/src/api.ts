/**
 * The plugin contract (plugin API 1.x). Everything a tracer plugin sees of the core is here;
 * plugins import these types and nothing else from the core's internals.
 */

/** The version of this contract. Plugins declare a semver range that must include it. */
export const PLUGIN_API_VERSION = '1.0.0';

// ---------------------------------------------------------------------------------------------
// Options

interface OptionBase {
  description: string;
  /** Unit shown in `plugins info` (for example `ms`, `bytes`). */
  unit?: string;
  /** When set, the option must be given (no default applies). */
  required?: boolean;
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
  | (OptionBase & { type: 'path'; default?: string; mustExist?: boolean });

export type OptionSpecs = Record<string, OptionSpec>;
export type OptionValue = number | boolean | string | readonly string[];
export type OptionValues = Record<string, OptionValue | undefined>;

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
  TraceRecord | readonly TraceRecord[] | ParseDiagnostic | null | undefined | void;

/** A malformed line. Counted as a parse error; the tracer keeps going. */
export interface ParseDiagnostic {
  kind: 'diagnostic';
  message: string;
}

/** Lost events reported by the kernel side (bpftrace lost events, perf LOST records). */
export interface DroppedNotice {
  kind: 'dropped';
  count: number;
}

export interface Parser {
  /** One stdout line, without its newline. Must not throw for bad input; return a diagnostic. */
  line(text: string): ParseResult | DroppedNotice;
  /** Called once after the worker's stdout ends (flush multi-line state). */
  end?(): ParseResult;
}

export interface ParseContext {
  options: OptionValues;
  /** The technique the check chose, when the plugin has several. */
  technique?: string;
  /** Wall-clock milliseconds at the worker's start, for workers that print relative times. */
  startedAt: number;
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
}

export interface CheckContext {
  options: OptionValues;
  /**
   * `quick` (for `plugins list`): cheap probes only (files, PATH), no process spawned, no network.
   * `full` (for `doctor` and before starting): everything, including running the tool and connecting.
   */
  depth: 'quick' | 'full';
  isRoot: boolean;
  /** Run a command (argv, no shell) and capture its output; never throws. */
  exec(
    argv: readonly string[],
    timeoutMs?: number,
  ): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  /** Find a binary on PATH. */
  which(binary: string): Promise<string | undefined>;
  /** Absolute path of the plugin package's root folder, when the core knows it. */
  pluginDir?: string;
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

/** A way of doing the plugin's job; `check()` picks the first that works here. */
export interface Technique {
  name: string;
  description: string;
  check(ctx: CheckContext): Promise<CheckResult>;
}

/** Things a tracer changes outside itself, undone on stop, on crash recovery and by `scalpels recover`. */
export interface UndoAction {
  /** Plugin-defined kind, handed back to `undo()`. */
  kind: string;
  /** JSON-serializable old state. */
  data: unknown;
  description: string;
}

export interface PluginManifest {
  name: string;
  version: string;
  description: string;
  /** Semver range of plugin API versions this plugin works with. */
  apiVersion: string;
  options: OptionSpecs;
  requires?: readonly Requirement[];
  /** Whether the tracer watches processes. `required`: it needs a target; `optional`: system-wide without one. */
  target: 'none' | 'optional' | 'required';
  /** Ordered fallback chain; `check()` usually walks it. */
  techniques?: readonly Technique[];
  check(ctx: CheckContext): Promise<CheckResult>;
  /** Extra validation across options, after each option passed its own spec. Return an error message or nothing. */
  validate?(options: OptionValues): string | undefined;
  /**
   * Deeper validation without starting anything, stage by stage (for example compiling a script
   * as far as this machine allows): `scalpels plugins validate NAME key=value ...`.
   */
  verify?(options: OptionValues, ctx: CheckContext): Promise<readonly VerifyStage[]>;
  worker(options: OptionValues, ctx: WorkerContext): WorkerSpec | Promise<WorkerSpec>;
  parser(ctx: ParseContext): Parser;
  schema: Schema;
  /**
   * Runs in the core before the worker starts, for tracers that change something outside
   * themselves (a server setting, tracing on a vhost). Call `ctx.journal()` with the old state
   * *before* each change: the journal is stored first, so the change is undone even after a crash.
   */
  setup?(options: OptionValues, ctx: SetupContext): Promise<void>;
  /** Restore something the tracer changed outside itself (see UndoAction). Must be idempotent. */
  undo?(action: UndoAction, options: OptionValues): Promise<void>;
}

export interface VerifyStage {
  stage: string;
  status: 'passed' | 'failed' | 'skipped';
  detail: string;
}

export interface SetupContext extends WorkerContext {
  /** Store an undo action durably. Resolves once it is stored; only then make the change. */
  journal(action: UndoAction): Promise<void>;
}

/** Identity helper that gives plugin authors type checking on their manifest. */
export function definePlugin(manifest: PluginManifest): PluginManifest {
  return manifest;
}
