import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadTestdata, parseLines, parseTestdataCase } from '@scalpels/core/testing';
import type { Sample, TraceEvent } from '@scalpels/core';
import plugin from '../src/index.js';
import { pythonKey } from '../src/parser.js';

const testdata = fileURLToPath(new URL('../testdata', import.meta.url));
const cases = loadTestdata(testdata);

const samples = (lines: string[], options = {}): Sample[] =>
  parseLines(plugin, lines, options).records.filter((r): r is Sample => r.kind === 'sample');

describe('systemtap parser on recorded stap output', () => {
  it('has recorded cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(7);
  });

  for (const c of cases) {
    it(`parses ${c.name} as recorded`, () => {
      const out = parseTestdataCase(plugin, c);
      expect(out.records).toEqual(c.expected.records);
      expect(out.diagnostics.length).toBe(c.expected.parseErrors ?? 0);
      expect(out.dropped).toBe(c.expected.dropped ?? 0);
    });
  }

  // Ground truth: the workload counted 35 collections itself (see each case's ground-truth.txt).
  it('sums every counter series of the recordings to the 35 collections the workload made', () => {
    for (const c of cases) {
      const out = parseTestdataCase(plugin, c);
      const sums = new Map<string, number>();
      for (const r of out.records) {
        if (r.kind !== 'sample' || r.series !== 'systemtap.counter') continue;
        const id = JSON.stringify(r.labels);
        sums.set(id, (sums.get(id) ?? 0) + r.value);
      }
      for (const [id, sum] of sums)
        expect({ case: c.name, id, sum }).toEqual({ case: c.name, id, sum: 35 });
      const events = out.records.filter((r) => r.kind === 'event');
      if (events.length > 0) expect(events).toHaveLength(35);
    }
  });

  it('gives events their declared key and duration in ms', () => {
    const c = cases.find((x) => x.name === 'stap-4.8-bpf-events')!;
    const events = parseTestdataCase(plugin, c).records as TraceEvent[];
    const first = c.stdout.split('\n')[1]!.split('\t');
    expect(events[0]).toMatchObject({
      type: 'systemtap.event',
      key: first[0],
      durationMs: Number(first[2]) / 1e6,
      data: { event: 'gc', process: first[0], pid: Number(first[1]) },
    });
  });
});

describe('systemtap output conventions', () => {
  it('reads a number per line as increases of series "value"', () => {
    expect(samples(['3', '4.5'])).toEqual([
      {
        kind: 'sample',
        series: 'systemtap.counter',
        labels: { series: 'value', unit: 'count' },
        value: 3,
      },
      {
        kind: 'sample',
        series: 'systemtap.counter',
        labels: { series: 'value', unit: 'count' },
        value: 4.5,
      },
    ]);
  });

  it('reads key value and key<TAB>value rows, keeping spaces in tab keys', () => {
    const s = samples(['read 10', 'nova api\t7', '  open   2  ']);
    expect(s.map((x) => [x.labels?.key, x.value])).toEqual([
      ['read', 10],
      ['nova api', 7],
      ['open', 2],
    ]);
  });

  it('counts garbage lines as parse errors and keeps going', () => {
    const out = parseLines(plugin, ['1', 'hello', 'a b c', '{"broken', '2', 'x\tnot-a-number']);
    expect(out.records.map((r) => (r as Sample).value)).toEqual([1, 2]);
    expect(out.diagnostics.map((d) => d.line)).toEqual([2, 3, 4, 6]);
  });

  it('maps a declared gauge with its unit, and re-selects declared series by name', () => {
    const s = samples([
      '# scalpels: series rss kind=gauge unit=bytes',
      'nova 100',
      '# scalpels: series reads',
      '5',
      '# scalpels: series rss',
      'nova 120',
    ]);
    expect(s).toEqual([
      {
        kind: 'sample',
        series: 'systemtap.gauge',
        labels: { series: 'rss', unit: 'bytes', key: 'nova' },
        value: 100,
      },
      {
        kind: 'sample',
        series: 'systemtap.counter',
        labels: { series: 'reads', unit: 'count' },
        value: 5,
      },
      {
        kind: 'sample',
        series: 'systemtap.gauge',
        labels: { series: 'rss', unit: 'bytes', key: 'nova' },
        value: 120,
      },
    ]);
  });

  it('turns running totals of a cumulative series into increases, per key, surviving a reset', () => {
    const s = samples(['# scalpels: series t cumulative', 'a 5', 'b 1', 'a 8', 'a 2', 'b 1']);
    expect(s.map((x) => `${x.labels?.key}=${x.value}`)).toEqual([
      'a=5',
      'b=1',
      'a=3',
      'a=2',
      'b=0',
    ]);
  });

  it('feeds the bundled series with their own labels', () => {
    const s = samples([
      '# scalpels: series syscalls kind=counter unit=count columns=open,close,read,write',
      '1 2 3 4',
      '# scalpels: series python_calls kind=counter unit=count',
      '/usr/lib/python3/dist-packages/oslo_messaging/rpc/client.py:call\t4',
    ]);
    expect(s).toEqual([
      { kind: 'sample', series: 'systemtap.syscalls', labels: { syscall: 'open' }, value: 1 },
      { kind: 'sample', series: 'systemtap.syscalls', labels: { syscall: 'close' }, value: 2 },
      { kind: 'sample', series: 'systemtap.syscalls', labels: { syscall: 'read' }, value: 3 },
      { kind: 'sample', series: 'systemtap.syscalls', labels: { syscall: 'write' }, value: 4 },
      {
        kind: 'sample',
        series: 'systemtap.python_calls',
        labels: { function: 'oslo_messaging.rpc.client:call' },
        value: 4,
      },
    ]);
  });

  it('refuses column rows of the wrong width', () => {
    const out = parseLines(plugin, ['# scalpels: series s columns=a,b', '1 2 3', '1 2']);
    expect(out.records).toHaveLength(2);
    expect(out.diagnostics).toHaveLength(1);
  });

  it('normalizes Python file paths to modules', () => {
    expect(pythonKey('/usr/lib/python3/dist-packages/sqlalchemy/engine/base.py:execute')).toBe(
      'sqlalchemy.engine.base:execute',
    );
    expect(
      pythonKey('/opt/venv/lib/python3.11/site-packages/oslo_db/sqlalchemy/models.py:save'),
    ).toBe('oslo_db.sqlalchemy.models:save');
    expect(pythonKey('/usr/lib/python3.11/json/__init__.py:dumps')).toBe('json:dumps');
    // A script outside sys.path: its stem, as python-calls names it (one key for one function).
    expect(pythonKey('/srv/app/x.py:f', [])).toBe('x:f');
  });

  it('checks event lines against their declared fields', () => {
    const out = parseLines(plugin, [
      '# scalpels: event q fields=sql,us,rows key=sql duration=us:us value=rows',
      'select 1\t1500\t3',
      'select 2\t9',
      'select 3\tslow\t1',
    ]);
    expect(out.records).toEqual([
      {
        kind: 'event',
        type: 'systemtap.event',
        key: 'select 1',
        durationMs: 1.5,
        value: 3,
        data: { event: 'q', sql: 'select 1', us: 1500, rows: 3 },
      },
    ]);
    expect(out.diagnostics).toHaveLength(2);
  });

  it('refuses malformed headers but keeps parsing', () => {
    const out = parseLines(plugin, [
      '# scalpels: series x kind=rate',
      '# scalpels: event e',
      '# scalpels: event e fields=a key=b',
      '# scalpels: frobnicate',
      '# an ordinary comment',
      '7',
    ]);
    expect(out.diagnostics).toHaveLength(4);
    expect(out.records).toHaveLength(1);
  });

  it('reports dropped counts from headers and JSON', () => {
    const out = parseLines(plugin, [
      '# scalpels: dropped 12',
      '{"dropped":3}',
      '# scalpels: dropped 0',
    ]);
    expect(out.dropped).toBe(15);
    expect(out.diagnostics).toHaveLength(0);
  });

  // The format of stap's @hist_log / @hist_linear printing, as its documentation shows it; the bpf
  // runtime that runs here cannot print histograms, so these rows are not recorded output.
  it('reads @hist_log tables into histogram buckets with le bounds, across ~ gaps', () => {
    const s = samples([
      '# scalpels: series latency kind=histogram unit=us',
      'value |-------------------------------------------------- count',
      '    0 |                                                    0',
      '    1 |@@@@                                                4',
      '    2 |@@                                                  2',
      '    4 |                                                    0',
      '      ~',
      '   64 |@                                                   1',
      '  128 |                                                    0',
      '',
      '5',
    ]);
    const hist = s.filter((x) => x.series === 'systemtap.histogram');
    expect(hist.map((x) => `${x.labels?.le}:${x.value}`)).toEqual([
      '0:0',
      '1:4',
      '3:2',
      '7:0',
      '127:1',
      '255:0',
    ]);
    expect(hist[0]!.labels).toMatchObject({ series: 'latency', unit: 'us' });
    // The line after the table belongs to the series selected before, which is a histogram.
    expect(
      parseLines(plugin, ['# scalpels: series h kind=histogram', '5']).diagnostics,
    ).toHaveLength(1);
  });

  it('reads @hist_linear tables with under/overflow rows, at end of output too', () => {
    const s = samples([
      'value |-------------------------------------------------- count',
      '  <0 |                                                    1',
      '   0 |@@@@@                                               5',
      '  10 |@@                                                  2',
      '  20 |                                                    0',
      ' >20 |@                                                   1',
    ]);
    expect(s.map((x) => `${x.labels?.le}:${x.value}`)).toEqual([
      '-1:1',
      '9:5',
      '19:2',
      '29:0',
      '+Inf:1',
    ]);
    expect(s[0]!.labels?.series).toBe('histogram');
  });

  it('keeps histogram rows when the next line is garbage', () => {
    const out = parseLines(plugin, [
      'value |---------- count',
      '    1 |@@ 2',
      '    2 |@ 1',
      'garbage here',
      '3',
    ]);
    expect(out.diagnostics).toHaveLength(1);
    expect(out.records.map((r) => (r as Sample).value)).toEqual([2, 1, 3]);
  });

  it('emits only records of the schema', () => {
    const c = cases.flatMap((x) => parseTestdataCase(plugin, x).records);
    for (const r of c) {
      if (r.kind === 'sample') expect(plugin.schema.series[r.series]).toBeDefined();
      else expect(plugin.schema.events?.[r.type]).toBeDefined();
    }
  });
});
