import { describe, expect, it } from 'vitest';
import { loadTestdata, parseLines, parseTestdataCase } from '@scalpels/core/testing';
import manifest from '../src/index.js';
import { parseBound } from '../src/parser.js';
import { EXPECTED_MIXED } from './workloads.mjs';
import { events, testdataDir, total } from './helpers.js';

const cases = loadTestdata(testdataDir);

describe('fs-io parser on recorded output', () => {
  it('has recorded cases for each technique', () => {
    expect(cases.map((c) => c.technique).sort()).toEqual([
      'bpftrace',
      'bpftrace',
      'bpftrace',
      'proc-io',
    ]);
  });

  for (const c of cases) {
    it(`${c.name}: produces the expected records`, () => {
      const out = parseTestdataCase(manifest, c);
      expect(out.records).toEqual(c.expected.records);
      expect(out.diagnostics.length).toBe(c.expected.parseErrors ?? 0);
      expect(out.dropped).toBe(c.expected.dropped ?? 0);
    });
  }

  // Ground truth of the recorded workloads (independent of the parser: what the programs did).
  it('dd-fsync: 64 writes, 67108864 bytes and one fsync on the output file, by dd', () => {
    const c = cases.find((x) => x.name.endsWith('-dd-fsync'))!;
    const { records } = parseTestdataCase(manifest, c);
    const file = events(records).find((e) => e.key.endsWith('/x'))!.key;
    expect(total(records, 'fs.write.bytes', { path: file, comm: 'dd' })).toBe(67_108_864);
    expect(total(records, 'fs.write.ops', { path: file, comm: 'dd' })).toBe(64);
    expect(total(records, 'fs.read.bytes', { path: '/dev/zero', comm: 'dd' })).toBe(67_108_864);
    expect(total(records, 'fs.fsync.ops', { path: file, call: 'fsync' })).toBe(1);
    expect(total(records, 'fs.open.ops', { path: file })).toBe(1);
    expect(total(records, 'vfs.fsyncs')).toBeGreaterThanOrEqual(1);
  });

  it('python-mixed (no latency): the same exact figures', () => {
    const c = cases.find((x) => x.name.endsWith('-python-mixed'))!;
    const { records } = parseTestdataCase(manifest, c);
    const file = events(records).find((e) => e.key.endsWith('/mixed.dat'))!.key;
    const byWrites = [
      ...new Set(
        events(records)
          .filter((e) => e.key === file)
          .map((e) => String(e.data!.pid)),
      ),
    ].sort(
      (a, b) =>
        total(records, 'fs.write.ops', { pid: b }) - total(records, 'fs.write.ops', { pid: a }),
    );
    const p = { pid: byWrites[0]!, path: file };
    expect(total(records, 'fs.write.ops', p)).toBe(EXPECTED_MIXED.parent.writeOps);
    expect(total(records, 'fs.write.bytes', p)).toBe(EXPECTED_MIXED.parent.writeBytes);
    expect(total(records, 'fs.read.bytes', p)).toBe(EXPECTED_MIXED.parent.readBytes);
    expect(total(records, 'fs.write.bytes', { pid: byWrites[1]!, path: file })).toBe(
      EXPECTED_MIXED.child.writeBytes,
    );
    expect(total(records, 'fs.read.latency', p)).toBe(0);
  });

  it('python-mixed-latency: exact per-process figures, errno names, histograms adding up', () => {
    const c = cases.find((x) => x.name.endsWith('-python-mixed-latency'))!;
    const { records } = parseTestdataCase(manifest, c);
    const file = events(records).find((e) => e.key.endsWith('/mixed.dat'))!.key;
    const pids = [
      ...new Set(
        events(records)
          .filter((e) => e.key === file)
          .map((e) => String(e.data!.pid)),
      ),
    ];
    expect(pids).toHaveLength(2);
    const [parent, child] = pids.sort(
      (a, b) =>
        total(records, 'fs.write.ops', { pid: b }) - total(records, 'fs.write.ops', { pid: a }),
    );
    const p = { pid: parent!, path: file };
    expect(total(records, 'fs.write.ops', p)).toBe(EXPECTED_MIXED.parent.writeOps);
    expect(total(records, 'fs.write.bytes', p)).toBe(EXPECTED_MIXED.parent.writeBytes);
    expect(total(records, 'fs.read.ops', p)).toBe(EXPECTED_MIXED.parent.readOps);
    expect(total(records, 'fs.read.bytes', p)).toBe(EXPECTED_MIXED.parent.readBytes);
    expect(total(records, 'fs.open.ops', p)).toBe(EXPECTED_MIXED.parent.opens);
    expect(total(records, 'fs.fsync.ops', { ...p, call: 'fsync' })).toBe(1);
    expect(total(records, 'fs.fsync.ops', { ...p, call: 'fdatasync' })).toBe(1);
    expect(total(records, 'fs.read.latency', p)).toBe(EXPECTED_MIXED.parent.readOps);
    expect(total(records, 'fs.write.latency', p)).toBe(EXPECTED_MIXED.parent.writeOps);
    expect(total(records, 'fs.write.time', p)).toBeGreaterThan(0);
    expect(total(records, 'fs.write.bytes', { pid: child!, path: file })).toBe(
      EXPECTED_MIXED.child.writeBytes,
    );
    expect(total(records, 'fs.open.errors', { path: `${file}.missing`, errno: 'ENOENT' })).toBe(
      EXPECTED_MIXED.missingOpens,
    );
  });

  it('python-mixed-proc-io: the workload process wrote its bytes plus those of its reaped child', () => {
    const c = cases.find((x) => x.name.endsWith('-python-mixed-proc-io'))!;
    const { records } = parseTestdataCase(manifest, c);
    const wcharByPid = new Map<string, number>();
    for (const r of records)
      if (r.kind === 'sample' && r.series === 'proc.io.wchar')
        wcharByPid.set(r.labels!.pid!, (wcharByPid.get(r.labels!.pid!) ?? 0) + r.value);
    expect(Math.max(...wcharByPid.values())).toBe(
      EXPECTED_MIXED.parent.writeBytes + EXPECTED_MIXED.child.writeBytes,
    );
  });
});

describe('fs-io parser edge cases', () => {
  it('counts malformed lines as parse errors and lost events as dropped, without throwing', () => {
    const out = parseLines(manifest, ['@read_n[12, x]: 3', 'garbage', 'Lost 17 events', '@@flush']);
    expect(out.diagnostics).toHaveLength(2);
    expect(out.dropped).toBe(17);
    expect(out.records).toEqual([]);
  });

  it('turns cumulative totals into increases and names files from @names', () => {
    const out = parseLines(manifest, [
      '@comm[7]: app',
      '@names[99]: /var/log/a, b].log',
      '@write_b[7, 99]: 100',
      '@@flush',
      '@write_b[7, 99]: 100',
      '@@flush',
      '@write_b[7, 99]: 250',
      '@@end',
      '@write_b[7, 99]: 0',
    ]);
    expect(total(out.records, 'fs.write.bytes', { path: '/var/log/a, b].log', comm: 'app' })).toBe(
      250,
    );
    expect(
      out.records.filter((r) => r.kind === 'sample').map((r) => (r as { value: number }).value),
    ).toEqual([100, 150]);
  });

  it('reports reads/writes whose fd was not found in the saved registers as dropped', () => {
    const out = parseLines(manifest, [
      '@regs_miss: 0',
      '@@flush',
      '@regs_miss: 5',
      '@@flush',
      '@regs_miss: 7',
    ]);
    expect(out.dropped).toBe(7);
    expect(out.diagnostics).toEqual([]);
  });

  it('reads histogram bounds with binary suffixes', () => {
    expect(parseBound('16K')).toBe(16_384);
    expect(parseBound('2M')).toBe(2 * 1024 * 1024);
    expect(parseBound('512')).toBe(512);
  });
});
