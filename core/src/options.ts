import { existsSync } from 'node:fs';
import type {
  OptionSpec,
  OptionSpecs,
  OptionValue,
  OptionValues,
  OptionValuesOf,
  TrustPolicy,
} from './api.js';
import { UserError } from './errors.js';
import { trustedFile } from './trust.js';
import { parseDuration, parseSize } from './units.js';

/** What option validation needs of a manifest. */
export interface OptionsOf<O extends OptionSpecs> {
  name: string;
  options: O;
  // Not a source of inference: O comes from `options` (a defined plugin's validate is untyped).
  validate?(options: NoInfer<OptionValuesOf<O>>): string | undefined;
  retiredOptions?: Readonly<Record<string, string>>;
}

/** Where a deprecation warning goes when the caller gives no logger: one stderr line. */
function stderrWarning(message: string): void {
  process.stderr.write(`scalpels: warn: ${message}\n`);
}

/**
 * Renames options given by a former name (an `aliases` entry of their spec) to the current one,
 * with one warning per old name. Giving an old name and the new one together is refused: which
 * one was meant is unknown.
 */
export function resolveAliases(
  manifest: Pick<OptionsOf<OptionSpecs>, 'name' | 'options'>,
  raw: Readonly<Record<string, unknown>>,
  warn: (message: string) => void = stderrWarning,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const renamed: [string, string][] = [];
  for (const [key, value] of Object.entries(raw)) {
    const current = Object.hasOwn(manifest.options, key) ? undefined : aliasTarget(manifest, key);
    if (current === undefined) {
      out[key] = value;
      continue;
    }
    // The current name, or another former name of it, given as well: which one was meant is unknown.
    const other = Object.hasOwn(raw, current)
      ? current
      : renamed.find(([, to]) => to === current)?.[0];
    if (other !== undefined)
      throw new UserError(
        `${manifest.name}: options "${key}" and "${other}" are the same option ("${current}"; "${key}" is a former name): give only "${current}"`,
      );
    out[current] = value;
    renamed.push([key, current]);
  }
  for (const [old, current] of renamed)
    warn(`${manifest.name}: option "${old}" is deprecated: use "${current}"`);
  return out;
}

function aliasTarget(
  manifest: Pick<OptionsOf<OptionSpecs>, 'options'>,
  key: string,
): string | undefined {
  for (const [name, spec] of Object.entries(manifest.options))
    if (spec.aliases?.includes(key)) return name;
  return undefined;
}

/**
 * Turns raw option values (strings from `--set`, or typed JSON from an RPC request) into typed
 * values, applying defaults. Any problem is a UserError naming the plugin and the option. An
 * option given by a former name is renamed, with a warning through `warn`.
 */
export function validateOptions<O extends OptionSpecs>(
  manifest: OptionsOf<O>,
  given: Readonly<Record<string, unknown>>,
  /** What root allowed (`file` options of trust `script`); absent: nothing. */
  policy?: TrustPolicy,
  warn?: (message: string) => void,
): OptionValuesOf<O> {
  const raw = resolveAliases(manifest, given, warn);
  const out: OptionValues = {};
  for (const key of Object.keys(raw)) {
    const retired = manifest.retiredOptions?.[key];
    if (retired !== undefined && !Object.hasOwn(manifest.options, key))
      throw new UserError(`${manifest.name}: option "${key}" is no longer accepted: ${retired}`);
    if (!Object.hasOwn(manifest.options, key)) {
      const known = Object.keys(manifest.options).join(', ') || 'none';
      throw new UserError(`${manifest.name}: unknown option "${key}" (options: ${known})`);
    }
  }
  for (const [key, spec] of Object.entries(manifest.options)) {
    const value = raw[key];
    if (value === undefined || value === null) {
      if (spec.required) throw new UserError(`${manifest.name}: option "${key}" is required`);
      const fallback = defaultValue(spec);
      out[key] = fallback === undefined ? undefined : coerce(manifest.name, key, spec, fallback);
      continue;
    }
    out[key] = coerce(manifest.name, key, spec, value, policy);
  }
  // The loop above gave every spec its typed value or its default: the shape OptionValuesOf<O> names.
  const typed = out as OptionValuesOf<O>;
  const problem = manifest.validate?.(typed);
  if (problem) throw new UserError(`${manifest.name}: ${problem}`);
  return typed;
}

/**
 * The options a plugin sees when nobody gave any (the quick check of `plugins list`): every
 * default applied; required options are absent, and nothing is refused.
 */
export function defaultOptions<O extends OptionSpecs>(
  manifest: Pick<OptionsOf<O>, 'name' | 'options'>,
): OptionValuesOf<O> {
  const out: OptionValues = {};
  for (const [key, spec] of Object.entries(manifest.options)) {
    const fallback = defaultValue(spec);
    out[key] = fallback === undefined ? undefined : coerce(manifest.name, key, spec, fallback);
  }
  return out as OptionValuesOf<O>;
}

function defaultValue(spec: OptionSpec): unknown {
  return 'default' in spec ? spec.default : undefined;
}

function coerce(
  plugin: string,
  key: string,
  spec: OptionSpec,
  value: unknown,
  policy?: TrustPolicy,
): OptionValue {
  const bad = (expected: string): UserError =>
    new UserError(`${plugin}: option "${key}": expected ${expected}, got ${JSON.stringify(value)}`);
  const text = typeof value === 'string' ? value.trim() : undefined;
  switch (spec.type) {
    case 'integer':
    case 'number': {
      const n =
        typeof value === 'number' ? value : text !== undefined && text !== '' ? Number(text) : NaN;
      if (!Number.isFinite(n) || (spec.type === 'integer' && !Number.isInteger(n)))
        throw bad(`an ${spec.type}`);
      if (spec.min !== undefined && n < spec.min) throw bad(`a value >= ${spec.min}`);
      if (spec.max !== undefined && n > spec.max) throw bad(`a value <= ${spec.max}`);
      return n;
    }
    case 'boolean': {
      if (typeof value === 'boolean') return value;
      if (text && /^(true|yes|on|1)$/i.test(text)) return true;
      if (text && /^(false|no|off|0)$/i.test(text)) return false;
      throw bad('true or false');
    }
    case 'duration': {
      const ms =
        typeof value === 'number' ? value : text !== undefined ? parseDuration(text) : undefined;
      if (ms === undefined || !Number.isFinite(ms) || ms < 0)
        throw bad('a duration like 500ms or 2s');
      const min = spec.min !== undefined ? parseDuration(spec.min) : undefined;
      const max = spec.max !== undefined ? parseDuration(spec.max) : undefined;
      if (min !== undefined && ms < min) throw bad(`a duration of at least ${spec.min}`);
      if (max !== undefined && ms > max) throw bad(`a duration of at most ${spec.max}`);
      return ms;
    }
    case 'size': {
      const bytes =
        typeof value === 'number' ? value : text !== undefined ? parseSize(text) : undefined;
      if (bytes === undefined || !Number.isFinite(bytes) || bytes < 0)
        throw bad('a size like 4096, 64k or 16M');
      const min = spec.min !== undefined ? parseSize(spec.min) : undefined;
      const max = spec.max !== undefined ? parseSize(spec.max) : undefined;
      if (min !== undefined && bytes < min) throw bad(`a size of at least ${spec.min}`);
      if (max !== undefined && bytes > max) throw bad(`a size of at most ${spec.max}`);
      return bytes;
    }
    case 'string': {
      if (typeof value !== 'string') throw bad('a string');
      if (spec.choices && !spec.choices.includes(value))
        throw bad(`one of ${spec.choices.join(', ')}`);
      if (spec.pattern && !spec.pattern.test(value)) throw bad(`a string matching ${spec.pattern}`);
      return value;
    }
    case 'list': {
      const items = Array.isArray(value)
        ? value
        : typeof value === 'string'
          ? value
              .split(',')
              .map((s) => s.trim())
              .filter((s) => s !== '')
          : undefined;
      if (!items || !items.every((i): i is string => typeof i === 'string'))
        throw bad('a comma-separated list');
      if (spec.pattern) {
        const wrong = items.find((i) => !spec.pattern!.test(i));
        if (wrong !== undefined)
          throw bad(`items matching ${spec.pattern} (bad item ${JSON.stringify(wrong)})`);
      }
      return items;
    }
    case 'pid': {
      const n = typeof value === 'number' ? value : text && /^\d+$/.test(text) ? Number(text) : NaN;
      if (!Number.isSafeInteger(n) || n <= 0) throw bad('a process id (a positive integer)');
      if (!existsSync(`/proc/${n}`)) throw bad('the pid of a running process');
      return n;
    }
    case 'port': {
      const n = typeof value === 'number' ? value : text && /^\d+$/.test(text) ? Number(text) : NaN;
      if (!Number.isInteger(n) || n < 1 || n > 65535) throw bad('a port number 1-65535');
      return n;
    }
    case 'path': {
      if (typeof value !== 'string' || value === '' || value.includes('\0')) throw bad('a path');
      if (spec.mustExist && !existsSync(value)) throw bad('an existing path');
      return value;
    }
    case 'file': {
      if (typeof value !== 'string' || value === '') throw bad('a path');
      return trustedFile(value, spec.trust, { label: `${plugin}: option "${key}"`, policy });
    }
  }
}

/** Splits `T.key=value` from `--set` into the tracer name, option key and raw value. */
export function parseSetting(text: string): { tracer: string; key: string; value: string } {
  const m = /^([A-Za-z0-9_.@/-]+?)\.([A-Za-z0-9_-]+)=(.*)$/s.exec(text);
  if (!m) throw new UserError(`--set ${JSON.stringify(text)}: expected TRACER.OPTION=VALUE`);
  return { tracer: m[1]!, key: m[2]!, value: m[3]! };
}
