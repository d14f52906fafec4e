/**
 * The sampler's output format, shared by the sampler (writer) and the parser (reader). One sample
 * per line, tab-separated: `ts<TAB>series<TAB>value[<TAB>label=value]...`, `ts` in milliseconds
 * since the epoch. Lines starting with `#` are comments (header, `# ready`). Label values are
 * escaped so that tabs, newlines and backslashes in them (a process comm can hold any byte but
 * NUL and `/`) cannot break the line.
 *
 * This module must not import anything outside node's standard library: the sampler runs alone.
 */

/** Clock ticks per second of every tick count in /proc (USER_HZ): 100 on every Linux ABI. */
export const USER_HZ = 100;

const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };
const UNESCAPES: Record<string, string> = { '\\': '\\', t: '\t', n: '\n', r: '\r' };

export function escapeLabel(value: string): string {
  return value.replace(/[\\\t\n\r]/g, (c) => ESCAPES[c]!);
}

/** Reverses escapeLabel; returns undefined for a dangling or unknown escape. */
export function unescapeLabel(value: string): string | undefined {
  if (!value.includes('\\')) return value;
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const next = UNESCAPES[value[i + 1] ?? ''];
    if (next === undefined) return undefined;
    out += next;
    i++;
  }
  return out;
}

export function formatSample(
  ts: number,
  series: string,
  value: number,
  labels?: Readonly<Record<string, string>>,
): string {
  let line = `${ts}\t${series}\t${value}`;
  if (labels) for (const [k, v] of Object.entries(labels)) line += `\t${k}=${escapeLabel(v)}`;
  return line;
}
