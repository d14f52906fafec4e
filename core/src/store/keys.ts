import { randomBytes } from 'node:crypto';
import type { Labels } from '../api.js';

/** Labels as stored: JSON with sorted keys, so one label set is one series whatever its key order. */
export function canonicalLabels(labels: Labels | undefined): string {
  if (!labels) return '{}';
  const out: Record<string, string> = {};
  for (const k of Object.keys(labels).sort()) out[k] = String(labels[k]);
  return JSON.stringify(out);
}

/** A key for labels in their own key order: cheap, and the same object shape gives the same key. */
export function fastLabelsKey(labels: Labels | undefined): string {
  let key = '';
  if (labels) for (const k in labels) key += `${k}\x01${labels[k]}\x02`;
  return key;
}

/** Task ids: `YYYYMMDD-HHMMSS-xxxx`, the UTC start time and 4 random hex digits. */
export function newTaskId(startedAt: number): string {
  const iso = new Date(startedAt).toISOString(); // 2026-11-26T12:03:01.123Z
  return `${iso.slice(0, 10).replaceAll('-', '')}-${iso.slice(11, 19).replaceAll(':', '')}-${randomBytes(2).toString('hex')}`;
}
