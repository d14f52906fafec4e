import { ERRNO_NAMES, SYSCALLS_GENERIC, SYSCALLS_X86_64 } from './tables.js';

/** The syscall table for a Node `process.arch` value (the bpftrace program states its arch). */
export function syscallTable(arch: string): Readonly<Record<number, string>> {
  return arch === 'x64' || arch === 'x86_64' ? SYSCALLS_X86_64 : SYSCALLS_GENERIC;
}

export function syscallName(table: Readonly<Record<number, string>>, nr: number): string {
  // rt_sigreturn forgets the syscall number (orig_ax / syscallno set to -1) before it returns.
  if (nr === -1) return 'rt_sigreturn';
  return table[nr] ?? `syscall_${nr}`;
}

export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `E${errno}`;
}
