// Open files of a process; the rest of /proc is read through @scalpels/core/procfs.
import { readdirSync, readlinkSync } from 'node:fs';

/** Open descriptors of a process that name a file by absolute path (pipes, sockets left out). */
export function openFiles(pid: number, limit: number): { fd: number; path: string }[] {
  const out: { fd: number; path: string }[] = [];
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const name of fds) {
    if (out.length >= limit) break;
    try {
      const path = readlinkSync(`/proc/${pid}/fd/${name}`);
      if (path.startsWith('/'))
        out.push({ fd: Number(name), path: path.replace(/ \(deleted\)$/, '') });
    } catch {
      // closed meanwhile
    }
  }
  return out;
}
