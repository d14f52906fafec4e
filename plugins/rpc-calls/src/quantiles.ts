/**
 * Percentiles of a growing set of latencies in bounded memory and time: exact (nearest rank over
 * the sorted values) up to EXACT_LIMIT values, then log-spaced buckets with a relative error of at
 * most 0.5 % (the bucket's geometric middle stands for its values).
 */
const EXACT_LIMIT = 4096;
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
/** Values below this (ms) share bucket 0. */
const FLOOR_MS = 0.001;

export class Quantiles {
  private sorted: number[] | undefined = [];
  private readonly buckets = new Map<number, number>();
  private n = 0;

  get count(): number {
    return this.n;
  }

  add(value: number): void {
    this.n++;
    if (this.sorted) {
      // Binary insertion keeps the list sorted: a memmove of at most EXACT_LIMIT numbers.
      let lo = 0;
      let hi = this.sorted.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.sorted[mid]! <= value) lo = mid + 1;
        else hi = mid;
      }
      this.sorted.splice(lo, 0, value);
      if (this.sorted.length > EXACT_LIMIT) {
        for (const v of this.sorted) this.bucket(v);
        this.sorted = undefined;
      }
      return;
    }
    this.bucket(value);
  }

  private bucket(value: number): void {
    const i =
      value <= FLOOR_MS ? 0 : Math.max(1, Math.ceil(Math.log(value / FLOOR_MS) / LOG_GROWTH));
    this.buckets.set(i, (this.buckets.get(i) ?? 0) + 1);
  }

  /** Nearest-rank percentile, `p` in 0..100. */
  percentile(p: number): number | undefined {
    if (this.n === 0) return undefined;
    const rank = Math.max(1, Math.ceil((p / 100) * this.n));
    if (this.sorted) return this.sorted[rank - 1];
    let seen = 0;
    for (const i of [...this.buckets.keys()].sort((a, b) => a - b)) {
      seen += this.buckets.get(i)!;
      if (seen >= rank) return i === 0 ? FLOOR_MS : FLOOR_MS * Math.pow(GROWTH, i - 0.5);
    }
    return undefined;
  }
}
