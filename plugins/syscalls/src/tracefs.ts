import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const TRACEFS = '/sys/kernel/tracing';
/** Where older tools and kernels expect tracefs (under debugfs). */
export const DEBUGFS_TRACING = '/sys/kernel/debug/tracing';

/** The tracefs folder that holds the syscall tracepoints, when one is mounted. */
export function mountedTracefs(): string | undefined {
  return [TRACEFS, DEBUGFS_TRACING].find((d) => existsSync(`${d}/events/raw_syscalls/sys_exit`));
}

/** Whether the running kernel can mount tracefs at all. */
export function kernelHasTracefs(): boolean {
  try {
    return /\btracefs$/m.test(readFileSync('/proc/filesystems', 'utf8'));
  } catch {
    return false;
  }
}

export function isMountPoint(dir: string): boolean {
  try {
    return readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[1] === dir);
  } catch {
    return false;
  }
}

export async function mountTracefs(dir: string): Promise<void> {
  await run('mount', ['-t', 'tracefs', 'nodev', dir]);
}

/** Unmounts when still mounted; a busy tracefs (someone else is using it) is left alone. */
export async function unmountTracefs(dir: string): Promise<void> {
  if (!isMountPoint(dir)) return;
  try {
    await run('umount', [dir]);
  } catch (e) {
    if (!/busy/i.test(String((e as { stderr?: unknown }).stderr ?? ''))) throw e;
  }
}

/** The kernel lockdown mode (`none`, `integrity`, `confidentiality`), when the LSM is there. */
export function lockdownMode(): string | undefined {
  try {
    return /\[(\w+)\]/.exec(readFileSync('/sys/kernel/security/lockdown', 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}
