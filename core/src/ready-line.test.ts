import { describe, expect, it } from 'vitest';
import { announceReady, readyLine, WORKER_READY_LINE } from './api.js';

describe('the worker ready line', () => {
  it('readyLine() matches the line alone or followed by a header, nothing else', () => {
    const re = readyLine();
    expect(re.test(WORKER_READY_LINE)).toBe(true);
    expect(re.test(`${WORKER_READY_LINE} arch=x64 grouping=process`)).toBe(true);
    expect(re.test(`${WORKER_READY_LINE}x`)).toBe(false);
    expect(re.test(`# ${WORKER_READY_LINE}`)).toBe(false);
    expect(re.test('{"t":"ready"}')).toBe(false);
  });

  it('announceReady() writes the line and a newline', () => {
    let out = '';
    announceReady({ write: (t: string) => (out += t) });
    expect(out).toBe(`${WORKER_READY_LINE}\n`);
  });
});
