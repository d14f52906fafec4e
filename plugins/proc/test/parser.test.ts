import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadTestdata, parseLines, parseTestdataCase } from '@scalpels/core/testing';
import plugin from '../src/index.js';
import { escapeLabel, formatSample } from '../src/format.js';

const cases = loadTestdata(fileURLToPath(new URL('../testdata', import.meta.url)));

describe('proc parser on recorded sampler output', () => {
  it('has recorded cases', () => {
    expect(cases.map((c) => c.name).sort()).toEqual([
      'sampler-0.1.0-system-idle',
      'sampler-0.1.0-tree-children',
    ]);
  });

  for (const c of cases) {
    it(c.name, () => {
      const out = parseTestdataCase(plugin, c);
      expect(out.records).toEqual(c.expected.records);
      expect(out.diagnostics).toHaveLength(c.expected.parseErrors ?? 0);
      expect(out.dropped).toBe(c.expected.dropped ?? 0);
      for (const r of out.records) {
        expect(r.kind).toBe('sample');
        if (r.kind === 'sample') expect(plugin.schema.series[r.series], r.series).toBeDefined();
      }
    });
  }
});

describe('proc parser on bad input', () => {
  it('counts malformed lines as diagnostics and keeps going', () => {
    const out = parseLines(plugin, [
      '# a comment',
      'garbage',
      '12x\tkernel.load\t1',
      '1\tKernel Load\t1',
      '1\tkernel.load\tNaN',
      '1\tkernel.load\t',
      '1\tkernel.load\t1\tminutes',
      '1\tkernel.load\t1\tminutes=bad\\escape',
      '1\tkernel.load\t1\tminutes=\\',
      '1700000000000\tkernel.load\t0.5\tminutes=1',
    ]);
    expect(out.diagnostics.map((d) => d.line)).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
    expect(out.records).toEqual([
      {
        kind: 'sample',
        series: 'kernel.load',
        value: 0.5,
        ts: 1700000000000,
        labels: { minutes: '1' },
      },
    ]);
  });

  it('round-trips label values with tabs, newlines, backslashes and equals signs', () => {
    const comm = 'a\tb\nc\\d=e) (f';
    expect(escapeLabel(comm)).not.toMatch(/[\t\n]/);
    const out = parseLines(plugin, [formatSample(5, 'proc.count', 2, { pid: '42', comm })]);
    expect(out.diagnostics).toEqual([]);
    expect(out.records).toEqual([
      { kind: 'sample', series: 'proc.count', value: 2, ts: 5, labels: { pid: '42', comm } },
    ]);
  });
});
