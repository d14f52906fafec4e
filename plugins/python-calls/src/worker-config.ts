import type { Rule } from './presets.js';

/** What worker.ts hands the profiler worker (as a JSON file in the runtime directory). */
export interface WorkerConfig {
  target: {
    kind: string;
    pids: readonly number[];
    /** The roots with their start time (see TargetRoot); absent for `run` and system-wide. */
    roots?: readonly { pid: number; startTime: number }[];
    description: string;
  };
  rules: Rule[];
  /** Label calls with the (green) thread that made them. */
  threads: boolean;
  timing: boolean;
  exceptions: boolean;
  intervalMs: number;
  /** Functions reported by name; the rest are summed as `(other)`. 0: no limit. */
  top: number;
  /** Follow processes the target starts later (needs bpftrace). */
  follow: boolean;
  attachTimeoutMs: number;
  agentFile: string;
  gdb: string;
  bpftrace: string;
}
