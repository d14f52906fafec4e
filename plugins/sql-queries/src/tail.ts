import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';

/**
 * Follows a log file from its end at start: each read() returns the complete lines appended since
 * the previous one. Survives truncation (reads from the start again) and rotation (finishes the
 * old file, then follows the new one from its start).
 */
export class FileTail {
  private fd: number;
  private ino: number;
  private offset: number;
  private rest = '';
  /** Bytes the tail could not read because the file shrank under it. */
  lostBytes = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'r');
    const st = fstatSync(this.fd);
    this.ino = st.ino;
    this.offset = st.size;
  }

  read(): string[] {
    let text = this.drain();
    let current: ReturnType<typeof statSync> | undefined;
    try {
      current = statSync(this.path);
    } catch {
      current = undefined;
    }
    if (current && current.ino !== this.ino) {
      closeSync(this.fd);
      this.fd = openSync(this.path, 'r');
      this.ino = fstatSync(this.fd).ino;
      this.offset = 0;
      text += this.drain();
    }
    const all = this.rest + text;
    const cut = all.lastIndexOf('\n');
    if (cut < 0) {
      this.rest = all;
      return [];
    }
    this.rest = all.slice(cut + 1);
    return all.slice(0, cut).split('\n');
  }

  /** Bytes of a line the server has not finished writing yet. */
  get partial(): number {
    return this.rest.length;
  }

  /** The size of the file now. */
  size(): number {
    try {
      return statSync(this.path).size;
    } catch {
      return -1;
    }
  }

  close(): void {
    closeSync(this.fd);
  }

  private drain(): string {
    const size = fstatSync(this.fd).size;
    if (size < this.offset) {
      this.lostBytes += this.offset - size;
      this.offset = 0;
      this.rest = '';
    }
    const chunks: Buffer[] = [];
    const buf = Buffer.alloc(1 << 20);
    for (;;) {
      const n = readSync(this.fd, buf, 0, buf.length, this.offset);
      if (n <= 0) break;
      this.offset += n;
      chunks.push(Buffer.from(buf.subarray(0, n)));
    }
    return Buffer.concat(chunks).toString('utf8');
  }
}
