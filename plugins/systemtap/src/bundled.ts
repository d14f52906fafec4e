import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Target } from '@scalpels/core';
import { readExe } from '@scalpels/core/procfs';
import type { Options } from './options.js';

/** The package root (dist/.. or src/..), where `scripts/` lives. */
export const packageDir = fileURLToPath(new URL('..', import.meta.url));

/** What the prototype's Python-call tracer counted on OpenStack services: `file suffix:function`. */
export const DEFAULT_FUNCTIONS: readonly string[] = [
  'oslo_messaging/rpc/client.py:call',
  'oslo_messaging/rpc/client.py:cast',
  'sqlalchemy/engine/base.py:execute',
  'oslo_concurrency/lockutils.py:lock',
  'oslo_db/sqlalchemy/models.py:save',
];

export interface BundledScript {
  name: string;
  file: string;
  description: string;
  /** Runtimes the script compiles for. */
  runtimes: readonly ('kernel' | 'bpf')[];
  /** Positional script arguments, built from the tracer's options. */
  args(options: Options, target: Target): string[];
}

function intervalMs(options: Options): string {
  return String(Math.max(1, Math.round(options.interval)));
}

export const BUNDLED: Readonly<Record<string, BundledScript>> = {
  syscalls: {
    name: 'syscalls',
    file: 'syscalls.stp',
    description:
      'open/close/read/write system calls per interval (series systemtap.syscalls, label syscall), for the target and its children or the whole system',
    runtimes: ['kernel'],
    args: (options) => [intervalMs(options)],
  },
  'python-calls': {
    name: 'python-calls',
    file: 'python-calls.stp',
    description:
      'Python function entries per interval filtered by file and function (option functions; default: oslo.messaging RPC call/cast, SQLAlchemy execute, oslo lock, oslo.db model save), series systemtap.python_calls keyed module:function',
    runtimes: ['kernel'],
    args: (options, target) => [
      pythonBinary(options, target),
      intervalMs(options),
      options.functions.join(','),
    ],
  },
};

export function bundledScript(name: string): BundledScript | undefined {
  return Object.hasOwn(BUNDLED, name) ? BUNDLED[name] : undefined;
}

/** Absolute path of the script a tracer runs: a bundled one by name, or the user's file. */
export function scriptPath(script: string, pluginDir = packageDir): string {
  const bundled = bundledScript(script);
  return bundled ? join(pluginDir, 'scripts', bundled.file) : script;
}

/**
 * The CPython binary whose function__entry marker the python-calls script probes: the `python`
 * option, else the target's own interpreter, else the first python3 binary on PATH. Probes are placed on the
 * binary's file, so symlinks are resolved.
 */
export function pythonBinary(options: Options, target: Target): string {
  if (options.python !== undefined) return resolveReal(options.python);
  for (const pid of target.pids) {
    // undefined when the process is gone or not ours to read: fall back to PATH.
    const exe = readExe(pid);
    if (exe && /python[\d.]*$/.test(exe)) return exe;
  }
  // Shims (pyenv) and wrappers are scripts: take the first real ELF binary, preferring one that
  // carries SDT markers.
  const elves: string[] = [];
  for (const dir of (process.env.PATH ?? '/usr/bin').split(delimiter)) {
    const candidate = resolveReal(join(dir, 'python3'));
    if (!existsSync(candidate) || elves.includes(candidate)) continue;
    const kind = elfKind(candidate);
    if (kind === 'sdt') return candidate;
    if (kind === 'elf') elves.push(candidate);
  }
  return elves[0] ?? '/usr/bin/python3';
}

function elfKind(path: string): 'sdt' | 'elf' | 'other' {
  try {
    const bytes = readFileSync(path);
    if (bytes.subarray(0, 4).toString('latin1') !== '\x7fELF') return 'other';
    return bytes.includes('.note.stapsdt') ? 'sdt' : 'elf';
  } catch {
    return 'other';
  }
}

function resolveReal(path: string): string {
  try {
    return realpathSync(isAbsolute(path) ? path : join(process.cwd(), path));
  } catch {
    return path;
  }
}

/**
 * What CPython's function__entry marker is worth in this interpreter (python/cpython#98894):
 * 3.11 fires it only for frames entered from C (Python-to-Python calls are inlined), 3.12 to
 * 3.14 do not have it. Undefined when the version is not in the binary's name.
 */
export function functionEntryCaveat(binary: string): string | undefined {
  const m = /python3\.(\d+)/.exec(binary);
  if (!m) return undefined;
  const minor = Number(m[1]);
  if (minor === 11) {
    return `${binary} (CPython 3.11) fires function__entry only for functions entered from C code, not for calls from Python code (python/cpython#98894): python-calls undercounts there`;
  }
  if (minor >= 12 && minor <= 14) {
    return `${binary} (CPython 3.${minor}) has no function__entry marker (python/cpython#98894): python-calls cannot count there`;
  }
  return undefined;
}
