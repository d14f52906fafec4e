import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { validateOptions } from './options.js';
import { capability, trustedScratchDir } from './testing/index.js';
import { nodeConfig, readTrustedFile, trustProblem, trustedFile } from './trust.js';

const root = capability('root', process.getuid?.() === 0, 'the trust rules are root’s');
const allow = { allowScripts: true, allowGuru: false };

describe.runIf(root)('trustedFile', () => {
  const dir = trustedScratchDir('trust-');
  const shared = mkdtempSync(join(tmpdir(), 'scalpels-trust-'));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(shared, { recursive: true, force: true });
  });
  const file = (name: string, mode: number, text = 'x\n', where = dir): string => {
    const p = join(where, name);
    writeFileSync(p, text, { mode });
    chmodSync(p, mode);
    return p;
  };

  it('credentials: 0600/0640 root files in /etc/scalpels, no symlink, nothing else', () => {
    expect(trustProblem(file('a.pw', 0o600), 'credential')).toBeUndefined();
    expect(trustProblem(file('b.pw', 0o640), 'credential')).toBeUndefined();
    expect(trustProblem(file('c.pw', 0o644), 'credential')).toMatch(/mode 0644/);
    expect(trustProblem(file('d.pw', 0o660), 'credential')).toMatch(/mode 0660/);
    const link = join(dir, 'link.pw');
    symlinkSync(join(dir, 'a.pw'), link);
    expect(trustProblem(link, 'credential')).toMatch(/symbolic link/);
    const theirs = file('e.pw', 0o600);
    chownSync(theirs, 65534, 65534);
    expect(trustProblem(theirs, 'credential')).toMatch(/owned by uid 65534/);
    expect(trustProblem('/etc/shadow', 'credential')).toMatch(/read only from \/etc\/scalpels\//);
    expect(trustProblem('relative.pw', 'credential')).toBe('not an absolute path');
    expect(readTrustedFile(join(dir, 'a.pw'), { label: 't' })).toBe('x\n');
    expect(() => readTrustedFile('/etc/shadow', { label: 'L' })).toThrow(
      /^L: "\/etc\/shadow" refused: as root/,
    );
  });

  it('scripts: only when allowed, root files in root folders none else can write', () => {
    const stp = file('s.stp', 0o644);
    expect(trustProblem(stp, 'script')).toMatch(/--allow-scripts/);
    expect(trustProblem(stp, 'script', allow)).toBeUndefined();
    expect(trustProblem(file('w.stp', 0o664), 'script', allow)).toMatch(/group- or world-writable/);
    // The shared /tmp is world-writable (sticky): nothing in it is trusted.
    expect(trustProblem(file('t.stp', 0o644, 'x', shared), 'script', allow)).toMatch(
      /folder \/tmp is group- or world-writable/,
    );
    const sub = join(dir, 'tapsets');
    mkdirSync(sub, { mode: 0o755 });
    expect(trustProblem(sub, 'folder', allow)).toBeUndefined();
    const bad = file('bad.stp', 0o644, 'x', sub);
    chownSync(bad, 65534, 65534);
    expect(trustProblem(sub, 'folder', allow)).toMatch(/bad\.stp is owned by uid 65534/);
  });

  it('programs: the system rabbitmqctl through its symlink; not a file others could change', () => {
    expect(trustProblem('/bin/sh', 'program')).toBeUndefined();
    expect(trustProblem(file('noexec', 0o644), 'program')).toBe('is not executable');
    expect(trustProblem(file('x.sh', 0o755, '#!/bin/sh\n', shared), 'program')).toMatch(/\/tmp/);
  });

  it('validateOptions enforces file options and names retired ones', () => {
    const manifest = {
      name: 'p',
      options: { pw: { type: 'file', trust: 'credential', description: '' } } as const,
      retiredOptions: { prog: 'set "prog" in /etc/scalpels/config.json' },
    };
    expect(validateOptions(manifest, { pw: join(dir, 'a.pw') }).pw).toBe(join(dir, 'a.pw'));
    expect(() => validateOptions(manifest, { pw: '/etc/shadow' })).toThrow(
      /^p: option "pw": "\/etc\/shadow" refused: /,
    );
    expect(() => validateOptions(manifest, { prog: '/tmp/x' })).toThrow(
      'p: option "prog" is no longer accepted: set "prog" in /etc/scalpels/config.json',
    );
    expect(() => trustedFile('/nope', 'credential', { label: 'L' })).toThrow(
      'L: "/nope" refused: does not exist',
    );
  });

  it('node configuration: used only when root protected it', () => {
    const cfg = file(
      'config.json',
      0o644,
      JSON.stringify({ trustedDirs: [shared], plugins: { p: { k: 'v' } } }),
    );
    expect(nodeConfig({ SCALPELS_CONFIG: cfg }).plugins.p).toEqual({ k: 'v' });
    chmodSync(cfg, 0o666);
    expect(() => nodeConfig({ SCALPELS_CONFIG: cfg })).toThrow(/ignored: .*writable/);
    expect(nodeConfig({ SCALPELS_CONFIG: join(dir, 'absent.json') })).toEqual({
      trustedDirs: [],
      plugins: {},
    });
  });
});
