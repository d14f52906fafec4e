import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  definePlugin,
  type OptionSpecs,
  type OptionValues,
  type OptionValuesOf,
  type PluginManifest,
} from './api.js';
import { defaultOptions, parseSetting, validateOptions } from './options.js';
import { parseDuration, parseSize } from './units.js';

const options: OptionSpecs = {
  interval: { type: 'duration', default: '1s', min: '100ms', description: 'sampling interval' },
  top: { type: 'integer', default: 10, min: 1, description: 'top N' },
  latency: { type: 'boolean', default: false, description: 'latency histogram' },
  port: { type: 'port', default: 5672, description: 'broker port' },
  pid: { type: 'pid', description: 'a process' },
  functions: { type: 'list', description: 'names', pattern: /^[A-Za-z_][\w.]*$/ },
  mode: { type: 'string', choices: ['a', 'b'], default: 'a', description: 'mode' },
  buffer: { type: 'size', default: '64k', description: 'buffer' },
  path: { type: 'path', mustExist: true, description: 'a file' },
};
const manifest = { name: 'demo', options };

describe('validateOptions', () => {
  it('applies defaults and converts units', () => {
    const v = validateOptions(manifest, {});
    expect(v).toMatchObject({
      interval: 1000,
      top: 10,
      latency: false,
      port: 5672,
      mode: 'a',
      buffer: 65536,
    });
  });

  it('types raw strings from --set', () => {
    const v = validateOptions(manifest, {
      interval: '250ms',
      top: '5',
      latency: 'true',
      port: '15672',
      pid: String(process.pid),
      functions: 'f, g,h',
      buffer: '2M',
      path: '/proc/self',
    });
    expect(v).toMatchObject({
      interval: 250,
      top: 5,
      latency: true,
      port: 15672,
      pid: process.pid,
      functions: ['f', 'g', 'h'],
      buffer: 2 << 20,
    });
  });

  it.each([
    [
      { interval: 'banana' },
      'demo: option "interval": expected a duration like 500ms or 2s, got "banana"',
    ],
    [{ interval: '10ms' }, 'demo: option "interval": expected a duration of at least 100ms'],
    [{ top: '1.5' }, 'demo: option "top": expected an integer'],
    [{ port: '70000' }, 'demo: option "port": expected a port number 1-65535'],
    [{ pid: '-3' }, 'demo: option "pid": expected a process id'],
    [{ pid: '999999999' }, 'demo: option "pid": expected the pid of a running process'],
    [{ functions: 'ok,rm -rf /' }, 'demo: option "functions": expected items matching'],
    [{ mode: 'c' }, 'demo: option "mode": expected one of a, b'],
    [{ path: '/nonexistent/x' }, 'demo: option "path": expected an existing path'],
    [{ nosuch: '1' }, 'demo: unknown option "nosuch"'],
  ])('refuses %j with a message naming plugin and option', (raw, message) => {
    expect(() => validateOptions(manifest, raw)).toThrow(message);
  });

  it('refuses an option of the wrong JSON type (from an RPC request)', () => {
    expect(() => validateOptions(manifest, { latency: 'maybe' })).toThrow('demo: option "latency"');
    expect(() => validateOptions(manifest, { top: true })).toThrow('demo: option "top"');
  });
});

describe('parseSetting and units', () => {
  it('splits TRACER.KEY=VALUE', () => {
    expect(parseSetting('proc.interval=2s')).toEqual({
      tracer: 'proc',
      key: 'interval',
      value: '2s',
    });
    expect(parseSetting('python-calls.function=a.b=c')).toEqual({
      tracer: 'python-calls',
      key: 'function',
      value: 'a.b=c',
    });
    expect(() => parseSetting('nodot=1')).toThrow('expected TRACER.OPTION=VALUE');
  });
  it('parses durations and sizes', () => {
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('2')).toBe(2000);
    expect(parseDuration('1m')).toBe(60000);
    expect(parseDuration('x')).toBeUndefined();
    expect(parseSize('1GiB')).toBe(2 ** 30);
    expect(parseSize('512')).toBe(512);
  });
});

describe('option aliases (a renamed option, accepted by its former name for a release)', () => {
  const renamed = {
    name: 'demo',
    options: {
      'max-keys': {
        type: 'integer',
        default: 16384,
        aliases: ['maxKeys', 'mapKeys'],
        description: 'map capacity',
      },
      top: { type: 'integer', default: 20, description: 'top N' },
    },
  } satisfies { name: string; options: OptionSpecs };

  it('maps the old name to the new one, with one warning naming both', () => {
    const warnings: string[] = [];
    const v = validateOptions(renamed, { maxKeys: '2048' }, undefined, (m) => warnings.push(m));
    expect(v['max-keys']).toBe(2048);
    expect(v).not.toHaveProperty('maxKeys');
    expect(warnings).toEqual(['demo: option "maxKeys" is deprecated: use "max-keys"']);
  });

  it('says nothing when the new name is used', () => {
    const warnings: string[] = [];
    const v = validateOptions(renamed, { 'max-keys': 4096 }, undefined, (m) => warnings.push(m));
    expect(v['max-keys']).toBe(4096);
    expect(warnings).toEqual([]);
  });

  it('refuses the old and the new name together, and two old names of one option', () => {
    const quiet = (): void => {};
    expect(() =>
      validateOptions(renamed, { maxKeys: '2048', 'max-keys': '4096' }, undefined, quiet),
    ).toThrow(/demo: options "maxKeys" and "max-keys" are the same option/);
    expect(() =>
      validateOptions(renamed, { maxKeys: '2048', mapKeys: '4096' }, undefined, quiet),
    ).toThrow(/the same option/);
  });

  it('checks a value given by the old name like one given by the new name', () => {
    expect(() => validateOptions(renamed, { maxKeys: 'many' }, undefined, () => {})).toThrow(
      'demo: option "max-keys": expected an integer, got "many"',
    );
  });

  it('still refuses names that are neither', () => {
    expect(() => validateOptions(renamed, { max_keys: 1 })).toThrow(/unknown option "max_keys"/);
  });
});

describe('defaultOptions (the quick check of `plugins list`, no user options)', () => {
  it('applies every default and leaves required options absent', () => {
    const v = defaultOptions({
      name: 'demo',
      options: {
        interval: { type: 'duration', default: '2s', description: 'i' },
        host: { type: 'string', required: true, description: 'h' },
      },
    });
    expect(v).toEqual({ interval: 2000, host: undefined });
  });
});

describe('typed options (plugin API 1.2)', () => {
  const plugin = definePlugin({
    name: 'typed',
    version: '1.0.0',
    description: 'type inference',
    apiVersion: '>=1.2.0 <2',
    target: 'none',
    options: {
      top: { type: 'integer', default: 20, description: 'top N' },
      interval: { type: 'duration', default: '1s', description: 'interval' },
      names: { type: 'list', description: 'names' },
      tags: { type: 'list', default: [], description: 'tags' },
      mode: { type: 'string', choices: ['a', 'b'], default: 'a', description: 'mode' },
      host: { type: 'string', description: 'host' },
      user: { type: 'string', required: true, description: 'user' },
      tls: { type: 'boolean', default: false, description: 'tls' },
      pid: { type: 'pid', description: 'pid' },
    },
    check: async () => ({ status: 'ok', detail: 'ok' }),
    worker(options) {
      // Typed without a cast: a defaulted integer is a number, an optional list may be absent.
      expectTypeOf(options.top).toEqualTypeOf<number>();
      expectTypeOf(options.names).toEqualTypeOf<readonly string[] | undefined>();
      return { argv: ['true', String(options.top), ...(options.names ?? [])] };
    },
    parser: () => ({ line: () => null }),
    schema: { series: {} },
  });

  it('infers each value type from its spec', () => {
    type O = OptionValuesOf<typeof plugin.options>;
    expectTypeOf<O['top']>().toEqualTypeOf<number>();
    expectTypeOf<O['interval']>().toEqualTypeOf<number>();
    expectTypeOf<O['names']>().toEqualTypeOf<readonly string[] | undefined>();
    expectTypeOf<O['tags']>().toEqualTypeOf<readonly string[]>();
    expectTypeOf<O['mode']>().toEqualTypeOf<'a' | 'b'>();
    expectTypeOf<O['host']>().toEqualTypeOf<string | undefined>();
    expectTypeOf<O['user']>().toEqualTypeOf<string>();
    expectTypeOf<O['tls']>().toEqualTypeOf<boolean>();
    expectTypeOf<O['pid']>().toEqualTypeOf<number | undefined>();
    expectTypeOf(validateOptions(plugin, { user: 'u' })).toEqualTypeOf<O>();
  });

  it('stays a PluginManifest the core handles generically', () => {
    expectTypeOf(plugin).toMatchTypeOf<PluginManifest>();
    expectTypeOf<Parameters<PluginManifest['worker']>[0]>().toMatchTypeOf<OptionValues>();
    const v = validateOptions(plugin, { user: 'u', names: 'x,y' });
    expect(v).toMatchObject({ top: 20, interval: 1000, names: ['x', 'y'], tags: [], mode: 'a' });
  });

  it('accepts an untyped manifest written against plugin API 1.1', () => {
    const options: OptionSpecs = { n: { type: 'integer', default: 1, description: 'n' } };
    const old: PluginManifest = {
      name: 'old',
      version: '1.0.0',
      description: 'untyped',
      apiVersion: '>=1.1.0 <2',
      target: 'none',
      options,
      check: async () => ({ status: 'ok', detail: 'ok' }),
      worker: (o) => ({ argv: ['true', String(o.n as number)] }),
      parser: () => ({ line: () => null }),
      schema: { series: {} },
    };
    expectTypeOf(definePlugin(old)).toMatchTypeOf<PluginManifest>();
    expect(validateOptions(old, {})).toEqual({ n: 1 });
    // Tests written against 1.1 call a defined plugin with untyped options; they still compile.
    const untypedCaller = (): unknown =>
      plugin.check({
        options: {},
        depth: 'quick',
        isRoot: false,
        exec: async () => ({ exitCode: 0, stdout: '', stderr: '' }),
        which: async () => undefined,
      });
    expectTypeOf(untypedCaller).toBeFunction();
  });
});
