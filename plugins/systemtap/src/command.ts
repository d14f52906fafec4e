import { existsSync } from 'node:fs';
import type { Target } from '@scalpels/core';
import { bundledScript, packageDir, scriptPath } from './bundled.js';
import { stapFlags } from './flags.js';
import type { Options } from './options.js';

export type Runtime = 'kernel' | 'bpf';

/** Printed once the probes are in place; the worker's `ready` pattern waits for it. */
export const READY_LINE = '# scalpels: ready';

/**
 * Added to every script with `-E`: a timer fires only once the module's probes are registered,
 * so the first tick tells `scalpels run` that the workload may start. One tick, then nothing.
 */
export const READY_PROBE = `global __scalpels_ready probe timer.ms(50) { if (!__scalpels_ready) { __scalpels_ready = 1; printf("${READY_LINE}\\n") } }`;

export interface StapCommand {
  /** Arguments after `stap`. */
  args: string[];
  script: string;
  runtime: Runtime;
  /** Root pids beyond the first, which `-x` cannot name. */
  extraRoots: number[];
}

/** A module name stap accepts (a C identifier, short enough for the kernel's module name limit). */
export function moduleName(taskId: string, tracerId: number): string {
  const task =
    taskId
      .toLowerCase()
      .replace(/[^a-z0-9]/g, '')
      .slice(0, 24) || 'task';
  return `scalpels_${task}_${tracerId}`;
}

/** Cross-option checks, shared by the manifest's validate() and the worker. */
export function optionProblem(options: Options): string | undefined {
  const { script, runtime } = options;
  const bundled = bundledScript(script);
  if (bundled) {
    if (!bundled.runtimes.includes(runtime)) {
      return `bundled script "${script}" runs on runtime ${bundled.runtimes.join('/')}, not ${runtime}`;
    }
    if (options.args.length) {
      return `bundled script "${script}" takes its settings from options (interval, functions, python), not args`;
    }
  } else if (!/\.stp$/.test(script) && !script.includes('/')) {
    return `script "${script}" is neither a bundled script (syscalls, python-calls) nor a path to a .stp file`;
  } else if (!existsSync(script)) {
    return `script file ${script} does not exist`;
  }
  const flags = stapFlags(options.flags, options.guru);
  if ('error' in flags) return flags.error;
  return undefined;
}

/** The stap arguments for a tracer (without the `stap` itself), for running or for validating. */
export function stapCommand(
  options: Options,
  target: Target,
  opts: { pluginDir?: string; module?: string; ready?: boolean } = {},
): StapCommand {
  const { script, runtime } = options;
  const bundled = bundledScript(script);
  const flags = stapFlags(options.flags, options.guru);
  if ('error' in flags) throw new Error(flags.error);
  const args: string[] = [];
  if (runtime === 'bpf') args.push('--runtime=bpf');
  if (options.guru) args.push('-g');
  if (opts.module) args.push('-m', opts.module);
  args.push(...flags.argv);
  // `-x` makes target() the root pid; scripts follow its children with target_set_pid(). The
  // workload of `scalpels run` is started by the core's launcher (the root pid), so `-c` is not
  // used: it would start the command a second time.
  const [root, ...extraRoots] = target.pids;
  if (target.kind !== 'none' && root !== undefined) args.push('-x', String(root));
  if (opts.ready) args.push('-E', READY_PROBE);
  const path = scriptPath(script, opts.pluginDir ?? packageDir);
  args.push(path);
  if (bundled) args.push(...bundled.args(options, target));
  else args.push(...options.args);
  return { args, script: path, runtime, extraRoots };
}
