import { describe, expect, it } from 'vitest';
import { staticCheck } from './static-check.js';

describe('staticCheck (requirements declared in package.json)', () => {
  it('is ok when files, binaries and root are there', () => {
    expect(staticCheck({ files: ['/proc/stat'], binaries: ['sh'] }, true)).toMatchObject({
      status: 'ok',
    });
  });

  it('says what is missing, and how to fix it when declared', () => {
    expect(staticCheck({ files: ['/nonexistent/x'] }, true)).toEqual({
      status: 'unavailable',
      detail: '/nonexistent/x is missing',
    });
    expect(staticCheck({ root: true }, false)).toEqual({
      status: 'unavailable',
      detail: 'needs root',
    });
    expect(
      staticCheck({ binaries: ['no-such-tool-xyz'], install: 'apt-get install xyz' }, true),
    ).toEqual({
      status: 'fixable',
      detail: 'no-such-tool-xyz is not on PATH',
      hint: 'apt-get install xyz',
    });
  });

  it('picks the first alternative that works, in order', () => {
    const chain = {
      anyOf: [
        { name: 'fancy', binaries: ['no-such-tool-xyz'], install: 'apt-get install xyz' },
        { name: 'root-only', root: true, binaries: ['sh'] },
        { name: 'plain', binaries: ['sh'] },
      ],
    };
    expect(staticCheck(chain, true)).toMatchObject({ status: 'ok', technique: 'root-only' });
    expect(staticCheck(chain, false)).toMatchObject({ status: 'ok', technique: 'plain' });
    const none = staticCheck(
      { anyOf: [chain.anyOf[0]!, { name: 'other', files: ['/nonexistent'] }] },
      true,
    );
    expect(none).toEqual({
      status: 'fixable',
      detail: 'fancy: no-such-tool-xyz is not on PATH; other: /nonexistent is missing',
      hint: 'apt-get install xyz',
    });
  });
});
