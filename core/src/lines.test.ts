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

  it('cuts a runaway line at the limit instead of growing without bound', () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l), 10);
    s.push(Buffer.from('0123456789abcdef'));
    s.push(Buffer.from('\nnext\n'));
    expect(lines[0]).toBe('0123456789abcdef'.slice(0, 10));
    expect(lines.at(-1)).toBe('next');
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
