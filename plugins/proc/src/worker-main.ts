/**
 * The proc plugin's worker: a standalone sampler of /proc (node's standard library, the core's
 * light /proc module and the ready line of `@scalpels/core/api`, which load nothing else).
 *
 *   node worker-main.js --interval-ms 1000 [--pid P[:START]]... [--name P=NAME]... [--children-only P]...
 *                   [--no-system] [--device GLOB]... [--interface GLOB]...
 *   node worker-main.js --check        read every source once, print what works, exit 0/1
 *
 * It takes a baseline reading, prints the ready line (`scalpels: ready`), then every interval (on a grid anchored at its
 * start, so it does not drift) prints one line per sample in the format of ./format.js: counters
 * as increases since the previous sample, gauges as levels. On SIGTERM or SIGINT it takes one
 * final sample, prints it and exits 0.
 */
import { readdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { announceReady } from '@scalpels/core/api';
import { formatSample, USER_HZ } from './format.js';
import {
  CPU_MODES,
  globToRegExp,
  parseDiskstats,
  parseKernelStat,
  parseLoadavg,
  parseMeminfo,
  parseNetDev,
  parseVmstat,
  type DiskStat,
  type KernelStat,
  type NetStat,
  type VmStat,
} from './procfs.js';
import {
  readIo,
  readProcFile as readText,
  readStat,
  readStatus,
  scanProcesses,
  type ProcessRef,
  type ProcStat,
  type ProcStatus,
} from '@scalpels/core/procfs';
import { TreeTracker, type MemberReading } from './tree.js';

const MS_PER_TICK = 1000 / USER_HZ;
const SECTOR_BYTES = 512;
/** Output queued for a reader that does not keep up, beyond which samples are skipped. */
const MAX_PENDING_BYTES = 256 << 10;

interface Config {
  intervalMs: number;
  pids: number[];
  /** The roots, with their start time when given (`--pid P:START`: a recycled P is not the root). */
  roots: (number | ProcessRef)[];
  /** Label `comm` to use for a root instead of its own comm (the workload of `scalpels run`). */
  names: Map<number, string>;
  /** Roots counted for their descendants only (see TreeTracker). */
  childrenOnly: Set<number>;
  system: boolean;
  devices: RegExp[] | undefined;
  interfaces: RegExp[] | undefined;
}

type Emit = (series: string, value: number, labels?: Record<string, string>) => void;

const warned = new Set<string>();
function warnOnce(key: string, message: string): void {
  if (warned.has(key)) return;
  warned.add(key);
  process.stderr.write(`proc sampler: ${message}\n`);
}

/** Increase of a monotonic counter; a counter that went back was reset (device re-created). */
function increase(now: number, before: number | undefined): number {
  if (before === undefined) return now;
  return now >= before ? now - before : now;
}

class SystemSampler {
  private stat: KernelStat | undefined;
  private vm: VmStat | undefined;
  private disks = new Map<string, DiskStat>();
  private nets = new Map<string, NetStat>();
  private first = true;
  private readonly wholeDisks: Set<string> | undefined;

  constructor(private readonly config: Config) {
    try {
      // Whole disks are the entries of /sys/block; partitions only appear below them.
      this.wholeDisks = new Set(readdirSync('/sys/block'));
    } catch {
      this.wholeDisks = undefined;
    }
  }

  private wantDisk(name: string): boolean {
    if (this.config.devices) return this.config.devices.some((re) => re.test(name));
    if (/^(loop|ram)\d+$/.test(name)) return false;
    return this.wholeDisks ? this.wholeDisks.has(name) : !/\d+p?\d+$/.test(name);
  }

  private wantInterface(name: string): boolean {
    return this.config.interfaces ? this.config.interfaces.some((re) => re.test(name)) : true;
  }

  sample(emit: Emit): void {
    const baseline = this.first;
    this.first = false;

    const statText = readText('/proc/stat');
    if (statText !== undefined) {
      const stat = parseKernelStat(statText);
      const before = this.stat;
      this.stat = stat;
      if (!baseline && before) {
        for (const mode of CPU_MODES)
          emit('kernel.cpu.time', increase(stat.cpu[mode], before.cpu[mode]) * MS_PER_TICK, {
            mode,
          });
        emit('kernel.context_switches', increase(stat.contextSwitches, before.contextSwitches));
        emit('kernel.forks', increase(stat.forks, before.forks));
        emit('kernel.interrupts', increase(stat.interrupts, before.interrupts));
      }
      if (!baseline) {
        emit('kernel.procs.running', stat.procsRunning);
        emit('kernel.procs.blocked', stat.procsBlocked);
      }
    } else warnOnce('stat', 'cannot read /proc/stat');

    const load = readText('/proc/loadavg');
    if (load !== undefined && !baseline) {
      const [l1, l5, l15] = parseLoadavg(load);
      emit('kernel.load', l1, { minutes: '1' });
      emit('kernel.load', l5, { minutes: '5' });
      emit('kernel.load', l15, { minutes: '15' });
    }

    const meminfo = readText('/proc/meminfo');
    if (meminfo !== undefined && !baseline) {
      const mem = parseMeminfo(meminfo);
      const total = mem.get('MemTotal') ?? 0;
      const available = mem.get('MemAvailable') ?? 0;
      emit('mem.total', total);
      emit('mem.free', mem.get('MemFree') ?? 0);
      emit('mem.available', available);
      emit('mem.used', total - available);
      emit('mem.buffers', mem.get('Buffers') ?? 0);
      emit('mem.cached', mem.get('Cached') ?? 0);
      emit('mem.shared', mem.get('Shmem') ?? 0);
      emit('mem.slab', mem.get('Slab') ?? 0);
      emit('mem.dirty', mem.get('Dirty') ?? 0);
      emit('mem.swap.total', mem.get('SwapTotal') ?? 0);
      emit('mem.swap.free', mem.get('SwapFree') ?? 0);
    }

    const vmText = readText('/proc/vmstat');
    if (vmText !== undefined) {
      const vm = parseVmstat(vmText);
      const before = this.vm;
      this.vm = vm;
      if (!baseline && before) {
        const major = increase(vm.majorFaults, before.majorFaults);
        emit('mem.faults.minor', Math.max(0, increase(vm.faults, before.faults) - major));
        emit('mem.faults.major', major);
        emit('mem.swap.in', increase(vm.swapIn, before.swapIn));
        emit('mem.swap.out', increase(vm.swapOut, before.swapOut));
      }
    }

    const diskText = readText('/proc/diskstats');
    if (diskText !== undefined) {
      const disks = parseDiskstats(diskText);
      const prev = this.disks;
      this.disks = new Map();
      for (const [name, d] of disks) {
        if (!this.wantDisk(name)) continue;
        this.disks.set(name, d);
        if (baseline) continue;
        // A device that appeared after the baseline counts from zero.
        const p = prev.get(name);
        const labels = { device: name };
        emit('disk.read.ops', increase(d.readOps, p?.readOps), labels);
        emit('disk.read.bytes', increase(d.readSectors, p?.readSectors) * SECTOR_BYTES, labels);
        emit('disk.read.time', increase(d.readMs, p?.readMs), labels);
        emit('disk.write.ops', increase(d.writeOps, p?.writeOps), labels);
        emit('disk.write.bytes', increase(d.writeSectors, p?.writeSectors) * SECTOR_BYTES, labels);
        emit('disk.write.time', increase(d.writeMs, p?.writeMs), labels);
        emit('disk.io.time', increase(d.ioMs, p?.ioMs), labels);
        emit('disk.inflight', d.inflight, labels);
      }
    }

    const netText = readText('/proc/net/dev');
    if (netText !== undefined) {
      const nets = parseNetDev(netText);
      const prev = this.nets;
      this.nets = new Map();
      for (const [name, n] of nets) {
        if (!this.wantInterface(name)) continue;
        this.nets.set(name, n);
        if (baseline) continue;
        const p = prev.get(name);
        const labels = { interface: name };
        emit('network.rx.bytes', increase(n.rxBytes, p?.rxBytes), labels);
        emit('network.rx.packets', increase(n.rxPackets, p?.rxPackets), labels);
        emit('network.rx.errors', increase(n.rxErrors, p?.rxErrors), labels);
        emit('network.rx.drops', increase(n.rxDrops, p?.rxDrops), labels);
        emit('network.tx.bytes', increase(n.txBytes, p?.txBytes), labels);
        emit('network.tx.packets', increase(n.txPackets, p?.txPackets), labels);
        emit('network.tx.errors', increase(n.txErrors, p?.txErrors), labels);
        emit('network.tx.drops', increase(n.txDrops, p?.txDrops), labels);
      }
    }
  }
}

function readMember(st: ProcStat): MemberReading | undefined {
  const dir = `/proc/${st.pid}`;
  const tasks = new Map<number, ProcStatus>();
  let rssBytes = 0;
  // A single-threaded process's status is its only thread's: skip listing its task folder.
  let tids: string[] = [String(st.pid)];
  if (st.threads !== 1) {
    try {
      tids = readdirSync(`${dir}/task`);
    } catch {
      return undefined;
    }
  }
  for (const tid of tids) {
    const status = st.threads === 1 ? readStatus(st.pid) : readStatus(st.pid, Number(tid));
    if (status === undefined) {
      if (st.threads === 1) return undefined;
      continue;
    }
    tasks.set(Number(tid), status);
    if (Number(tid) === st.pid) rssBytes = status.rss;
  }
  const io = readIo(st.pid);
  if (io === undefined && st.state !== 'Z')
    warnOnce(
      'io',
      `cannot read ${dir}/io (it needs root, or the same user, and a dumpable process): ` +
        'the read/write bytes of such processes are not counted',
    );
  let fds = 0;
  try {
    fds = readdirSync(`${dir}/fd`).length;
  } catch {
    if (st.state !== 'Z')
      warnOnce(
        'fd',
        `cannot list ${dir}/fd (it needs root or the same user): such open files are not counted`,
      );
  }
  return {
    stat: st,
    io,
    tasks,
    rssBytes,
    fds,
  };
}

class Sampler {
  private readonly system: SystemSampler | undefined;
  private readonly trees: TreeTracker | undefined;
  private readonly lines: string[] = [];
  private readonly names: Map<number, string>;
  private baselineDone = false;

  constructor(config: Config) {
    this.names = config.names;
    this.system = config.system ? new SystemSampler(config) : undefined;
    this.trees =
      config.pids.length > 0 ? new TreeTracker(config.roots, config.childrenOnly) : undefined;
  }

  /** One reading of everything; returns the lines to print (none on the baseline). */
  sample(): string {
    const ts = Date.now();
    this.lines.length = 0;
    const emit: Emit = (series, value, labels) =>
      void this.lines.push(formatSample(ts, series, value, labels));
    this.system?.sample(emit);
    if (this.trees) {
      // Every tree is reported on every sample, idle or not, so its series have no gaps.
      for (const tree of this.trees.update(scanProcesses(), readMember)) this.emitTree(emit, tree);
    }
    return this.lines.length > 0 ? this.lines.join('\n') + '\n' : '';
  }

  private emitTree(emit: Emit, tree: ReturnType<TreeTracker['update']>[number]): void {
    if (!this.baselineDone) return;
    const labels = { pid: String(tree.root), comm: this.names.get(tree.root) ?? tree.comm };
    const d = tree.delta;
    emit('proc.cpu.user', d.userTicks * MS_PER_TICK, labels);
    emit('proc.cpu.system', d.systemTicks * MS_PER_TICK, labels);
    emit('proc.io.read_bytes', d.readBytes, labels);
    emit('proc.io.write_bytes', d.writeBytes, labels);
    emit('proc.io.rchar', d.rchar, labels);
    emit('proc.io.wchar', d.wchar, labels);
    emit('proc.faults.minor', d.minorFaults, labels);
    emit('proc.faults.major', d.majorFaults, labels);
    emit('proc.ctxsw.voluntary', d.voluntary, labels);
    emit('proc.ctxsw.involuntary', d.involuntary, labels);
    emit('proc.rss', tree.gauges.rssBytes, labels);
    emit('proc.threads', tree.gauges.threads, labels);
    emit('proc.fds', tree.gauges.fds, labels);
    emit('proc.count', tree.gauges.count, labels);
  }

  /** The baseline: readings kept, nothing emitted. Returns the roots that could not be found. */
  baseline(pids: readonly number[]): number[] {
    this.sample();
    this.baselineDone = true;
    const tracked = new Set(this.trees?.trackedRoots ?? []);
    return pids.filter((p) => !tracked.has(p));
  }
}

function parseConfig(argv: string[]): Config & { check: boolean } {
  const { values } = parseArgs({
    args: argv,
    options: {
      'interval-ms': { type: 'string', default: '1000' },
      pid: { type: 'string', multiple: true, default: [] },
      name: { type: 'string', multiple: true, default: [] },
      'children-only': { type: 'string', multiple: true, default: [] },
      'no-system': { type: 'boolean', default: false },
      device: { type: 'string', multiple: true },
      interface: { type: 'string', multiple: true },
      check: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const intervalMs = Number(values['interval-ms']);
  if (!Number.isFinite(intervalMs) || intervalMs < 10)
    throw new Error(`bad --interval-ms ${values['interval-ms']}`);
  const roots = values.pid.map((p): number | ProcessRef => {
    const m = /^(\d+)(?::(\d+))?$/.exec(p);
    const n = Number(m?.[1]);
    if (!m || !Number.isSafeInteger(n) || n <= 0) throw new Error(`bad --pid ${p}`);
    return m[2] === undefined ? n : { pid: n, startTime: Number(m[2]) };
  });
  const pids = roots.map((r) => (typeof r === 'number' ? r : r.pid));
  const names = new Map<number, string>();
  for (const given of values.name) {
    const m = /^(\d+)=(.+)$/s.exec(given);
    if (!m) throw new Error(`bad --name ${given} (expected PID=NAME)`);
    names.set(Number(m[1]), m[2]!);
  }
  const childrenOnly = new Set(values['children-only'].map(Number));
  return {
    intervalMs,
    pids,
    roots,
    names,
    childrenOnly,
    system: !values['no-system'],
    devices: values.device?.map(globToRegExp),
    interfaces: values.interface?.map(globToRegExp),
    check: values.check,
  };
}

/** `--check`: can every source be read here? One line per source, exit 1 if a required one fails. */
function check(): number {
  const required = ['/proc/stat', '/proc/meminfo', '/proc/loadavg', '/proc/self/status'];
  const optional = ['/proc/vmstat', '/proc/diskstats', '/proc/net/dev', '/proc/self/io'];
  let failed = 0;
  for (const path of [...required, ...optional]) {
    const ok = readText(path) !== undefined;
    if (!ok && required.includes(path)) failed++;
    process.stdout.write(`${ok ? 'ok' : 'missing'}\t${path}\n`);
  }
  const self = readStat('self');
  if (!self) failed++;
  process.stdout.write(`${self ? 'ok' : 'unreadable or unparsable'}\t/proc/self/stat\n`);
  return failed === 0 ? 0 : 1;
}

function main(): void {
  let config: ReturnType<typeof parseConfig>;
  try {
    config = parseConfig(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`proc sampler: ${(e as Error).message}\n`);
    process.exit(2);
  }
  if (config.check) process.exit(check());

  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    // The reader went away: nothing left to do.
    process.exit(e.code === 'EPIPE' ? 0 : 1);
  });

  const sampler = new Sampler(config);
  let tick = 0;
  let timer: NodeJS.Timeout | undefined;
  let stopping = false;
  function stop(): void {
    if (stopping) return;
    stopping = true;
    clearTimeout(timer);
    const text = sampler.sample();
    process.stdout.write(text, () => process.exit(0));
  }
  // Installed before the baseline: a stop that arrives during it is handled once it is taken.
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  const start = Date.now();
  process.stdout.write(
    `# scalpels proc sampler interval_ms=${config.intervalMs} user_hz=${USER_HZ} system=${config.system}` +
      (config.pids.length ? ` pids=${config.pids.join(',')}` : '') +
      '\n',
  );
  const missing = sampler.baseline(config.pids);
  for (const pid of missing) warnOnce(`pid${pid}`, `target pid ${pid} does not exist: not traced`);
  announceReady();

  function schedule(): void {
    const now = Date.now();
    // The next point of the grid start + k * interval; points missed while busy are skipped.
    tick = Math.max(tick + 1, Math.ceil((now - start) / config.intervalMs));
    timer = setTimeout(onTick, start + tick * config.intervalMs - now);
  }
  function onTick(): void {
    if (stopping) return;
    // Writes to a pipe are asynchronous: when the reader stalls, skip readings instead of queueing
    // them. Counters lose nothing (the next sample's increases cover the longer interval).
    if (process.stdout.writableLength > MAX_PENDING_BYTES) {
      warnOnce('stalled', 'stdout is not being read: skipping samples until it drains');
    } else {
      const text = sampler.sample();
      if (text) process.stdout.write(text);
    }
    schedule();
  }
  schedule();
}

main();
