import { describe, expect, it } from 'vitest';
import { LineSplitter, TailBuffer } from './lines.js';

describe('LineSplitter', () => {
  it('splits lines across chunk boundaries, handles CRLF and a final line without newline', () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    s.push(Buffer.from('alpha\nbe'));
    s.push(Buffer.from('ta\r\ngam'));
    s.push(Buffer.from('ma\n\nδέλτα'));
    s.end();
    expect(lines).toEqual(['alpha', 'beta', 'gamma', '', 'δέλτα']);
  });

  it('keeps a multi-byte character split between chunks intact', () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    const bytes = Buffer.from('é\n');
    s.push(bytes.subarray(0, 1));
    s.push(bytes.subarray(1));
    expect(lines).toEqual(['é']);
  });

  it('drops a runaway line whole, discards its tail up to the next newline, and says so once', () => {
    const lines: string[] = [];
    let overflows = 0;
    const s = new LineSplitter(
      (l) => lines.push(l),
      10,
      () => overflows++,
    );
    // The tail after the cut looks like a record: it must not be read as one.
    s.push(Buffer.from('0123456789abcdef'));
    s.push(Buffer.from('{"forged":true}'));
    s.push(Buffer.from('{"more":1}\nnext\n'));
    expect(lines).toEqual(['next']);
    expect(overflows).toBe(1);
  });

  it('drops an over-long line that arrives in one chunk or ends a carried line', () => {
    const lines: string[] = [];
    let overflows = 0;
    const s = new LineSplitter(
      (l) => lines.push(l),
      10,
      () => overflows++,
    );
    s.push(Buffer.from('short\n0123456789abc\nok\n0123'));
    s.push(Buffer.from('4567890\nlast\n'));
    expect(lines).toEqual(['short', 'ok', 'last']);
    expect(overflows).toBe(2);
  });
});

describe('TailBuffer', () => {
  it('keeps only the last bytes', () => {
    const t = new TailBuffer(8);
    t.push(Buffer.from('hello '));
    t.push(Buffer.from('world, bye'));
    expect(t.toString()).toBe('rld, bye');
  });
});
