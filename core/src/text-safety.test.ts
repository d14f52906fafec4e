import { describe, expect, it } from 'vitest';
import {
  RefusalLog,
  escapeControl,
  escapeControlKeepLines,
  neutralizeCsvFormula,
} from './text-safety.js';

describe('text safety', () => {
  it('escapes control characters, keeping newlines only where asked', () => {
    expect(escapeControl('a\nb\x1b[2J\x07\u202e')).toBe('a\\nb\\x1b[2J\\x07\\u202e');
    expect(escapeControlKeepLines('a\nb\x1b]0;t\x07\r')).toBe('a\nb\\x1b]0;t\\x07\\r');
    expect(escapeControl('plain é 名前')).toBe('plain é 名前');
    expect(escapeControl('x'.repeat(10), 4)).toBe('xxxx…');
  });

  it('neutralizes CSV formulas but leaves numbers alone', () => {
    expect(neutralizeCsvFormula('=HYPERLINK("x")')).toBe(`'=HYPERLINK("x")`);
    expect(neutralizeCsvFormula('+cmd')).toBe(`'+cmd`);
    expect(neutralizeCsvFormula('-2+3')).toBe(`'-2+3`);
    expect(neutralizeCsvFormula('@SUM(A1)')).toBe(`'@SUM(A1)`);
    expect(neutralizeCsvFormula('\tx')).toBe(`'\tx`);
    expect(neutralizeCsvFormula('-1.5')).toBe('-1.5');
    expect(neutralizeCsvFormula('+3e-7')).toBe('+3e-7');
    expect(neutralizeCsvFormula('nova-api')).toBe('nova-api');
  });

  it('logs the first refusal of each source and kind, and bounds the sources it remembers', () => {
    const lines: string[] = [];
    const log = new RefusalLog((l) => lines.push(l), 60_000, 3);
    for (let i = 0; i < 100; i++) log.refuse('10.0.0.1', 'ping from 10.0.0.1: bad token');
    log.refuse('10.0.0.1', 'replay from 10.0.0.1', 'replay');
    log.refuse('a\nforged', 'x from a\nforged');
    for (let i = 0; i < 50; i++) log.refuse(`h${i}`, `from h${i}`);
    log.close();
    expect(lines).toEqual([
      'refused ping from 10.0.0.1: bad token',
      'refused replay from 10.0.0.1',
      'refused x from a\\nforged',
      'refusing requests from more than 3 sources; not logging each',
    ]);
  });
});
