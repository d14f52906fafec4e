import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Sample, TraceEvent, TraceRecord } from '@scalpels/core';

export const pluginDir = fileURLToPath(new URL('..', import.meta.url));
export const testdataDir = fileURLToPath(new URL('../testdata', import.meta.url));
export const samplerBuilt = existsSync(
  fileURLToPath(new URL('../dist/worker-main.js', import.meta.url)),
);

export const samples = (records: readonly TraceRecord[]): Sample[] =>
  records.filter((r): r is Sample => r.kind === 'sample');
export const events = (records: readonly TraceRecord[]): TraceEvent[] =>
  records.filter((r): r is TraceEvent => r.kind === 'event');

/** Sum of a series over the records whose labels include all of `where`. */
export function total(
  records: readonly TraceRecord[],
  series: string,
  where: Record<string, string> = {},
): number {
  return samples(records)
    .filter(
      (s) => s.series === series && Object.entries(where).every(([k, v]) => s.labels?.[k] === v),
    )
    .reduce((a, s) => a + s.value, 0);
}
