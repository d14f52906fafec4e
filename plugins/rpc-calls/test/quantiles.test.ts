import { describe, expect, it } from 'vitest';
import { Quantiles } from '../src/quantiles.js';

const nearestRank = (sorted: number[], p: number): number =>
  sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1]!;

describe('latency percentiles', () => {
  it('are exact (nearest rank) for up to 4096 values', () => {
    const q = new Quantiles();
    const values = Array.from({ length: 4000 }, (_, i) => ((i * 7919) % 4000) / 10 + 0.25);
    for (const v of values) q.add(v);
    const sorted = [...values].sort((a, b) => a - b);
    for (const p of [1, 50, 95, 99, 100]) expect(q.percentile(p)).toBe(nearestRank(sorted, p));
  });

  it('stay within 0.5 % beyond that, in bounded memory', () => {
    const q = new Quantiles();
    const values = Array.from({ length: 100_000 }, (_, i) => 0.05 + ((i * 104729) % 100_000) / 37);
    for (const v of values) q.add(v);
    const sorted = [...values].sort((a, b) => a - b);
    expect(q.count).toBe(100_000);
    for (const p of [50, 95, 99]) {
      const exact = nearestRank(sorted, p);
      expect(Math.abs(q.percentile(p)! - exact) / exact).toBeLessThanOrEqual(0.005);
    }
  });
});
