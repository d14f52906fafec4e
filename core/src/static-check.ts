import { existsSync } from 'node:fs';
import { release } from 'node:os';
import type { CheckResult } from './api.js';
import { which } from './check-context.js';

/** A way to work, as declared in package.json (`scalpels.requires.anyOf`). */
export interface StaticAlternative {
  /** Technique name shown when this alternative is the one that works. */
  name?: string;
  root?: boolean;
  /** Paths that must exist (`/proc/stat`, `/sys/kernel/btf/vmlinux`). */
  files?: string[];
  /** Programs that must be on PATH. */
  binaries?: string[];
  /** How to make it available, e.g. `apt-get install bpftrace`. */
  install?: string;
}

/**
 * What a plugin needs, declared in its package.json (`"scalpels": {"requires": {...}}`) so that
 * `scalpels plugins list` can tell whether it works here without importing it. The plugin's
 * `check()` (run by doctor and before starting) stays the authority.
 */
export interface StaticRequires extends StaticAlternative {
  /** Ordered alternatives (a technique chain): the first whose needs are met is used. */
  anyOf?: StaticAlternative[];
}

/** `{release}` in a declared path or hint stands for the running kernel's release (`uname -r`). */
const expand = (text: string): string => text.replaceAll('{release}', release());

function missing(a: StaticAlternative, isRoot: boolean): string | undefined {
  if (a.root && !isRoot) return 'needs root';
  const file = a.files?.map(expand).find((f) => !existsSync(f));
  if (file) return `${file} is missing`;
  const bin = a.binaries?.find((b) => !which(b));
  if (bin) return `${bin} is not on PATH`;
  return undefined;
}

/** Evaluates declared requirements with cheap probes only (files and PATH): nothing is spawned. */
export function staticCheck(req: StaticRequires, isRoot = process.getuid?.() === 0): CheckResult {
  const base = missing(req, isRoot);
  if (base)
    return req.install
      ? { status: 'fixable', detail: base, hint: expand(req.install) }
      : { status: 'unavailable', detail: base };
  if (!req.anyOf?.length)
    return { status: 'ok', detail: 'requirements met (scalpels doctor runs the full check)' };
  const why: string[] = [];
  for (const alt of req.anyOf) {
    const m = missing(alt, isRoot);
    if (!m)
      return { status: 'ok', detail: `${alt.name ?? 'default'} available`, technique: alt.name };
    why.push(`${alt.name ?? 'default'}: ${m}`);
  }
  const fix = req.anyOf.find((a) => a.install && !(a.root && !isRoot));
  return fix
    ? { status: 'fixable', detail: why.join('; '), hint: expand(fix.install!) }
    : { status: 'unavailable', detail: why.join('; ') };
}
