/**
 * The bpftrace program: counts system calls in the kernel (per-CPU maps, no event per call),
 * and prints the cumulative maps every interval and once more at the end. The parser turns the
 * cumulative snapshots into increases, so nothing is lost between a print and a clear.
 */

import { WORKER_READY_LINE } from '@scalpels/core';
import { syscallTable } from './names.js';

/** How counts are keyed in the kernel. */
export type Grouping = 'process' | 'comm' | 'total';

export interface ProgramSpec {
  grouping: Grouping;
  /** Root pids to follow (with their descendants); empty (and no launcher) means system-wide. */
  roots: readonly { pid: number; comm: string }[];
  /** `scalpels run`'s launcher: its descendants are the workload, its own calls are left out. */
  launcher?: number;
  /** System-wide per process: names of the processes that exist at start (later ones are seen at fork and exec). */
  existing?: readonly { pid: number; comm: string }[];
  latency: boolean;
  /** Count exit and exit_group on entry (they never return); costs a probe on every call's entry. */
  exits: boolean;
  intervalMs: number;
  /** `process.arch` of the traced machine: says which syscall table numbers belong to. */
  arch: string;
}

/**
 * First line the program prints (the plugin API's ready line, then the program's header);
 * bpftrace prints it only once every probe is attached.
 */
export const READY_PREFIX = WORKER_READY_LINE;
/** The ready line of programs before the plugin API defined one: recorded output has it. */
export const LEGACY_READY_PREFIX = 'scalpels-syscalls ready';
export const END_LINE = 'scalpels-syscalls end';
export const TICK_LINE = 'scalpels-syscalls tick';

/** A bpftrace string literal; comm values come from /proc and may hold any byte. */
function literal(text: string): string {
  let out = '';
  for (const ch of text) {
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (ch < ' ' || ch === '\x7f') out += '?';
    else out += ch;
  }
  return `"${out}"`;
}

export function bpftraceProgram(spec: ProgramSpec): string {
  const targeted = spec.roots.length > 0 || spec.launcher !== undefined;
  const filter = targeted ? ' /@traced[pid]/' : '';
  const key = spec.grouping === 'process' ? 'pid, ' : spec.grouping === 'comm' ? 'comm, ' : '';
  const lines: string[] = [];
  const begin: string[] = [];
  for (const root of spec.roots) {
    begin.push(`  @traced[${root.pid}] = 1;`);
    if (spec.grouping === 'process') begin.push(`  @comm[${root.pid}] = ${literal(root.comm)};`);
  }
  if (spec.grouping === 'process' && !targeted)
    for (const p of spec.existing ?? []) begin.push(`  @comm[${p.pid}] = ${literal(p.comm)};`);
  begin.push(
    `  printf("${READY_PREFIX} arch=${spec.arch} grouping=${spec.grouping} latency=${spec.latency ? 1 : 0}\\n");`,
  );
  lines.push('BEGIN', '{', ...begin, '}', '');

  // Follow descendants: a fork by a traced process traces the child (threads too, which is
  // harmless: their tgid is traced already). Entries go when the thread or the process ends, so
  // a recycled pid is not counted.
  const tracksComm = spec.grouping === 'process';
  if (targeted) {
    lines.push(
      `tracepoint:sched:sched_process_fork /@traced[pid]${spec.launcher !== undefined ? ` || pid == ${spec.launcher}` : ''}/`,
      '{',
      '  @traced[args->child_pid] = 1;',
      ...(tracksComm ? ['  @comm[args->child_pid] = comm;'] : []),
      '}',
      '',
    );
  }
  if (targeted || spec.latency) {
    // A thread that exits inside a call (exit, exit_group, a fatal signal) leaves its entry time.
    lines.push(
      'tracepoint:sched:sched_process_exit',
      '{',
      ...(targeted
        ? [
            '  if (tid != pid) { delete(@traced[tid]); }',
            '  if (args->group_dead) { delete(@traced[pid]); }',
          ]
        : []),
      ...(spec.latency ? ['  delete(@start[tid]);'] : []),
      '}',
      '',
    );
  }
  if (tracksComm) {
    // Keep the name current after exec (the key stays the pid, so counts are not split by name).
    lines.push(
      `tracepoint:sched:sched_process_exec${filter}`,
      '{',
      '  @comm[pid] = comm;',
      '}',
      '',
    );
    if (!targeted)
      lines.push(
        'tracepoint:sched:sched_process_fork',
        '{',
        '  @comm[args->child_pid] = comm;',
        '}',
        '',
      );
  }
  if (spec.latency)
    lines.push(
      `tracepoint:raw_syscalls:sys_enter${filter}`,
      '{',
      '  @start[tid] = nsecs;',
      '}',
      '',
    );

  // Counted on return, where both the number and the result are known: one probe per call.
  const exitBody = [
    `  @calls[${key}args->id] = count();`,
    // id -1 is rt_sigreturn: it returns the restored registers of the interrupted code, not an error.
    '  if (args->ret < 0 && args->ret >= -4095 && args->id >= 0) {',
    `    @errors[${key}args->id, -args->ret] = count();`,
    '  }',
  ];
  if (spec.latency)
    exitBody.push(
      '  $start = @start[tid];',
      '  if ($start > 0) {',
      '    $ns = nsecs - $start;',
      `    @latency[${key}args->id] = hist($ns);`,
      `    @time_ns[${key}args->id] = sum($ns);`,
      '    delete(@start[tid]);',
      '  }',
    );
  // A new process or thread returns from clone/fork too, with 0: that is not a call of its own.
  const table = syscallTable(spec.arch);
  const forks = Object.entries(table)
    .filter(([, name]) => ['clone', 'clone3', 'fork', 'vfork'].includes(name))
    .map(([nr]) => `args->id != ${nr}`);
  const notChild = forks.length ? `(args->ret != 0 || (${forks.join(' && ')}))` : '';
  const exitFilter = [targeted ? '@traced[pid]' : '', notChild].filter((x) => x).join(' && ');
  lines.push(
    `tracepoint:raw_syscalls:sys_exit${exitFilter ? ` /${exitFilter}/` : ''}`,
    '{',
    ...exitBody,
    '}',
    '',
  );

  // exit and exit_group never return: count them on entry, through their own tracepoints. Any
  // syscalls:sys_enter_* tracepoint puts a probe on the entry of every system call (measured:
  // about 10% more per call), hence only when asked.
  if (spec.exits)
    for (const name of ['exit', 'exit_group'])
      lines.push(
        `tracepoint:syscalls:sys_enter_${name}${filter}`,
        '{',
        `  @calls[${key}args->__syscall_nr] = count();`,
        '}',
        '',
      );

  const prints = [
    ...(tracksComm ? ['  print(@comm);'] : []),
    '  print(@calls);',
    '  print(@errors);',
    ...(spec.latency ? ['  print(@time_ns);', '  print(@latency);'] : []),
  ];
  lines.push(`interval:ms:${Math.max(1, Math.round(spec.intervalMs))}`, '{', ...prints, '}', '');
  // bpftrace notices a stop signal that did not land in its epoll_wait only when it reads its next
  // event: with a long interval, a tick keeps that delay under a second (the stop grace is 10 s).
  if (spec.intervalMs > 1000)
    lines.push('interval:s:1', '{', `  printf("${TICK_LINE}\\n");`, '}', '');
  // END runs after the probes are detached: this last snapshot holds the final totals. The maps
  // are cleared afterwards so bpftrace's automatic dump at exit adds nothing.
  const clears = ['traced', 'comm', 'start', 'calls', 'errors', 'time_ns', 'latency'].filter(
    (m) =>
      (m !== 'traced' || targeted) &&
      (m !== 'comm' || tracksComm) &&
      (!['start', 'time_ns', 'latency'].includes(m) || spec.latency),
  );
  lines.push(
    'END',
    '{',
    ...prints,
    `  printf("${END_LINE}\\n");`,
    ...clears.map((m) => `  clear(@${m});`),
    '}',
  );
  return lines.join('\n') + '\n';
}
