import type { Target, TargetRoot } from './api.js';
import { UserError } from './errors.js';
import {
  ancestors,
  processTree,
  readCgroup,
  readCmdline,
  readStat,
  scanProcesses,
  type ProcStat,
} from './procfs.js';
import { serviceNames } from './service-names.js';

export interface TargetRequest {
  pids?: readonly number[];
  services?: readonly string[];
}

/**
 * Resolves `--pid` and `--service` into root processes, once, for every tracer of a task.
 * Descendants are part of the target: plugins follow them. Each root is named by pid and start
 * time (a pid alone may be recycled) and carries the service name reports label its tree with.
 */
export class TargetResolver {
  resolve(req: TargetRequest): Target {
    const pids = req.pids ?? [];
    const services = req.services ?? [];
    if (pids.length === 0 && services.length === 0)
      return { kind: 'none', pids: [], description: 'system-wide' };
    const named = new Map<number, string | undefined>();
    for (const pid of pids) {
      if (!Number.isSafeInteger(pid) || pid <= 0)
        throw new UserError(`--pid ${pid}: not a process id`);
      const st = readStat(pid);
      if (!st) throw new UserError(`--pid ${pid}: no such process`);
      if (!named.has(pid)) named.set(pid, serviceNames(readCmdline(pid), st.comm).primary);
    }
    const parts: string[] = pids.map((p) => `pid ${p}`);
    for (const name of services) {
      const matched = this.matchService(name);
      if (matched.length === 0)
        throw new UserError(
          `--service ${name}: no running process or systemd unit matches "${name}"`,
        );
      for (const p of matched) if (!named.get(p)) named.set(p, name);
      // Counted with their descendants: `--service keystone` is a uwsgi master and its workers.
      const n = treeSize(matched);
      parts.push(`service ${name} (${n} process${n === 1 ? '' : 'es'})`);
    }
    const roots: TargetRoot[] = [];
    for (const pid of collapseToRoots([...named.keys()])) {
      const st = readStat(pid);
      if (!st) continue; // exited while resolving
      const service = named.get(pid);
      roots.push({ pid, startTime: st.startTime, ...(service ? { service } : {}) });
    }
    if (roots.length === 0)
      throw new UserError(`${parts.join(', ')}: every matched process exited while resolving`);
    return {
      kind: services.length > 0 ? 'service' : 'pid',
      pids: roots.map((r) => r.pid),
      roots,
      description: parts.join(', '),
    };
  }

  /**
   * Processes of a service (roots only: their descendants, such as uwsgi workers, are followed).
   * A process matches by comm, executable, Python script (`python3 /usr/bin/nova-conductor`), the
   * app of its uwsgi ini (`--ini /etc/keystone/keystone-uwsgi.ini`: keystone,
   * keystone-wsgi-public), mod_wsgi group, gunicorn name or its own title (see serviceNames), or
   * by systemd unit through the cgroup (`devstack@n-api.service`, `n-api`, `nova-api.service`).
   */
  matchService(name: string): number[] {
    const unit = name.endsWith('.service') ? name : `${name}.service`;
    const self = process.pid;
    const out: number[] = [];
    const procs = scanProcesses();
    for (const [pid, st] of procs) {
      if (pid === self || st.state === 'Z') continue;
      const argv = readCmdline(pid);
      if (argv.length === 0) continue; // kernel threads
      if (serviceNames(argv, st.comm).all.includes(name)) {
        out.push(pid);
        continue;
      }
      const cg = readCgroup(pid);
      if (cg.includes(`/${unit}\n`) || cg.includes(`/${unit}/`) || cg.includes(`/devstack@${unit}`))
        out.push(pid);
    }
    return collapseToRoots(out, procs);
  }
}

/** How many processes the trees of these roots hold, the roots included. */
function treeSize(roots: readonly number[]): number {
  return processTree(roots).length;
}

/** Drops pids whose ancestor is in the set: descendants are followed anyway. */
export function collapseToRoots(
  pids: number[],
  procs: ReadonlyMap<number, ProcStat> = scanProcesses(),
): number[] {
  const set = new Set(pids);
  // init is no one's root: every process descends from it.
  return pids
    .filter((pid) => !ancestors(pid, procs).some((a) => a.pid > 1 && set.has(a.pid)))
    .sort((a, b) => a - b);
}
