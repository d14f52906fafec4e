// The /proc parsers on this machine's real files, checked against other sources of the same facts.
import { readFileSync, readdirSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { describe, expect, it } from 'vitest';
import {
  globToRegExp,
  parseDiskstats,
  parseKernelStat,
  parseLoadavg,
  parseMeminfo,
  parseNetDev,
  parseVmstat,
} from '../src/procfs.js';
// The per-process parsers the sampler uses are the core's.
import {
  parseIo as parsePidIo,
  parseStat as parsePidStat,
  parseStatus as parseTaskStatus,
} from '@scalpels/core/procfs';

const read = (path: string): string => readFileSync(path, 'latin1');

describe('procfs parsers on this machine', () => {
  it('/proc/stat: the cpu line is the sum of the per-CPU lines', () => {
    const text = read('/proc/stat');
    const total = parseKernelStat(text);
    const perCpu = text.split('\n').filter((l) => /^cpu\d+ /.test(l));
    expect(perCpu).toHaveLength(cpus().length);
    const userTicks = perCpu.reduce((a, l) => a + Number(l.split(/\s+/)[1]), 0);
    expect(Math.abs(total.cpu.user - userTicks)).toBeLessThanOrEqual(perCpu.length);
    expect(total.contextSwitches).toBeGreaterThan(0);
    expect(total.forks).toBeGreaterThan(0);
    expect(total.procsRunning).toBeGreaterThanOrEqual(1);
  });

  it('/proc/vmstat: faults of all kinds include the major ones, and this process made some', () => {
    const vm = parseVmstat(read('/proc/vmstat'));
    expect(vm.faults).toBeGreaterThan(vm.majorFaults);
    expect(Number.isInteger(vm.swapIn) && Number.isInteger(vm.swapOut)).toBe(true);
    const self = parsePidStat(read('/proc/self/stat'))!;
    expect(self.minflt).toBeGreaterThan(0);
    expect(self.minflt).toBeLessThanOrEqual(vm.faults);
  });

  it('/proc/meminfo and /proc/loadavg agree with node:os', () => {
    expect(parseMeminfo(read('/proc/meminfo')).get('MemTotal')).toBe(totalmem());
    const [one] = parseLoadavg(read('/proc/loadavg'));
    expect(Math.abs(one - loadavg()[0]!)).toBeLessThan(1);
  });

  it('/proc/diskstats and /proc/net/dev list the devices of /sys', () => {
    const disks = parseDiskstats(read('/proc/diskstats'));
    for (const d of readdirSync('/sys/block')) expect(disks.has(d), d).toBe(true);
    const nets = parseNetDev(read('/proc/net/dev'));
    expect([...nets.keys()].sort()).toEqual(readdirSync('/sys/class/net').sort());
    expect(nets.get('lo')!.rxBytes).toBe(Number(read('/sys/class/net/lo/statistics/rx_bytes')));
  });

  it('/proc/self/stat, status and io describe this process', () => {
    const st = parsePidStat(read('/proc/self/stat'))!;
    expect(st).toMatchObject({ pid: process.pid, ppid: process.ppid, state: 'R' });
    expect(st.threads).toBeGreaterThanOrEqual(1);
    const status = parseTaskStatus(read('/proc/self/status'));
    expect(status.rss).toBeGreaterThan(0);
    expect(Math.abs(status.rss - process.memoryUsage.rss()) / status.rss).toBeLessThan(0.2);
    const before = parsePidIo(read('/proc/self/io')).rchar;
    read('/proc/self/stat');
    expect(parsePidIo(read('/proc/self/io')).rchar).toBeGreaterThan(before);
  });

  it('parses a comm holding spaces and parentheses', () => {
    const st = parsePidStat(
      '42 (a) (b c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 4 0 555 1 2 3',
    );
    expect(st).toMatchObject({
      pid: 42,
      comm: 'a) (b c',
      ppid: 1,
      utime: 7,
      stime: 3,
      cutime: 2,
      cstime: 1,
    });
    expect(st).toMatchObject({ threads: 4, startTime: 555 });
    expect(parsePidStat('42 (truncated')).toBeUndefined();
  });

  it('globs match whole names', () => {
    expect(globToRegExp('eth*').test('eth0')).toBe(true);
    expect(globToRegExp('eth*').test('veth0')).toBe(false);
    expect(globToRegExp('br-ex').test('br-ex')).toBe(true);
    expect(globToRegExp('sd?').test('sda1')).toBe(false);
  });
});
