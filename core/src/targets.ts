import { basename } from 'node:path';
import type { Target } from './api.js';
import { UserError } from './errors.js';
import { listPids, readCgroup, readCmdline, readStat } from './procfs.js';

export interface TargetRequest {
  pids?: readonly number[];
  services?: readonly string[];
}

const INTERPRETERS = /^(python[0-9.]*|perl|ruby|node|nodejs|sh|bash|dash|java|php[0-9.]*|uwsgi)$/;

/**
 * Resolves `--pid` and `--service` into root processes, once, for every tracer of a task.
 * Descendants are part of the target: plugins follow them.
 */
export class TargetResolver {
  resolve(req: TargetRequest): Target {
    const pids = req.pids ?? [];
    const services = req.services ?? [];
    if (pids.length === 0 && services.length === 0)
      return { kind: 'none', pids: [], description: 'system-wide' };
    const roots = new Set<number>();
    for (const pid of pids) {
      if (!Number.isSafeInteger(pid) || pid <= 0)
        throw new UserError(`--pid ${pid}: not a process id`);
      if (!readStat(pid)) throw new UserError(`--pid ${pid}: no such process`);
      roots.add(pid);
    }
    const parts: string[] = pids.map((p) => `pid ${p}`);
    for (const name of services) {
      const matched = this.matchService(name);
      if (matched.length === 0)
        throw new UserError(
          `--service ${name}: no running process or systemd unit matches "${name}"`,
        );
      for (const p of matched) roots.add(p);
      parts.push(`service ${name} (${matched.length} process${matched.length === 1 ? '' : 'es'})`);
    }
    return {
      kind: services.length > 0 ? 'service' : 'pid',
      pids: collapseToRoots([...roots]),
      description: parts.join(', '),
    };
  }

  /**
   * Processes of a service: by comm, by executable or script name (`python3 /usr/bin/nova-api`),
   * or by systemd unit through the cgroup (`devstack@n-api.service`, `nova-api.service`).
   */
  matchService(name: string): number[] {
    const unit = name.endsWith('.service') ? name : `${name}.service`;
    const self = process.pid;
    const out: number[] = [];
    for (const pid of listPids()) {
      if (pid === self) continue;
      const st = readStat(pid);
      if (!st || st.state === 'Z') continue;
      const argv = readCmdline(pid);
      if (argv.length === 0) continue; // kernel threads
      const exe = basename(argv[0] ?? '');
      const script = INTERPRETERS.test(exe)
        ? basename(argv.find((a, i) => i > 0 && !a.startsWith('-')) ?? '')
        : '';
      if (st.comm === name || exe === name || script === name) {
        out.push(pid);
        continue;
      }
      const cg = readCgroup(pid);
      if (cg.includes(`/${unit}\n`) || cg.includes(`/${unit}/`) || cg.includes(`/devstack@${unit}`))
        out.push(pid);
    }
    return collapseToRoots(out);
  }
}

/** Drops pids whose ancestor is in the set: descendants are followed anyway. */
export function collapseToRoots(pids: number[]): number[] {
  const set = new Set(pids);
  return pids
    .filter((pid) => {
      let p = readStat(pid)?.ppid ?? 0;
      for (let depth = 0; p > 1 && depth < 64; depth++) {
        if (set.has(p)) return false;
        p = readStat(p)?.ppid ?? 0;
      }
      return true;
    })
    .sort((a, b) => a - b);
}
