/**
 * Pure parsers for the /proc files the sampler reads (text in, numbers out), so they can be
 * tested on real file contents. Formats: proc(5), Documentation/filesystems/proc.rst and
 * Documentation/admin-guide/iostats.rst of the Linux kernel.
 *
 * No imports: the sampler runs alone.
 */

/** Modes of the `cpu` line of /proc/stat, in order. guest and guest_nice are left out: the
 * kernel already counts them inside user and nice. */
export const CPU_MODES = [
  'user',
  'nice',
  'system',
  'idle',
  'iowait',
  'irq',
  'softirq',
  'steal',
] as const;

export interface KernelStat {
  /** Ticks (USER_HZ) per mode of the aggregate `cpu` line. */
  cpu: Record<(typeof CPU_MODES)[number], number>;
  contextSwitches: number;
  forks: number;
  interrupts: number;
  procsRunning: number;
  procsBlocked: number;
}

export function parseKernelStat(text: string): KernelStat {
  const out: KernelStat = {
    cpu: { user: 0, nice: 0, system: 0, idle: 0, iowait: 0, irq: 0, softirq: 0, steal: 0 },
    contextSwitches: 0,
    forks: 0,
    interrupts: 0,
    procsRunning: 0,
    procsBlocked: 0,
  };
  for (const line of text.split('\n')) {
    const f = line.split(/\s+/);
    switch (f[0]) {
      case 'cpu':
        CPU_MODES.forEach((m, i) => (out.cpu[m] = Number(f[i + 1] ?? 0) || 0));
        break;
      case 'ctxt':
        out.contextSwitches = Number(f[1]);
        break;
      case 'processes':
        out.forks = Number(f[1]);
        break;
      case 'intr':
        out.interrupts = Number(f[1]);
        break;
      case 'procs_running':
        out.procsRunning = Number(f[1]);
        break;
      case 'procs_blocked':
        out.procsBlocked = Number(f[1]);
        break;
    }
  }
  return out;
}

export interface VmStat {
  /** Page faults of all kinds (pgfault counts major ones too). */
  faults: number;
  majorFaults: number;
  swapIn: number;
  swapOut: number;
}

/** Selected counters of /proc/vmstat (`name value` lines). */
export function parseVmstat(text: string): VmStat {
  const out: VmStat = { faults: 0, majorFaults: 0, swapIn: 0, swapOut: 0 };
  for (const line of text.split('\n')) {
    const sp = line.indexOf(' ');
    const n = Number(line.slice(sp + 1));
    switch (line.slice(0, sp)) {
      case 'pgfault':
        out.faults = n;
        break;
      case 'pgmajfault':
        out.majorFaults = n;
        break;
      case 'pswpin':
        out.swapIn = n;
        break;
      case 'pswpout':
        out.swapOut = n;
        break;
    }
  }
  return out;
}

/** /proc/meminfo as bytes per key (values given in kB are multiplied by 1024). */
export function parseMeminfo(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([\w()]+):\s+(\d+)(\s+kB)?/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]) * (m[3] ? 1024 : 1));
  }
  return out;
}

export function parseLoadavg(text: string): [number, number, number] {
  const f = text.trim().split(/\s+/);
  return [Number(f[0]), Number(f[1]), Number(f[2])];
}

export interface DiskStat {
  readOps: number;
  readSectors: number;
  readMs: number;
  writeOps: number;
  writeSectors: number;
  writeMs: number;
  inflight: number;
  ioMs: number;
}

/** /proc/diskstats per device name. Sectors are always 512 bytes there, whatever the device. */
export function parseDiskstats(text: string): Map<string, DiskStat> {
  const out = new Map<string, DiskStat>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 14) continue;
    const n = (i: number): number => Number(f[i]);
    out.set(f[2]!, {
      readOps: n(3),
      readSectors: n(5),
      readMs: n(6),
      writeOps: n(7),
      writeSectors: n(9),
      writeMs: n(10),
      inflight: n(11),
      ioMs: n(12),
    });
  }
  return out;
}

export interface NetStat {
  rxBytes: number;
  rxPackets: number;
  rxErrors: number;
  rxDrops: number;
  txBytes: number;
  txPackets: number;
  txErrors: number;
  txDrops: number;
}

/** /proc/net/dev per interface (two header lines, then `name: 8 receive and 8 transmit fields`). */
export function parseNetDev(text: string): Map<string, NetStat> {
  const out = new Map<string, NetStat>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0 || line.includes('|')) continue;
    const f = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .map(Number);
    if (f.length < 16) continue;
    out.set(line.slice(0, colon).trim(), {
      rxBytes: f[0]!,
      rxPackets: f[1]!,
      rxErrors: f[2]!,
      rxDrops: f[3]!,
      txBytes: f[8]!,
      txPackets: f[9]!,
      txErrors: f[10]!,
      txDrops: f[11]!,
    });
  }
  return out;
}

/** Shell-style glob (`*`, `?`) to an anchored RegExp, for the devices/interfaces filters. */
export function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}
