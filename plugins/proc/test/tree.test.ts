// The tree accounting on hand-made /proc snapshots: the cases here (reaping across trees, pid
// reuse, daemons re-parented to init) are races a live test cannot stage reliably.
import { describe, expect, it } from 'vitest';
import type { ProcStat } from '@scalpels/core/procfs';
import { TreeTracker, type MemberReading, type TreeReading } from '../src/tree.js';

interface P {
  pid: number;
  ppid: number;
  /** Own user ticks, and user ticks of waited-for children. */
  u: number;
  cu?: number;
  start?: number;
  state?: string;
  /** Voluntary context switches of its single thread. */
  vol?: number;
}

function snapshot(list: P[]): Map<number, ProcStat> {
  return new Map(
    list.map((p) => [
      p.pid,
      {
        pid: p.pid,
        comm: `p${p.pid}`,
        state: p.state ?? 'S',
        ppid: p.ppid,
        utime: p.u,
        stime: 0,
        cutime: p.cu ?? 0,
        cstime: 0,
        minflt: 0,
        cminflt: 0,
        majflt: 0,
        cmajflt: 0,
        threads: 1,
        startTime: p.start ?? p.pid,
      },
    ]),
  );
}

const vol = new Map<number, number>();
const read = (st: ProcStat): MemberReading => ({
  stat: st,
  io: { rchar: 0, wchar: 0, syscr: 0, syscw: 0, readBytes: 0, writeBytes: 0 },
  tasks: new Map([[st.pid, { rss: 0, voluntary: vol.get(st.pid) ?? 0, involuntary: 0 }]]),
  rssBytes: 4096,
  fds: 3,
});

function step(t: TreeTracker, list: P[]): Map<number, TreeReading> {
  vol.clear();
  for (const p of list) vol.set(p.pid, p.vol ?? 0);
  return new Map(t.update(snapshot(list), read).map((r) => [r.root, r]));
}

const init = { pid: 1, ppid: 0, u: 5000 };

describe('TreeTracker', () => {
  it('counts from the baseline and keeps a reaped child through its parent', () => {
    const t = new TreeTracker([10]);
    const base = step(t, [init, { pid: 10, ppid: 1, u: 100 }, { pid: 11, ppid: 10, u: 50 }]);
    expect(base.get(10)!.delta.userTicks).toBe(0);
    expect(base.get(10)!.gauges.count).toBe(2);
    // A new grandchild counts from zero; the existing child adds 20.
    let r = step(t, [
      init,
      { pid: 10, ppid: 1, u: 100 },
      { pid: 11, ppid: 10, u: 70 },
      { pid: 12, ppid: 11, u: 30 },
    ]);
    expect(r.get(10)!.delta.userTicks).toBe(50);
    // 12 exits (final 40) and is reaped by 11, which exits (final 90 + 40) and is reaped by 10.
    r = step(t, [init, { pid: 10, ppid: 1, u: 100, cu: 130 }]);
    expect(r.get(10)!.delta.userTicks).toBe(30);
    expect(r.get(10)!.gauges.count).toBe(1);
  });

  it('keeps a daemon re-parented to init in the tree and freezes it when init reaps it', () => {
    const t = new TreeTracker([10]);
    step(t, [init, { pid: 10, ppid: 1, u: 0 }]);
    step(t, [
      init,
      { pid: 10, ppid: 1, u: 0 },
      { pid: 11, ppid: 10, u: 0 },
      { pid: 12, ppid: 11, u: 5, vol: 7 },
    ]);
    // 11 exits (reaped by 10), 12 is re-parented to init and keeps running.
    let r = step(t, [init, { pid: 10, ppid: 1, u: 0 }, { pid: 12, ppid: 1, u: 25, vol: 9 }]);
    expect(r.get(10)!.delta.userTicks).toBe(20);
    expect(r.get(10)!.gauges.count).toBe(2);
    // init reaps 12: what it did after the last reading is lost, nothing goes back.
    r = step(t, [
      { ...init, cu: 30 },
      { pid: 10, ppid: 1, u: 1 },
    ]);
    expect(r.get(10)!.delta.userTicks).toBe(1);
    expect(r.get(10)!.delta.voluntary).toBe(0);
    expect(r.get(10)!.gauges.count).toBe(1);
  });

  it('does not count a root reaped by another target tree twice', () => {
    const t = new TreeTracker([10, 11]);
    step(t, [init, { pid: 10, ppid: 1, u: 100 }, { pid: 11, ppid: 10, u: 40 }]);
    let r = step(t, [init, { pid: 10, ppid: 1, u: 110 }, { pid: 11, ppid: 10, u: 60 }]);
    expect([r.get(10)!.delta.userTicks, r.get(11)!.delta.userTicks]).toEqual([10, 20]);
    // 11 ends at 65 and 10 waits for it: 10's cutime grows by 11's whole life (65).
    r = step(t, [init, { pid: 10, ppid: 1, u: 120, cu: 65 }]);
    expect(r.get(10)!.delta.userTicks).toBe(10); // its own 10, not 11's life through cutime
    expect(r.get(11)!.delta.userTicks).toBe(5); // 11's last 5, seen in 10's cutime
    expect(r.get(11)!.gauges.count).toBe(0);
  });

  it('does not take a new process that reuses a root pid for the root', () => {
    const t = new TreeTracker([10]);
    step(t, [init, { pid: 10, ppid: 1, u: 100 }]);
    step(t, [init]);
    const r = step(t, [init, { pid: 10, ppid: 1, u: 500, start: 999 }]);
    expect(r.get(10)!.delta.userTicks).toBe(0);
    expect(r.get(10)!.gauges.count).toBe(0);
  });

  it('never tracks a root that did not exist at the baseline', () => {
    const t = new TreeTracker([10, 77]);
    step(t, [init, { pid: 10, ppid: 1, u: 0 }]);
    expect(t.trackedRoots).toEqual([10]);
  });

  it('does not track a root given with its start time once its pid went to another process', () => {
    const t = new TreeTracker([
      { pid: 10, startTime: 5 },
      { pid: 20, startTime: 20 },
    ]);
    step(t, [init, { pid: 10, ppid: 1, u: 0 }, { pid: 20, ppid: 1, u: 0 }]);
    expect(t.trackedRoots).toEqual([20]);
  });

  it('does not follow a ppid taken by a younger process (recycled while /proc was read)', () => {
    const t = new TreeTracker([10]);
    const r = step(t, [
      init,
      { pid: 10, ppid: 1, u: 0 },
      { pid: 12, ppid: 10, u: 0, start: 50 },
      // Started at 15, under a parent pid 12 that then exited; its pid went to a child of 10.
      { pid: 40, ppid: 12, u: 0, start: 15 },
    ]);
    expect(r.get(10)!.gauges.count).toBe(2);
  });

  it('freezes the context switches of a thread that ended', () => {
    const t = new TreeTracker([10]);
    step(t, [init, { pid: 10, ppid: 1, u: 0, vol: 3 }]);
    let r = step(t, [init, { pid: 10, ppid: 1, u: 0, vol: 8 }]);
    expect(r.get(10)!.delta.voluntary).toBe(5);
    r = step(t, [init, { pid: 10, ppid: 1, u: 0, vol: 8 }]);
    expect(r.get(10)!.delta.voluntary).toBe(0);
  });

  it('counts only the descendants of a children-only root (the launcher of scalpels run)', () => {
    const t = new TreeTracker([10], new Set([10]));
    step(t, [init, { pid: 10, ppid: 1, u: 50, vol: 4 }]);
    let r = step(t, [init, { pid: 10, ppid: 1, u: 60, vol: 9 }, { pid: 11, ppid: 10, u: 30 }]);
    expect(r.get(10)!.delta.userTicks).toBe(30);
    expect(r.get(10)!.delta.voluntary).toBe(0);
    expect(r.get(10)!.gauges).toEqual({ count: 1, threads: 1, rssBytes: 4096, fds: 3 });
    // The workload ends at 45 and the launcher waits for it.
    r = step(t, [init, { pid: 10, ppid: 1, u: 70, cu: 45 }]);
    expect(r.get(10)!.delta.userTicks).toBe(15);
    expect(r.get(10)!.gauges).toEqual({ count: 0, threads: 0, rssBytes: 0, fds: 0 });
  });
});
