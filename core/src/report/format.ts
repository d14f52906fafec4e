/** Number formatting shared by the HTML report, compare and watch. */

const SI = ['', 'k', 'M', 'G', 'T', 'P'];
const BIN = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi'];

/** Three significant digits, no exponent: 0.00123, 1.23, 123, 12300. */
export function sig(n: number): string {
  if (!Number.isFinite(n)) return '-';
  if (n === 0) return '0';
  const a = Math.abs(n);
  if (a >= 1000) return String(Math.round(n));
  if (Number.isInteger(n)) return String(n);
  return a >= 100
    ? n.toFixed(0)
    : a >= 10
      ? n.toFixed(1)
      : a >= 1
        ? n.toFixed(2)
        : n.toPrecision(3);
}

/** A value with its unit, scaled: `12.3 MiB/s` for bytes, `4.5k count/s`, `230 ms/s`. */
export function human(n: number | null, unit = ''): string {
  if (n === null || !Number.isFinite(n)) return '-';
  const bytes = unit.startsWith('bytes');
  const base = bytes ? 1024 : 1000;
  const names = bytes ? BIN : SI;
  let i = 0;
  let v = n;
  while (Math.abs(v) >= base && i < names.length - 1) {
    v /= base;
    i++;
  }
  const shown =
    i === 0 ? sig(v) : Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(Math.abs(v) >= 10 ? 1 : 2);
  if (bytes) return `${shown} ${names[i]}B${unit.slice(5)}`;
  const u = unit === 'count' ? '' : unit === 'count/s' ? '/s' : unit;
  return `${shown}${names[i]}${u ? ` ${u}` : ''}`.replace(' /s', '/s');
}

/** Seconds from the task's start: `+0s`, `+45s`, `+2m05s`, `+1h02m`. */
export function offset(ms: number): string {
  const s = Math.round(ms / 1000);
  if (Math.abs(ms) < 10_000 && ms % 1000 !== 0) return `+${(ms / 1000).toFixed(1)}s`;
  if (s < 60) return `+${s}s`;
  if (s < 3600) return `+${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `+${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
