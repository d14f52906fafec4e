import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTestdata, parseLines, parseTestdataCase } from '@scalpels/core/testing';
import type { TraceRecord } from '@scalpels/core';
import plugin from '../src/index.js';
import { pluginDir } from './helpers.js';

const cases = loadTestdata(join(pluginDir, 'testdata'));

describe('rpc-calls parser on recorded firehose output', () => {
  it('has recorded cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(2);
  });
  for (const c of cases)
    it(c.name, () => {
      const out = parseTestdataCase(plugin, c);
      expect(out.records).toEqual(c.expected.records);
      expect(out.diagnostics.length).toBe(c.expected.parseErrors ?? 0);
      expect(out.dropped).toBe(c.expected.dropped ?? 0);
      expect(JSON.stringify(out.records)).not.toContain('SECRET-TOKEN');
    });

  it('counts malformed lines as parse errors and keeps going', () => {
    const c = cases.find((x) => x.name.endsWith('-oslo-rpc'))!;
    const lines = c.stdout.trimEnd().split('\n');
    const garbage = [
      'not json',
      '{"type":"msg"}',
      '{"type":"bogus","ts":1}',
      '[1,2]',
      '{"type":"msg","ts":5}',
    ];
    const out = parseLines(plugin, [...garbage, ...lines], c.options);
    expect(out.diagnostics.map((d) => d.line)).toEqual([1, 2, 3, 4, 5]);
    expect(out.records).toEqual(c.expected.records);
  });

  it('reports calls still waiting at the end as pending, not as timeouts', () => {
    const c = cases.find((x) => x.name.endsWith('-deliver-events'))!;
    // Cut the recording right after the first call was published: its reply never comes.
    const lines = c.stdout.trimEnd().split('\n');
    const firstCall = lines.findIndex((l) => l.includes('"method":"build_instances"'));
    const out = parseLines(plugin, lines.slice(0, firstCall + 1), c.options);
    const call = out.records.find((r) => r.kind === 'event' && r.type === 'rpc.call');
    expect(call).toMatchObject({
      key: 'nova/compute.build_instances',
      data: { outcome: 'pending' },
    });
    expect(out.records.some((r) => r.kind === 'sample' && r.series === 'rpc.timeouts')).toBe(false);
    expect(
      out.records.find((r) => r.kind === 'sample' && r.series === 'rpc.pending'),
    ).toMatchObject({ value: 1 });
  });

  it('matches a reply whose trace copy overtook its call', () => {
    const c = cases.find((x) => x.name.endsWith('-oslo-rpc'))!;
    const lines = c.stdout.trimEnd().split('\n');
    const callAt = lines.findIndex((l) => l.includes('"method":"build_instances"'));
    const msgId = (JSON.parse(lines[callAt]!) as { oslo: { msgId: string } }).oslo.msgId;
    const replyAt = lines.findIndex(
      (l, i) => i > callAt && l.includes(`"msgId":"${msgId}"`) && l.includes('"isReply"'),
    );
    expect(replyAt).toBeGreaterThan(callAt);
    const swapped = [...lines];
    const [reply] = swapped.splice(replyAt, 1);
    swapped.splice(callAt, 0, reply!);
    const sum = (recs: TraceRecord[], series: string): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const r of recs)
        if (r.kind === 'sample' && r.series === series)
          out[r.labels!.method!] = (out[r.labels!.method!] ?? 0) + r.value;
      return out;
    };
    const original = parseLines(plugin, lines, c.options).records;
    const reordered = parseLines(plugin, swapped, c.options).records;
    for (const series of ['rpc.calls', 'rpc.replies', 'rpc.timeouts', 'rpc.failures'])
      expect(sum(reordered, series)).toEqual(sum(original, series));
    expect(JSON.stringify(reordered)).not.toContain('(unmatched)');
  });

  it('counts a reply whose call was never seen as unmatched', () => {
    const c = cases.find((x) => x.name.endsWith('-oslo-rpc'))!;
    const lines = c.stdout.trimEnd().split('\n');
    const callAt = lines.findIndex((l) => l.includes('"method":"build_instances"'));
    const out = parseLines(
      plugin,
      lines.filter((_, i) => i !== callAt),
      c.options,
    ).records;
    const replies = out.filter((r) => r.kind === 'sample' && r.series === 'rpc.replies');
    expect(
      replies
        .filter((r) => r.kind === 'sample' && r.labels?.method === '(unmatched)')
        .map((r) => r.kind === 'sample' && r.value),
    ).toEqual([1]);
  });
  it('takes call latency from the broker stamps when both messages carry one, else from the tracer', () => {
    const c = cases.find((x) => x.name.endsWith('-broker-stamps'))!;
    const lines = c.stdout.trimEnd().split('\n');
    type Line = {
      type: string;
      dir?: string;
      brokerTs?: number;
      oslo?: { msgId?: string; method?: string; isReply?: boolean };
    };
    const parsed = lines.map((l) => JSON.parse(l) as Line);
    // From the recording itself, independent of the parser: reply stamp minus call stamp.
    const callStamp = new Map<string, number>();
    const want = new Map<string, number>();
    for (const m of parsed) {
      if (m.type !== 'msg' || m.dir !== 'publish' || !m.oslo?.msgId) continue;
      expect(m.brokerTs).toBeTypeOf('number');
      if (m.oslo.method) callStamp.set(m.oslo.msgId, m.brokerTs!);
      else if (m.oslo.isReply && callStamp.has(m.oslo.msgId))
        want.set(m.oslo.msgId, m.brokerTs! - callStamp.get(m.oslo.msgId)!);
    }
    const events = (records: TraceRecord[]) =>
      records.filter(
        (r) => r.kind === 'event' && r.type === 'rpc.call' && r.durationMs !== undefined,
      );
    const stamped = events(parseTestdataCase(plugin, c).records);
    expect(stamped.length).toBe(want.size);
    for (const e of stamped) {
      if (e.kind !== 'event') continue;
      expect(e.data?.clock).toBe('broker');
      expect(e.durationMs).toBe(want.get(e.data?.msgId as string));
    }
    // The same messages without the broker's stamps: the tracer's receive times.
    const unstamped = lines.map((l) => {
      const m = JSON.parse(l) as Record<string, unknown>;
      delete m.brokerTs;
      return JSON.stringify(m);
    });
    const fallback = events(parseLines(plugin, unstamped, c.options).records);
    expect(fallback.length).toBe(want.size);
    for (const e of fallback) if (e.kind === 'event') expect(e.data?.clock).toBe('tracer');
  });
});
