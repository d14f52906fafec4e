const DURATION = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)?$/;
const DURATION_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** `500ms`, `2s`, `1.5m`, `1h` → milliseconds; a bare number is seconds. Undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * DURATION_MS[m[2] ?? 's']!;
}

const SIZE = /^(\d+(?:\.\d+)?)([kKmMgGtT]i?[bB]?|[bB])?$/;
const SIZE_SHIFT: Record<string, number> = { b: 0, k: 10, m: 20, g: 30, t: 40 };

/** `512`, `64k`, `16M`, `1GiB` → bytes (binary multiples). Undefined when malformed. */
export function parseSize(text: string): number | undefined {
  const m = SIZE.exec(text.trim());
  if (!m) return undefined;
  const unit = (m[2] ?? 'b')[0]!.toLowerCase();
  return Math.round(Number(m[1]) * 2 ** SIZE_SHIFT[unit]!);
}

export function formatDuration(ms: number): string {
  if (ms < 1) return `${(ms * 1000).toFixed(0)}µs`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : 0)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)}s`;
  return `${Math.floor(ms / 60_000)}m${((ms % 60_000) / 1000).toFixed(0)}s`;
}
