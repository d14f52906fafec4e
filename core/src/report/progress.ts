/**
 * Progress of long report work (a large task's report, an export) on stderr, only when stderr
 * is a terminal: piped or redirected runs stay quiet.
 */
export class Progress {
  private readonly tty: boolean;
  private last = 0;
  private shown = false;

  constructor(
    private readonly what: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = Boolean(stream.isTTY) && process.env.TERM !== 'dumb';
  }

  /** Shows `what: text` at once, then at most 4 times a second. */
  update(text: string): void {
    if (!this.tty) return;
    const now = Date.now();
    if (this.shown && now - this.last < 250) return;
    this.last = now;
    this.shown = true;
    const cols = this.stream.columns || 80;
    this.stream.write(`\r\x1b[2K${`${this.what}: ${text}`.slice(0, cols - 1)}`);
  }

  done(): void {
    if (this.tty && this.shown) this.stream.write('\r\x1b[2K');
  }
}
