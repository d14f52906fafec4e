import { loadTestdata, parseLines, parseTestdataCase } from '@scalpels/core/testing';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import plugin from '../src/index.js';
import { OTHER_COMM } from '../src/parser.js';
import { pluginDir, total } from './helpers.js';

const cases = loadTestdata(join(pluginDir, 'testdata'));

describe('recorded output', () => {
  it('has a case per technique', () => {
    const tools = new Set(cases.map((c) => c.name.split('-')[0]));
    expect([...tools].sort()).toEqual(['bpftrace', 'perf', 'strace']);
  });

  for (const c of cases)
    it(`parses ${c.name} as expected`, () => {
      const out = parseTestdataCase(plugin, c);
      expect(out.records).toEqual(c.expected.records);
      expect(out.diagnostics.length).toBe(c.expected.parseErrors ?? 0);
      expect(out.dropped).toBe(c.expected.dropped ?? 0);
    });

  it('bpftrace pid-fork: increases add up to the workload calls', () => {
    const c = cases.find((x) => x.name === 'bpftrace-0.17.0-pid-fork')!;
    const { records } = parseTestdataCase(plugin, c);
    const getppid = records.filter((r) => r.kind === 'sample' && r.labels?.syscall === 'getppid');
    expect(getppid.length).toBeGreaterThan(2); // several snapshots, not one
    const pids = [...new Set(getppid.map((r) => (r.kind === 'sample' ? r.labels!.pid! : '')))];
    const sums = pids
      .map((pid) => total(records, 'syscalls.calls', { pid, syscall: 'getppid' }))
      .sort((a, b) => a - b);
    expect(sums).toEqual([1234, 1_000_000]);
    expect(total(records, 'syscalls.errors', { syscall: 'openat', errno: 'ENOENT' })).toBe(3);
    expect(total(records, 'syscalls.calls', { syscall: 'clone' })).toBe(1);
  });

  it('system-wide top 3: at most 3 names plus (other) per snapshot, totals kept', () => {
    const c = cases.find((x) => x.name === 'bpftrace-0.17.0-systemwide-top')!;
    const lines = c.stdout.split('\n').filter((l) => l.includes('"@calls"'));
    for (const line of lines) {
      const { records } = parseLines(
        plugin,
        [c.stdout.split('\n')[1]!, line],
        c.options,
        'bpftrace',
      );
      const names = new Set(records.map((r) => (r.kind === 'sample' ? r.labels!.comm : '')));
      names.delete(OTHER_COMM);
      expect(names.size).toBeLessThanOrEqual(3);
    }
    const all = parseTestdataCase(plugin, c).records;
    expect(total(all, 'syscalls.calls', { comm: 'getppid-loop', syscall: 'getppid' })).toBe(
      301_234,
    );
  });
});

const ready = JSON.stringify({
  type: 'printf',
  data: 'scalpels-syscalls ready arch=x64 grouping=process latency=0\n',
});

describe('bpftrace parser', () => {
  it('reports lost events as dropped', () => {
    const out = parseLines(plugin, [ready, '{"type": "lost_events", "data": {"events": 17}}']);
    expect(out.dropped).toBe(17);
  });

  it('turns garbage into counted diagnostics and keeps going', () => {
    const out = parseLines(plugin, [
      ready,
      'not json',
      '{"type": "map", "data": {"@calls": {"abc": 3}}}',
      '{"type": "map", "data": {"@calls": {"12,39": "x"}}}',
      '{"type": "map", "data": {"@calls": {"12,39": 5}}}',
    ]);
    expect(out.diagnostics.map((d) => d.line)).toEqual([2, 3, 4]);
    expect(out.records).toEqual([
      {
        kind: 'sample',
        series: 'syscalls.calls',
        labels: { pid: '12', comm: '?', syscall: 'getpid' },
        value: 5,
      },
    ]);
  });

  it('needs the ready line before maps', () => {
    const out = parseLines(plugin, ['{"type": "map", "data": {"@calls": {"12,39": 5}}}']);
    expect(out.diagnostics).toHaveLength(1);
  });

  it('emits only increases of cumulative snapshots, names unknown numbers and errnos', () => {
    const out = parseLines(plugin, [
      ready,
      '{"type": "map", "data": {"@comm": {"7": "a,b \\"c\\""}}}',
      '{"type": "map", "data": {"@calls": {"7,110": 10, "7,999": 1}}}',
      '{"type": "map", "data": {"@calls": {"7,110": 25, "7,999": 1}}}',
      '{"type": "map", "data": {"@errors": {"7,2,2": 4, "7,0,4095": 1}}}',
    ]);
    expect(out.diagnostics).toEqual([]);
    expect(out.records).toEqual([
      {
        kind: 'sample',
        series: 'syscalls.calls',
        labels: { pid: '7', comm: 'a,b "c"', syscall: 'getppid' },
        value: 10,
      },
      {
        kind: 'sample',
        series: 'syscalls.calls',
        labels: { pid: '7', comm: 'a,b "c"', syscall: 'syscall_999' },
        value: 1,
      },
      {
        kind: 'sample',
        series: 'syscalls.calls',
        labels: { pid: '7', comm: 'a,b "c"', syscall: 'getppid' },
        value: 15,
      },
      {
        kind: 'sample',
        series: 'syscalls.errors',
        labels: { pid: '7', comm: 'a,b "c"', syscall: 'open', errno: 'ENOENT' },
        value: 4,
      },
      {
        kind: 'sample',
        series: 'syscalls.errors',
        labels: { pid: '7', comm: 'a,b "c"', syscall: 'read', errno: 'E4095' },
        value: 1,
      },
    ]);
  });

  it('splits comm keys from the right (names may hold commas)', () => {
    const hdr = JSON.stringify({
      type: 'printf',
      data: 'scalpels-syscalls ready arch=x64 grouping=comm latency=0\n',
    });
    const out = parseLines(plugin, [
      hdr,
      '{"type": "map", "data": {"@errors": {"x,y,257,13": 2}}}',
    ]);
    expect(out.records).toEqual([
      {
        kind: 'sample',
        series: 'syscalls.errors',
        labels: { comm: 'x,y', syscall: 'openat', errno: 'EACCES' },
        value: 2,
      },
    ]);
  });
});

describe('strace and perf summary parsers', () => {
  it('rejects rows that do not fit the strace table', () => {
    const out = parseLines(
      plugin,
      ['% time     seconds  usecs/call     calls    errors syscall', ' 12.00    zz  1  2  read'],
      {},
      'strace',
    );
    expect(out.diagnostics).toHaveLength(1);
  });

  it('counts perf LOST records as dropped', () => {
    const out = parseLines(plugin, ['LOST 42 events!'], {}, 'perf');
    expect(out.dropped).toBe(42);
    expect(out.diagnostics).toEqual([]);
  });

  it('rejects perf rows outside a thread block', () => {
    const out = parseLines(
      plugin,
      ['   read  1  0  0.017  0.017  0.017  0.017  0.00%'],
      {},
      'perf',
    );
    expect(out.diagnostics).toHaveLength(1);
  });
});
