/**
 * Accounting for target process trees, fed one snapshot of /proc per interval.
 *
 * A tree is a root pid and every process descended from it, including ones spawned after the
 * sampler started. Membership is sticky (pid + start time): a daemon reparented to init stays in
 * its tree. Counters are cumulative values C(t) per tree, and what is emitted is the increase of
 * C since the previous sample:
 *
 *   C(t) = Σ live members (own value + value of children it waited for) + departed
 *
 * CPU ticks (utime+cutime, stime+cstime), page faults and /proc/PID/io all move into the parent when it
 * waits for a child, so a member that exits and is reaped by a member keeps counting through its
 * reaper. A member whose reaper is outside the tree (init, a subreaper, another root's tree) is
 * frozen at its last reading into `departed` (and, when the reaper is in another target tree,
 * subtracted there so the trees never count it twice; the CPU it used after its last reading is
 * moved back to its own tree when the reaper reaped only it in the interval). Context switches are per thread and never
 * move to a parent, so every thread that disappears is frozen. Emitted totals only grow (a
 * high-water mark): a race that loses a reaping can make a total lag, never go back.
 *
 * Parent links follow the core's one rule for pid reuse (parentOf): a process younger than its
 * child is not its parent.
 *
 * No imports but @scalpels/core/procfs: the sampler runs alone.
 */
import {
  findRoot,
  parentOf,
  type ProcessRef,
  type ProcIo,
  type ProcStat,
  type ProcStatus,
} from '@scalpels/core/procfs';

/** Counters that move into the reaper when a child is waited for. */
export interface Inherited {
  userTicks: number;
  systemTicks: number;
  rchar: number;
  wchar: number;
  readBytes: number;
  writeBytes: number;
  minorFaults: number;
  majorFaults: number;
}

/** Counters kept per thread that vanish with the thread. */
export interface PerThread {
  voluntary: number;
  involuntary: number;
}

export type TreeCounters = Inherited & PerThread;

export interface TreeGauges {
  /** Processes in the tree that are not zombies. */
  count: number;
  threads: number;
  rssBytes: number;
  fds: number;
}

export interface TreeReading {
  root: number;
  comm: string;
  /** Increase of each counter since the previous reading (all zero on the baseline). */
  delta: TreeCounters;
  gauges: TreeGauges;
}

/** What the sampler reads of one process of a tree. */
export interface MemberReading {
  stat: ProcStat;
  /** undefined when unreadable (another user's process without root, or gone mid-read). */
  io?: ProcIo;
  /** Per thread id; empty when unreadable. */
  tasks: Map<number, ProcStatus>;
  rssBytes: number;
  fds: number;
}

/** Reads the details of a process that belongs to a tree; undefined when it vanished. */
export type ReadMember = (stat: ProcStat) => MemberReading | undefined;

interface Member {
  key: string;
  pid: number;
  ppid: number;
  root: number;
  inherited: Inherited;
  /** cutime and cstime alone: what the children it waited for used. */
  reapedUser: number;
  reapedSystem: number;
  threads: Map<number, PerThread>;
}

interface Tree {
  root: number;
  comm: string;
  /** Start time of the root process, fixed at the first reading (pid reuse guard). */
  startTime: number;
  departed: TreeCounters;
  emitted: TreeCounters | undefined;
}

const zeroInherited = (): Inherited => ({
  userTicks: 0,
  systemTicks: 0,
  rchar: 0,
  wchar: 0,
  readBytes: 0,
  writeBytes: 0,
  minorFaults: 0,
  majorFaults: 0,
});
const zeroCounters = (): TreeCounters => ({ ...zeroInherited(), voluntary: 0, involuntary: 0 });
const INHERITED_KEYS = Object.keys(zeroInherited()) as (keyof Inherited)[];
const COUNTER_KEYS = Object.keys(zeroCounters()) as (keyof TreeCounters)[];

export class TreeTracker {
  private readonly trees = new Map<number, Tree>();
  private members = new Map<string, Member>();
  private started = false;

  /**
   * @param childrenOnly roots that stand for their descendants only (the launcher of
   *   `scalpels run`): their own CPU time, threads, memory and files are left out, while what
   *   their reaped children used still counts through their cutime/cstime and /proc/PID/io.
   */
  constructor(
    private readonly roots: readonly (number | ProcessRef)[],
    private readonly childrenOnly: ReadonlySet<number> = new Set(),
  ) {}

  /** Roots seen at the first reading; roots that did not exist then are never tracked. */
  get trackedRoots(): number[] {
    return [...this.trees.keys()];
  }

  /**
   * Takes one snapshot: `procs` is every process of /proc (pid → stat). Returns one reading per
   * tracked tree; the first call is the baseline and returns deltas of zero.
   */
  update(procs: ReadonlyMap<number, ProcStat>, read: ReadMember): TreeReading[] {
    const baseline = !this.started;
    if (baseline) {
      this.started = true;
      for (const root of this.roots) {
        // A root given with its start time is not found once its pid went to another process.
        const st = findRoot(root, procs);
        if (!st || this.trees.has(st.pid)) continue;
        this.trees.set(st.pid, {
          root: st.pid,
          comm: st.comm,
          startTime: st.startTime,
          departed: zeroCounters(),
          emitted: undefined,
        });
      }
    }

    const rootOf = this.assignRoots(procs);
    const next = new Map<string, Member>();
    const gauges = new Map<number, TreeGauges>();
    for (const tree of this.trees.values())
      gauges.set(tree.root, { count: 0, threads: 0, rssBytes: 0, fds: 0 });

    for (const [pid, root] of rootOf) {
      const st = procs.get(pid)!;
      const reading = read(st);
      if (!reading) continue;
      const key = memberKey(st);
      const old = this.members.get(key);
      const tree = this.trees.get(root)!;
      const self = !(pid === root && this.childrenOnly.has(root));
      const inherited: Inherited = {
        userTicks: (self ? st.utime : 0) + st.cutime,
        systemTicks: (self ? st.stime : 0) + st.cstime,
        // /proc/PID/io can be unreadable for a moment (exec in progress): keep the last value.
        rchar: reading.io?.rchar ?? old?.inherited.rchar ?? 0,
        wchar: reading.io?.wchar ?? old?.inherited.wchar ?? 0,
        readBytes: reading.io?.readBytes ?? old?.inherited.readBytes ?? 0,
        writeBytes: reading.io?.writeBytes ?? old?.inherited.writeBytes ?? 0,
        minorFaults: (self ? st.minflt : 0) + st.cminflt,
        majorFaults: (self ? st.majflt : 0) + st.cmajflt,
      };
      const threads = new Map<number, PerThread>();
      if (self)
        for (const [tid, t] of reading.tasks)
          threads.set(tid, { voluntary: t.voluntary, involuntary: t.involuntary });
      if (old) {
        for (const [tid, t] of old.threads) {
          const now = threads.get(tid);
          // A thread that ended (or whose id was reused, so its counts went back) is frozen.
          if (!now || now.voluntary < t.voluntary || now.involuntary < t.involuntary) {
            tree.departed.voluntary += t.voluntary;
            tree.departed.involuntary += t.involuntary;
          }
        }
      }
      next.set(key, {
        key,
        pid,
        ppid: st.ppid,
        root,
        inherited,
        reapedUser: st.cutime,
        reapedSystem: st.cstime,
        threads,
      });
      if (!self) continue;
      const g = gauges.get(root)!;
      if (st.state !== 'Z') g.count++;
      g.threads += st.threads;
      g.rssBytes += reading.rssBytes;
      g.fds += reading.fds;
    }

    this.settleDeparted(next);
    this.members = next;

    const out: TreeReading[] = [];
    const totals = new Map<number, TreeCounters>();
    for (const tree of this.trees.values()) totals.set(tree.root, { ...tree.departed });
    for (const m of next.values()) {
      const t = totals.get(m.root)!;
      for (const k of INHERITED_KEYS) t[k] += m.inherited[k];
      for (const th of m.threads.values()) {
        t.voluntary += th.voluntary;
        t.involuntary += th.involuntary;
      }
    }
    for (const tree of this.trees.values()) {
      const total = totals.get(tree.root)!;
      const delta = zeroCounters();
      if (baseline || !tree.emitted) tree.emitted = total;
      else {
        for (const k of COUNTER_KEYS) {
          if (total[k] > tree.emitted[k]) {
            delta[k] = total[k] - tree.emitted[k];
            tree.emitted[k] = total[k];
          }
        }
      }
      out.push({ root: tree.root, comm: tree.comm, delta, gauges: gauges.get(tree.root)! });
    }
    return out;
  }

  /** Maps every process of the snapshot that belongs to a tree to its tree's root pid. */
  private assignRoots(procs: ReadonlyMap<number, ProcStat>): Map<number, number> {
    const rootOf = new Map<number, number>();
    const outside = new Set<number>();
    const resolve = (pid: number): number | undefined => {
      const path: number[] = [];
      let found: number | undefined;
      for (let cur: number | undefined = pid; cur !== undefined;) {
        if (rootOf.has(cur)) {
          found = rootOf.get(cur);
          break;
        }
        if (outside.has(cur) || path.length > 4096) break;
        const st = procs.get(cur);
        if (!st) break;
        path.push(cur);
        const known = this.members.get(memberKey(st));
        if (known) {
          found = known.root;
          break;
        }
        const tree = this.trees.get(cur);
        if (tree && tree.startTime === st.startTime) {
          found = cur;
          break;
        }
        cur = parentOf(st, procs)?.pid;
      }
      for (const p of path) {
        if (found === undefined) outside.add(p);
        else rootOf.set(p, found);
      }
      return found;
    };
    for (const pid of procs.keys()) resolve(pid);
    return rootOf;
  }

  /** Freezes members that vanished, and transfers them when a member of another tree reaped them. */
  private settleDeparted(next: Map<string, Member>): void {
    const byPidNow = new Map<number, Member>();
    for (const m of next.values()) byPidNow.set(m.pid, m);
    const byPidBefore = new Map<number, Member>();
    for (const m of this.members.values()) byPidBefore.set(m.pid, m);

    const reaped: { gone: Member; reaper: Member }[] = [];
    const reapedBy = new Map<string, number>();
    for (const gone of this.members.values()) {
      if (next.has(gone.key)) continue;
      const tree = this.trees.get(gone.root)!;
      for (const k of INHERITED_KEYS) tree.departed[k] += gone.inherited[k];
      for (const th of gone.threads.values()) {
        tree.departed.voluntary += th.voluntary;
        tree.departed.involuntary += th.involuntary;
      }
      const reaper = this.findReaper(gone, byPidNow, byPidBefore, next);
      if (reaper) {
        reaped.push({ gone, reaper });
        reapedBy.set(reaper.key, (reapedBy.get(reaper.key) ?? 0) + 1);
      }
    }
    for (const { gone, reaper } of reaped) {
      const transfer = { ...gone.inherited };
      const before = this.members.get(reaper.key);
      if (reaper.root !== gone.root && before && reapedBy.get(reaper.key) === 1) {
        // The reaper's cutime/cstime grew by the child's final CPU time, which includes what it
        // used after its last reading: that part belongs to the child's tree too.
        const gotUser = reaper.reapedUser - before.reapedUser;
        const gotSystem = reaper.reapedSystem - before.reapedSystem;
        if (gotUser > transfer.userTicks) transfer.userTicks = gotUser;
        if (gotSystem > transfer.systemTicks) transfer.systemTicks = gotSystem;
      }
      const tree = this.trees.get(gone.root)!;
      const reaperTree = this.trees.get(reaper.root)!;
      for (const k of INHERITED_KEYS) {
        tree.departed[k] += transfer[k] - gone.inherited[k];
        reaperTree.departed[k] -= transfer[k];
      }
    }
  }

  /**
   * The live member that waited for a vanished one: its parent at the last reading if that
   * parent is still alive, else the parent's reaper (a shell waits for its pipeline before it
   * exits, so a vanished child of a vanished parent ended up in the grandparent).
   */
  private findReaper(
    gone: Member,
    byPidNow: Map<number, Member>,
    byPidBefore: Map<number, Member>,
    next: Map<string, Member>,
  ): Member | undefined {
    let cur: Member | undefined = gone;
    for (let hops = 0; cur && hops < 4096; hops++) {
      const parentBefore = byPidBefore.get(cur.ppid);
      if (!parentBefore) return undefined;
      if (next.has(parentBefore.key)) return byPidNow.get(parentBefore.pid);
      cur = parentBefore;
    }
    return undefined;
  }
}

function memberKey(st: ProcStat): string {
  return `${st.pid}:${st.startTime}`;
}
