/**
 * Splits a byte stream into lines without readline: scans each chunk for `\n` with
 * Buffer.indexOf and decodes only the slices, carrying a partial line to the next chunk.
 *
 * A line longer than `maxLine` is not a record: it is dropped whole, and what follows it up to
 * the next newline is discarded too (never read as a new line: the tail of a long statement in
 * a server log must not be able to forge a record). `onOverflow` is told once per such line.
 */
export class LineSplitter {
  private carry: Buffer | undefined;
  /** Inside an over-long line: skip up to the next newline. */
  private discarding = false;

  constructor(
    private readonly onLine: (line: string) => void,
    /** Lines longer than this are dropped (a runaway worker must not exhaust memory). */
    private readonly maxLine = 1 << 20,
    private readonly onOverflow: () => void = () => undefined,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    let nl = chunk.indexOf(10);
    if (this.discarding) {
      if (nl === -1) return;
      this.discarding = false;
      start = nl + 1;
      nl = chunk.indexOf(10, start);
    } else if (this.carry !== undefined && nl !== -1) {
      const carried = this.carry;
      this.carry = undefined;
      if (carried.length + nl > this.maxLine) this.onOverflow();
      else {
        const joined = Buffer.concat([carried, chunk.subarray(0, nl)]);
        this.emit(joined, 0, joined.length);
      }
      start = nl + 1;
      nl = chunk.indexOf(10, start);
    }
    while (nl !== -1) {
      if (nl - start > this.maxLine) this.onOverflow();
      else this.emit(chunk, start, nl);
      start = nl + 1;
      nl = chunk.indexOf(10, start);
    }
    if (start < chunk.length) {
      const restLength = chunk.length - start + (this.carry?.length ?? 0);
      if (restLength > this.maxLine) {
        this.carry = undefined;
        this.discarding = true;
        this.onOverflow();
        return;
      }
      const rest = chunk.subarray(start);
      this.carry = this.carry === undefined ? Buffer.from(rest) : Buffer.concat([this.carry, rest]);
    }
  }

  /** Emits a final line that had no newline. */
  end(): void {
    if (this.carry !== undefined && this.carry.length > 0)
      this.emit(this.carry, 0, this.carry.length);
    this.carry = undefined;
    this.discarding = false;
  }

  private emit(buf: Buffer, start: number, end: number): void {
    // Tolerate CRLF output.
    if (end > start && buf[end - 1] === 13) end--;
    this.onLine(buf.toString('utf8', start, end));
  }
}

/** Keeps the last `limit` bytes written to it (a worker's stderr tail). */
export class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly limit = 8192) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size - this.chunks[0]!.length >= this.limit)
      this.size -= this.chunks.shift()!.length;
  }

  toString(): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - this.limit)).toString('utf8');
  }
}
