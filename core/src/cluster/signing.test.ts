import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ClusterKey } from './signing.js';

const dir = mkdtempSync(join(tmpdir(), 'scalpels-signing-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function keyFile(name: string, content = randomBytes(32).toString('base64'), mode = 0o600) {
  const f = join(dir, name);
  writeFileSync(f, `${content}\n`, { mode });
  chmodSync(f, mode);
  return f;
}

const request = {
  id: 'r-1',
  node: 'compute-1',
  method: 'start',
  params: '{"tracers":[{"name":"proc"}]}',
  ts: '1700000000000',
  from: 'ctl:42',
};

describe('ClusterKey', () => {
  it('verifies what it signed, and nothing with one field changed or another key', () => {
    const key = ClusterKey.fromFile(keyFile('a.key'));
    const other = ClusterKey.fromFile(keyFile('b.key'));
    const signed = key.signRequest(request);
    expect(key.verifyRequest(signed)).toBe(true);
    expect(other.verifyRequest(signed)).toBe(false);
    for (const field of Object.keys(request) as (keyof typeof request)[])
      expect(key.verifyRequest({ ...signed, [field]: `${signed[field]}x` }), field).toBe(false);
    expect(key.verifyRequest({ ...signed, sig: undefined })).toBe(false);
    expect(key.verifyRequest({ ...signed, sig: 'zz' })).toBe(false);
    // Fields cannot be shifted into one another (the signed text is a JSON array).
    expect(key.verifyRequest({ ...signed, method: 'sta', params: `rt${signed.params}` })).toBe(
      false,
    );
    const answer = key.signAnswer({ id: 'r-1', node: 'compute-1', body: '{"result":1}', ts: 5 });
    expect(key.verifyAnswer(answer)).toBe(true);
    expect(key.verifyAnswer({ ...answer, body: '{"result":2}' })).toBe(false);
    expect(key.verifyAnswer({ ...answer, id: 'r-2' })).toBe(false);
    expect(other.verifyAnswer(answer)).toBe(false);
    expect(key.verifyAnswer(JSON.parse('{"result":1}'))).toBe(false);
  });

  it('refuses a key file that is short, readable by others, a symlink, or owned by another user', () => {
    expect(() => ClusterKey.fromFile(keyFile('short.key', 'short'))).toThrow(
      /shorter than 32 bytes/,
    );
    expect(() => ClusterKey.fromFile(keyFile('open.key', undefined, 0o640))).toThrow(
      /has mode 640: chmod 600/,
    );
    const link = join(dir, 'link.key');
    symlinkSync(keyFile('target.key'), link);
    expect(() => ClusterKey.fromFile(link)).toThrow(/is a symbolic link/);
    expect(() => ClusterKey.fromFile(join(dir, 'missing.key'))).toThrow(/ENOENT/);
    if (process.getuid?.() === 0) {
      const foreign = keyFile('foreign.key');
      chownSync(foreign, 65534, 65534);
      expect(() => ClusterKey.fromFile(foreign)).toThrow(/owned by uid 65534, not root/);
    }
  });
});
