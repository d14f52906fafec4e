import { existsSync } from 'node:fs';
import type { OptionSpec, OptionValue, OptionValues, PluginManifest } from './api.js';
import { UserError } from './errors.js';
import { parseDuration, parseSize } from './units.js';

/**
 * Turns raw option values (strings from `--set`, or typed JSON from an RPC request) into typed
 * values, applying defaults. Any problem is a UserError naming the plugin and the option.
 */
export function validateOptions(
  manifest: Pick<PluginManifest, 'name' | 'options' | 'validate'>,
  raw: Readonly<Record<string, unknown>>,
): OptionValues {
  const out: OptionValues = {};
  for (const key of Object.keys(raw)) {
    if (!Object.hasOwn(manifest.options, key)) {
      const known = Object.keys(manifest.options).join(', ') || 'none';
      throw new UserError(`${manifest.name}: unknown option "${key}" (options: ${known})`);
    }
  }
  for (const [key, spec] of Object.entries(manifest.options)) {
    const given = raw[key];
    if (given === undefined || given === null) {
      if (spec.required) throw new UserError(`${manifest.name}: option "${key}" is required`);
      const fallback = defaultValue(spec);
      out[key] = fallback === undefined ? undefined : coerce(manifest.name, key, spec, fallback);
      continue;
    }
    out[key] = coerce(manifest.name, key, spec, given);
  }
  const problem = manifest.validate?.(out);
  if (problem) throw new UserError(`${manifest.name}: ${problem}`);
  return out;
}

function defaultValue(spec: OptionSpec): unknown {
  return 'default' in spec ? spec.default : undefined;
}

function coerce(plugin: string, key: string, spec: OptionSpec, value: unknown): OptionValue {
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
  }
}

/** Splits `T.key=value` from `--set` into the tracer name, option key and raw value. */
export function parseSetting(text: string): { tracer: string; key: string; value: string } {
  const m = /^([A-Za-z0-9_.@/-]+?)\.([A-Za-z0-9_-]+)=(.*)$/s.exec(text);
  if (!m) throw new UserError(`--set ${JSON.stringify(text)}: expected TRACER.OPTION=VALUE`);
  return { tracer: m[1]!, key: m[2]!, value: m[3]! };
}
