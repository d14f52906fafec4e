import type { ReportSeries, ReportTracer } from '../report.js';

export interface CombinedTracer {
  tracer: string;
  nodes: string[];
  records: number;
  parseErrors: number;
  dropped: number;
  series: ReportSeries[];
}

/**
 * Figures of a task that spans nodes, combined across them: per tracer and series (name +
 * labels), points and sums add up (a counter's total over the cluster), min/max are over all
 * nodes, `last` and `rate` add up (the cluster's level and rate now), mean is sum/points.
 */
export function combineNodes(tracers: readonly ReportTracer[]): CombinedTracer[] {
  const byTracer = new Map<string, CombinedTracer & { index: Map<string, ReportSeries> }>();
  for (const t of tracers) {
    let c = byTracer.get(t.tracer);
    if (!c)
      byTracer.set(
        t.tracer,
        (c = {
          tracer: t.tracer,
          nodes: [],
          records: 0,
          parseErrors: 0,
          dropped: 0,
          series: [],
          index: new Map(),
        }),
      );
    if (!c.nodes.includes(t.node)) c.nodes.push(t.node);
    c.records += t.records;
    c.parseErrors += t.parseErrors;
    c.dropped += t.dropped;
    for (const s of t.series) {
      const key = `${s.name}\0${JSON.stringify(s.labels)}`;
      const have = c.index.get(key);
      if (!have) {
        const copy = { ...s, labels: { ...s.labels } };
        c.index.set(key, copy);
        c.series.push(copy);
        continue;
      }
      have.points += s.points;
      have.sum += s.sum;
      have.min = Math.min(have.min, s.min);
      have.max = Math.max(have.max, s.max);
      have.last += s.last;
      have.rate = have.rate === null || s.rate === null ? null : have.rate + s.rate;
      have.mean = have.points ? have.sum / have.points : 0;
    }
  }
  return [...byTracer.values()].map(({ index: _index, ...c }) => c);
}
