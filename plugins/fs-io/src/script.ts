/**
 * Builds the bpftrace program from the shipped template (scripts/fs-io.bt): the target
 * predicate, the seed (target pids and their already-open files), the flush interval, and the
 * optional latency and VFS parts.
 */

/** Maps printed at every flush, in this order (@comm first so the parser knows names). */
const BASE_MAPS = [
  '@comm',
  '@names',
  '@open_n',
  '@open_e',
  '@read_n',
  '@read_b',
  '@read_fd_n',
  '@read_fd_b',
  '@write_n',
  '@write_b',
  '@write_fd_n',
  '@write_fd_b',
  '@fsync_n',
  '@fdatasync_n',
];
const LATENCY_MAPS = ['@read_ns', '@read_h', '@write_ns', '@write_h'];
const VFS_MAPS = [
  '@vfs_reads',
  '@vfs_writes',
  '@vfs_opens',
  '@vfs_creates',
  '@vfs_unlinks',
  '@vfs_fsyncs',
];
/** Working state, cleared at END so that bpftrace does not dump it on exit. */
const STATE_MAPS = [
  '@self',
  '@ready',
  '@tracked',
  '@parent',
  '@pathid',
  '@fdid',
  '@oname',
  '@dupfd',
  '@fdpair',
  '@xin',
  '@xout',
];
const LATENCY_STATE = ['@rts', '@wts'];

export interface ScriptSeed {
  /** Pids of the target (roots and their current descendants); empty for system-wide. */
  pids: readonly number[];
  /** Files already open in the target: pid, fd, absolute path. */
  files: readonly { pid: number; fd: number; path: string }[];
  /** Names of the target's processes, so records carry one even without a later exec. */
  comms: readonly { pid: number; comm: string }[];
}

export interface ScriptOptions {
  systemWide: boolean;
  intervalMs: number;
  latency: boolean;
  vfs: boolean;
  /**
   * Read the fd of reads and writes from the user registers saved at syscall entry (x86-64
   * layout, found through BTF) instead of saving it in an entry probe.
   */
  regs: boolean;
}

/**
 * Keeps the template lines that apply: `// #if fdentry|enterprobe` / `// #else` / `// #endif`
 * blocks (not nested), and lines ending in tags (`// latency`, `// vfs fdentry`) whose tags all
 * apply.
 */
export function selectLines(
  template: string,
  o: Pick<ScriptOptions, 'latency' | 'vfs' | 'regs'>,
): string {
  const on: Record<string, boolean> = {
    latency: o.latency,
    vfs: o.vfs,
    fdentry: !o.regs,
    enterprobe: !o.regs || o.latency,
  };
  const out: string[] = [];
  let keep = true;
  let condition = true;
  for (const line of template.split('\n')) {
    const directive = /^\s*\/\/ #(if (\w+)|else|endif)\s*$/.exec(line);
    if (directive) {
      if (directive[2] !== undefined) condition = on[directive[2]] ?? false;
      if (directive[1] === 'else') condition = !condition;
      keep = directive[1] === 'endif' ? true : condition;
      continue;
    }
    const tags = /\/\/ ((?:latency|vfs|fdentry)(?: (?:latency|vfs|fdentry))*)\s*$/.exec(line)?.[1];
    if (keep && (tags === undefined || tags.split(' ').every((t) => on[t]))) out.push(line);
  }
  return out.join('\n');
}

/** A string literal bpftrace accepts; undefined when the text can't be written safely. */
export function bpftraceString(text: string): string | undefined {
  // bpftrace 0.17 string literals know \" \\ \n \t; anything unprintable is skipped instead.
  if (!/^[\x20-\x7e]*$/.test(text)) return undefined;
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

export function printedMaps(o: Pick<ScriptOptions, 'latency' | 'vfs' | 'regs'>): string[] {
  return [
    ...BASE_MAPS,
    ...(o.latency ? LATENCY_MAPS : []),
    ...(o.vfs ? VFS_MAPS : []),
    ...(o.regs ? ['@regs_miss'] : []),
  ];
}

export function buildScript(template: string, seed: ScriptSeed, o: ScriptOptions): string {
  const seedLines: string[] = [];
  for (const pid of seed.pids) seedLines.push(`@tracked[${pid}] = 1;`);
  for (const { pid, comm } of seed.comms) {
    const lit = bpftraceString(comm);
    if (lit) seedLines.push(`@comm[${pid}] = ${lit};`);
  }
  const ids = new Map<string, number>();
  for (const f of seed.files) {
    // bpftrace 0.17 refuses string literals over 64 bytes, but not printf formats: the names of
    // seeded files are printed as `@names` lines for the parser, and the kernel only keeps ids.
    // `%` can't be escaped in a format there, so such a path stays unnamed.
    const lit = bpftraceString(f.path);
    if (!lit || f.path.includes('%')) continue;
    // Seed ids are small numbers from 2 (1 means "not a named file"); ids given in the kernel
    // are nanosecond timestamps, far above.
    let id = ids.get(f.path);
    if (id === undefined) {
      id = ids.size + 2;
      ids.set(f.path, id);
      seedLines.push(`printf("@names[${id}]: ${lit.slice(1, -1)}\\n");`);
    }
    seedLines.push(`@fdid[${f.pid}, ${f.fd}] = ${id};`);
  }
  const maps = printedMaps(o);
  const print = maps.map((m) => `print(${m});`).join(' ');
  const clear = [
    ...maps,
    ...STATE_MAPS,
    ...(o.latency ? LATENCY_STATE : []),
    ...(o.regs ? [] : ['@rfd', '@wfd']),
  ]
    .map((m) => `clear(${m});`)
    .join(' ');
  return selectLines(template, o)
    .replaceAll('@@TRACKED@@', o.systemWide ? '1' : '@tracked[pid]')
    .replace('@@SEED@@', seedLines.join('\n  '))
    .replace('@@INTERVAL_MS@@', String(Math.max(1, Math.round(o.intervalMs))))
    .replaceAll('@@PRINT@@', print)
    .replace('@@CLEAR@@', clear);
}
