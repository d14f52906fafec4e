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

const TIME_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000 };

/** Three significant digits without an exponent: 1.23, 12.3, 123, 1234. */
function sig3(n: number): string {
  const a = Math.abs(n);
  if (a === 0) return '0';
  if (a >= 100) return n.toFixed(0);
  if (a >= 10) return trimZeros(n.toFixed(1));
  if (a >= 1) return trimZeros(n.toFixed(2));
  return trimZeros(n.toPrecision(3));
}

const trimZeros = (s: string): string => (s.includes('.') ? s.replace(/\.?0+$/, '') : s);

/**
 * A value in its unit, scaled for people: bytes in KiB/MiB/GiB, times in ns/µs/ms/s, counts
 * with k/M/G, `percent` and `fraction` as percentages; a unit ending in `/s` is a rate. Integers
 * below 1000 print exactly (`7`, `612`), others with three significant digits.
 */
export function humanize(n: number | null | undefined, unit = ''): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  const rate = unit.endsWith('/s') && unit !== '/s';
  const base = rate ? unit.slice(0, -2) : unit;
  const per = rate ? '/s' : '';
  if (base === 'fraction') return `${sig3(n * 100)}%`;
  if (base === 'percent') return `${sig3(n)}%`;
  if (base in TIME_MS) {
    const ms = n * TIME_MS[base]!;
    const a = Math.abs(ms);
    if (a === 0) return `0${per ? ' s/s' : ' s'}`;
    if (a >= 1000) return `${sig3(ms / 1000)} s${per}`;
    if (a >= 1) return `${sig3(ms)} ms${per}`;
    if (a >= 1e-3) return `${sig3(ms * 1e3)} µs${per}`;
    return `${sig3(ms * 1e6)} ns${per}`;
  }
  const bytes = base === 'bytes' || base === 'B';
  const step = bytes ? 1024 : 1000;
  const prefixes = bytes ? ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi'] : ['', 'k', 'M', 'G', 'T', 'P'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= step && i < prefixes.length - 1) {
    v /= step;
    i++;
  }
  const shown = i === 0 && Number.isInteger(v) ? String(v) : sig3(v);
  if (bytes) return `${shown} ${prefixes[i]}B${per}`;
  const word = base === 'count' || base === '' ? '' : ` ${base}`;
  return `${shown}${prefixes[i]}${word}${per}`;
}
