import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTestdata, parseLines, parseTestdataCase } from '@scalpels/core/testing';
import plugin from '../src/index.js';
import { pythonModuleOfFile as moduleOfFile } from '@scalpels/core';
import { globToRegExp } from '../src/parser.js';
import { pluginDir, sums } from './helpers.js';

const cases = loadTestdata(join(pluginDir, 'testdata'));

describe('parser on recorded output', () => {
  it('has recorded cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(4);
  });

  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const out = parseTestdataCase(plugin, c);
    expect(out.records).toEqual(c.expected.records);
    expect(out.diagnostics.length).toBe(c.expected.parseErrors ?? 0);
    expect(out.dropped).toBe(c.expected.dropped ?? 0);
  });

  // Independent ground truth: what the traced scripts printed about themselves (see each README).
  const truth: Record<string, Record<string, number>> = {
    'profiler-cpython3.11.7-run-calls': { '__main__:f': 10000, '__main__:g': 7000 },
    'profiler-cpython3.11.2-run-timing': {
      '__main__:slow': 5,
      '__main__:fails': 7,
      '__main__:f': 100,
    },
    'profiler-cpython3.12.1-run-top': { '__main__:a': 50, '__main__:b': 40, '(other)': 62 },
    'bpftrace-0.17.0-usdt-hooked': { 'hooked:f': 3000, 'hooked:g': 2000 },
    'bpftrace-0.17.0-usdt-hooked-default': { 'hooked:f': 3000, 'hooked:g': 2000 },
    'profiler-cpython3.11.2-instrument-timing': {
      '__main__:slow': 5,
      '__main__:fails': 7,
      '__main__:f': 100,
    },
  };
  it.each(Object.entries(truth))('%s sums to the traced program’s own counts', (name, expected) => {
    const c = cases.find((x) => x.name === name);
    expect(c, name).toBeDefined();
    const out = parseTestdataCase(plugin, c!);
    expect(sums(out.records, 'python.calls')).toEqual(expected);
  });

  it('timing case: exceptions and the duration histogram', () => {
    const out = parseTestdataCase(
      plugin,
      cases.find((x) => x.name === 'profiler-cpython3.11.2-run-timing')!,
    );
    expect(sums(out.records, 'python.exceptions')).toEqual({ '__main__:fails': 7 });
    expect(sums(out.records, 'python.call.time')['__main__:slow']).toBeGreaterThanOrEqual(100);
    const slowBuckets = out.records.filter(
      (r) =>
        r.kind === 'sample' &&
        r.series === 'python.call.duration' &&
        r.labels?.function === '__main__:slow',
    );
    expect(slowBuckets.map((r) => r.kind === 'sample' && r.labels?.le)).toEqual([
      '100',
      '1000',
      '10000',
      '+Inf',
    ]);
  });
});

describe('parser on bad input', () => {
  it('counts malformed lines as diagnostics and keeps going', () => {
    const out = parseLines(plugin, [
      'not json',
      '[1,2]',
      '{"t":"calls","pid":"x","function":"m:f","calls":1}',
      '{"t":"calls","pid":1,"function":"m:f","calls":-1}',
      '{"t":"calls","pid":1,"function":"m:f","calls":2,"hist":{"99":1}}',
      '{"t":"attach","pid":1}',
      '{"t":"whatever"}',
      '{"t":"dropped","count":"many"}',
      '',
      '{"t":"ready","attached":1}',
      '{"t":"calls","pid":7,"thread":"T","function":"m:f","file":"/x/m.py","line":3,"calls":4,"ts":5}',
      '{"t":"dropped","count":3}',
    ]);
    expect(out.diagnostics.map((d) => d.line)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(out.records).toEqual([
      {
        kind: 'sample',
        series: 'python.calls',
        labels: { function: 'm:f', file: '/x/m.py', line: '3', pid: '7', thread: 'T' },
        value: 4,
        ts: 5,
      },
    ]);
    expect(out.dropped).toBe(3);
  });

  it('usdt: bpftrace lost events are drops, other output is a diagnostic', () => {
    const out = parseLines(
      plugin,
      [
        '{"type": "lost_events", "data": {"events": 12}}',
        '{"type": "map", "data": {"@calls": {"1,2,/usr/lib/python3/dist-packages/oslo_messaging/rpc/client.py,call,10": 2, "1,2,/x.py,cast,1": 1}}}',
        '{"type": "map", "data": {"@calls": {"bad": 1}}}',
        'Attaching 3 probes...',
      ],
      { preset: 'rpc-client', thread: true },
      'usdt',
    );
    expect(out.dropped).toBe(12);
    expect(out.diagnostics.map((d) => d.line)).toEqual([3, 4]);
    expect(out.records).toEqual([
      {
        kind: 'sample',
        series: 'python.calls',
        labels: {
          function: 'oslo_messaging.rpc.client:call',
          file: '/usr/lib/python3/dist-packages/oslo_messaging/rpc/client.py',
          line: '10',
          pid: '1',
          thread: '2',
        },
        value: 2,
      },
    ]);
  });

  it('globs and module names', () => {
    expect(
      globToRegExp('*/oslo_db/sqlalchemy/models.py').test(
        '/usr/lib/python3/dist-packages/oslo_db/sqlalchemy/models.py',
      ),
    ).toBe(true);
    expect(
      globToRegExp('*/oslo_db/sqlalchemy/models.py').test('/x/oslo_db/sqlalchemy/models.pyc'),
    ).toBe(false);
    expect(globToRegExp('a?c[1].py').test('abc[1].py')).toBe(true);
    const sysPath = ['/usr/lib/python3.11', '/opt/venv/lib/python3.11/site-packages'];
    expect(moduleOfFile('/usr/lib/python3.11/json/decoder.py', sysPath)).toBe('json.decoder');
    expect(moduleOfFile('/opt/venv/lib/python3.11/site-packages/nova/__init__.py', sysPath)).toBe(
      'nova',
    );
    expect(moduleOfFile('/tmp/script.py', sysPath)).toBe('script');
    // A script in a checkout under a folder with dots (issue 18): the script's own stem.
    expect(
      moduleOfFile('/tmp/ci.x1.y2/scalpels-clone.d/plugins/python-calls/test/fixtures/hooked.py'),
    ).toBe('hooked');
    // A path cut at the USDT string length: the module is unknown, not a guess from the path.
    expect(
      moduleOfFile('/tmp/a-very-long-checkout-folder/plugins/python-calls/test/fixtures/hoo'),
    ).toBe('?');
    expect(moduleOfFile('<frozen importlib._bootstrap>')).toBe('importlib._bootstrap');
  });
});
