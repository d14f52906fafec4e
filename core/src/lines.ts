/**
 * Splits a byte stream into lines without readline: scans each chunk for `\n` with
 * Buffer.indexOf and decodes only the slices, carrying a partial line to the next chunk.
 */
export class LineSplitter {
  private carry: Buffer | undefined;

  constructor(
    private readonly onLine: (line: string) => void,
    /** Lines longer than this are cut (a runaway worker must not exhaust memory). */
    private readonly maxLine = 1 << 20,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    let nl = chunk.indexOf(10);
    if (this.carry !== undefined && nl !== -1) {
      const joined = Buffer.concat([this.carry, chunk.subarray(0, nl)]);
      this.carry = undefined;
      this.emit(joined, 0, joined.length);
      start = nl + 1;
      nl = chunk.indexOf(10, start);
    }
    while (nl !== -1) {
      this.emit(chunk, start, nl);
      start = nl + 1;
      nl = chunk.indexOf(10, start);
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.carry = this.carry === undefined ? Buffer.from(rest) : Buffer.concat([this.carry, rest]);
      if (this.carry.length > this.maxLine) {
        this.emit(this.carry, 0, this.maxLine);
        this.carry = undefined;
      }
    }
  }

  /** Emits a final line that had no newline. */
  end(): void {
    if (this.carry !== undefined && this.carry.length > 0)
      this.emit(this.carry, 0, this.carry.length);
    this.carry = undefined;
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
