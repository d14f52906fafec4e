import { describe, expect, it } from 'vitest';
import type { OptionSpecs } from './api.js';
import { parseSetting, validateOptions } from './options.js';
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
