/**
 * Text that came from outside (traced process names, task names, method names of a refused
 * request) must not steer a terminal or forge a log line: control characters are shown
 * escaped, never emitted.
 */

// C0 controls, DEL, C1 controls, and the Unicode line/paragraph separators and bidi overrides
// that terminals or log viewers honour.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const CONTROL_BUT_NEWLINE =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function escapeOne(c: string): string {
  const code = c.charCodeAt(0);
  if (c === '\n') return '\\n';
  if (c === '\r') return '\\r';
  if (c === '\t') return '\\t';
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, '0')}`
    : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** One line of text with every control character escaped (`\n`, `\x1b`, `\u202e`). */
export function escapeControl(text: string, maxLength = Infinity): string {
  const s = text.replace(CONTROL, escapeOne);
  return s.length > maxLength ? `${s.slice(0, maxLength)}…` : s;
}

/** Multi-line human output (a report table): newlines kept, every other control escaped. */
export function escapeControlKeepLines(text: string): string {
  return text.replace(CONTROL_BUT_NEWLINE, escapeOne);
}

/**
 * A CSV cell that a spreadsheet will not run as a formula: text starting with `= + - @` (or a
 * tab or carriage return) gets a leading apostrophe. Numbers stay numbers.
 */
export function neutralizeCsvFormula(value: string): string {
  if (!/^[=+\-@\t\r]/.test(value)) return value;
  if (/^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(value)) return value;
  return `'${value}`;
}

/**
 * Logs refusals without letting a flood of them fill the disk: the first refusal of each source
 * is logged, later ones of that source are counted and summarized at most once per interval,
 * and at most `maxSources` sources are remembered (past that, one line says more were refused).
 */
export class RefusalLog {
  private readonly seen = new Map<string, { count: number; reported: number }>();
  private overflow = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly write: (line: string) => void,
    private readonly intervalMs = 60_000,
    private readonly maxSources = 1024,
  ) {}

  /** `kind` groups refusals of one source (a bad signature and a replay are logged apart). */
  refuse(source: string, reason: string, kind = ''): void {
    const key = `${escapeControl(source, 200)}${kind ? ` (${kind})` : ''}`;
    const known = this.seen.get(key);
    if (known) {
      known.count++;
      this.arm();
      return;
    }
    if (this.seen.size >= this.maxSources) {
      if (this.overflow++ === 0)
        this.write(`refusing requests from more than ${this.maxSources} sources; not logging each`);
      this.arm();
      return;
    }
    this.seen.set(key, { count: 1, reported: 1 });
    this.write(`refused ${escapeControl(reason, 300)}`);
  }

  private arm(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => this.summarize(), this.intervalMs);
    this.timer.unref();
  }

  private summarize(): void {
    this.timer = undefined;
    for (const [source, s] of this.seen) {
      if (s.count > s.reported) {
        this.write(`refused ${s.count - s.reported} more request(s) from ${source}`);
        s.reported = s.count;
      }
    }
    if (this.overflow > 1)
      this.write(`refused ${this.overflow - 1} request(s) from further sources`);
    this.overflow = this.overflow > 0 ? 1 : 0;
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
