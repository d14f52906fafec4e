import { spawn, execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { validateOptions, type CheckContext } from '@scalpels/core';
import { capability, runWorker } from '@scalpels/core/testing';
import manifest from '../src/index.js';
import { EXPECTED_MIXED, launch, MIXED_PY } from './workloads.mjs';
import { events, pluginDir, samplerBuilt, samples, total } from './helpers.js';
import type { Options } from '../src/options.js';

const isRoot = process.getuid?.() === 0;
const hasBpftrace = (() => {
  try {
    execFileSync('bpftrace', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const hasTracefs =
  existsSync('/sys/kernel/tracing/events/syscalls') ||
  existsSync('/sys/kernel/debug/tracing/events/syscalls');
const canBpftrace =
  capability('root', isRoot, 'bpftrace needs root') &&
  capability('bpftrace', hasBpftrace, 'apt-get install -y bpftrace') &&
  capability('tracefs', hasTracefs, 'mount -t tracefs nodev /sys/kernel/tracing');
const canProcIo = capability(
  'proc-io sampler built',
  samplerBuilt,
  'build first: npx tsc -b plugins/fs-io',
);

const scratch = mkdtempSync(join(tmpdir(), 'scalpels-fsio-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const run = (argv: readonly string[]) => {
  const w = launch(argv);
  return { w, target: { kind: 'run' as const, pids: [w.pid], description: `run: ${argv[0]}` } };
};

function checkContext(depth: 'quick' | 'full'): CheckContext<Options> {
  return {
    options: validateOptions(manifest, {}),
    depth,
    isRoot,
    exec: (argv, timeoutMs) =>
      new Promise((resolve) => {
        const p = spawn(argv[0]!, argv.slice(1), { timeout: timeoutMs });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (c) => (stdout += c));
        p.stderr.on('data', (c) => (stderr += c));
        p.on('error', () => resolve({ exitCode: 127, stdout, stderr }));
        p.on('close', (code) => resolve({ exitCode: code ?? 1, stdout, stderr }));
      }),
    which: async (bin) =>
      ['/usr/bin', '/usr/sbin', '/bin', '/usr/local/bin']
        .map((d) => join(d, bin))
        .find((p) => existsSync(p)),
  };
}

describe.runIf(canBpftrace)('fs-io bpftrace worker (real bpftrace, real workloads)', () => {
  it('check() picks bpftrace here, at both depths', async () => {
    for (const depth of ['quick', 'full'] as const) {
      const r = await manifest.check(checkContext(depth));
      expect(r, r.detail).toMatchObject({ status: 'ok', technique: 'bpftrace' });
    }
  });

  it('dd of 64 MiB with conv=fsync: exact bytes, one fsync; an untraced writer is not counted', async () => {
    const out = join(scratch, 'dd.out');
    const outsider = join(scratch, 'outsider.out');
    const { w, target } = run([
      'dd',
      'if=/dev/zero',
      `of=${out}`,
      'bs=1M',
      'count=64',
      'conv=fsync',
      'status=none',
    ]);
    const { outcome, records } = await runWorker(manifest, {
      pluginDir,
      target,
      during: async () => {
        // Same kind of work by a process outside the target, at the same time.
        const other = spawn('dd', [
          'if=/dev/zero',
          `of=${outsider}`,
          'bs=64k',
          'count=16',
          'status=none',
        ]);
        const otherExit = new Promise((r) => other.once('exit', r));
        const code = await w.go();
        await otherExit;
        expect(code).toBe(0);
      },
    });
    expect(outcome.status, outcome.stderrTail).toBe('stopped');
    expect(outcome.parseErrors, outcome.diagnostics.join('\n')).toBe(0);
    expect(statSync(out).size).toBe(67_108_864);
    expect(total(records, 'fs.write.bytes', { path: out, comm: 'dd' })).toBe(67_108_864);
    expect(total(records, 'fs.write.ops', { path: out, comm: 'dd' })).toBe(64);
    expect(total(records, 'fs.fsync.ops', { path: out, comm: 'dd', call: 'fsync' })).toBe(1);
    expect(samples(records).filter((s) => s.labels?.path === outsider)).toEqual([]);
    // The file is the hottest by bytes among the events.
    const bytes = new Map<string, number>();
    for (const e of events(records)) bytes.set(e.key, (bytes.get(e.key) ?? 0) + (e.value ?? 0));
    const hottest = [...bytes].sort((a, b) => b[1] - a[1]);
    expect(hottest[0]![0]).toMatch(/^(\/dev\/zero|.*dd\.out)$/);
    expect(bytes.get(out)).toBe(67_108_864);
    // System-wide VFS counters saw at least our traffic.
    expect(total(records, 'vfs.writes')).toBeGreaterThanOrEqual(64 + 16);
    expect(total(records, 'vfs.fsyncs')).toBeGreaterThanOrEqual(1);
  });

  it.each([
    ['the saved registers', 'true'],
    ['entry probes', 'false'],
  ])(
    'follows forks, dup2 and inherited fds; open errors with errno; latency histograms add up (fd from %s)',
    async (_how, registers) => {
      const file = join(scratch, 'mixed.dat');
      const { w, target } = run(['python3', '-c', MIXED_PY, file]);
      const { outcome, records } = await runWorker(manifest, {
        pluginDir,
        target,
        options: { latency: 'true', interval: '200ms', vfs: 'false', registers },
        during: () => w.go(),
      });
      expect(outcome.status, outcome.stderrTail).toBe('stopped');
      const pids = [
        ...new Set(
          samples(records)
            .filter((s) => s.labels?.path === file)
            .map((s) => s.labels!.pid!),
        ),
      ];
      expect(pids).toHaveLength(2);
      const byWrites = pids.sort(
        (a, b) =>
          total(records, 'fs.write.ops', { pid: b }) - total(records, 'fs.write.ops', { pid: a }),
      );
      const p = { pid: byWrites[0]!, path: file };
      const c = { pid: byWrites[1]!, path: file };
      expect(total(records, 'fs.write.ops', p)).toBe(EXPECTED_MIXED.parent.writeOps);
      expect(total(records, 'fs.write.bytes', p)).toBe(EXPECTED_MIXED.parent.writeBytes);
      expect(total(records, 'fs.read.ops', p)).toBe(EXPECTED_MIXED.parent.readOps);
      expect(total(records, 'fs.read.bytes', p)).toBe(EXPECTED_MIXED.parent.readBytes);
      expect(total(records, 'fs.open.ops', p)).toBe(EXPECTED_MIXED.parent.opens);
      expect(total(records, 'fs.fsync.ops', { ...p, call: 'fsync' })).toBe(
        EXPECTED_MIXED.parent.fsync,
      );
      expect(total(records, 'fs.fsync.ops', { ...p, call: 'fdatasync' })).toBe(
        EXPECTED_MIXED.parent.fdatasync,
      );
      expect(total(records, 'fs.write.ops', c)).toBe(EXPECTED_MIXED.child.writeOps);
      expect(total(records, 'fs.write.bytes', c)).toBe(EXPECTED_MIXED.child.writeBytes);
      expect(total(records, 'fs.open.errors', { path: `${file}.missing`, errno: 'ENOENT' })).toBe(
        EXPECTED_MIXED.missingOpens,
      );
      expect(total(records, 'fs.read.latency', p)).toBe(EXPECTED_MIXED.parent.readOps);
      expect(total(records, 'fs.write.latency', p)).toBe(EXPECTED_MIXED.parent.writeOps);
      expect(total(records, 'fs.read.time', p)).toBeGreaterThan(0);
      expect(samples(records).some((s) => s.series.startsWith('vfs.'))).toBe(false);
      const ev = events(records).filter((e) => e.key === file && String(e.data?.pid) === p.pid);
      expect(ev.reduce((a, e) => a + (e.value ?? 0), 0)).toBe(
        EXPECTED_MIXED.parent.writeBytes + EXPECTED_MIXED.parent.readBytes,
      );
      // Time in reads and writes comes with the intervals that had some (not those with only an open).
      const rw = ev.filter((e) => Number(e.data!.readOps) + Number(e.data!.writeOps) > 0);
      expect(rw.length).toBeGreaterThan(0);
      expect(rw.every((e) => typeof e.durationMs === 'number' && e.durationMs > 0)).toBe(true);
    },
  );

  it('pipes are not taken for an inherited file; redirections, copy_file_range and sendfile are attributed', async () => {
    const file = join(scratch, 'inherited.dat');
    const src = join(scratch, 'src.dat');
    const dst = join(scratch, 'dst.dat');
    const copy = join(scratch, 'copy.dat');
    const sent = join(scratch, 'sent.dat');
    execFileSync('dd', ['if=/dev/urandom', `of=${src}`, 'bs=1000', 'count=300', 'status=none']);
    // The child closes the file it inherited as fd N and gets a pipe as fd N: its reads on the
    // pipe must not be put on the parent's file.
    const prog = `
import os, sys, subprocess
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b'x' * 10)
child = os.fork()
if child == 0:
    os.close(fd)
    r, w = os.pipe()
    assert r == fd, (r, fd)
    os.write(w, b'y' * 100)
    os.read(r, 100)
    os._exit(0)
os.waitpid(child, 0)
subprocess.check_call(['sh', '-c', 'cat "$0" > "$1"', sys.argv[2], sys.argv[3]])
s = os.open(sys.argv[2], os.O_RDONLY)
c = os.open(sys.argv[4], os.O_CREAT | os.O_WRONLY, 0o644)
assert os.copy_file_range(s, c, 1000) == 1000
t = os.open(sys.argv[5], os.O_CREAT | os.O_WRONLY, 0o644)
assert os.sendfile(t, s, 0, 500) == 500
`;
    const { w, target } = run(['python3', '-c', prog, file, src, dst, copy, sent]);
    const { outcome, records } = await runWorker(manifest, {
      pluginDir,
      target,
      options: { vfs: 'false' },
      during: async () => expect(await w.go()).toBe(0),
    });
    expect(outcome.status, outcome.stderrTail).toBe('stopped');
    expect(total(records, 'fs.write.bytes', { path: file })).toBe(10);
    expect(total(records, 'fs.read.ops', { path: file })).toBe(0);
    const pyPid = samples(records).find((x) => x.labels?.path === file)!.labels!.pid!;
    const childReads = samples(records).filter(
      (x) => x.series === 'fs.read.bytes' && x.labels?.pid !== pyPid && x.labels?.path === '(fd 3)',
    );
    expect(childReads.reduce((a, x) => a + x.value, 0)).toBe(100);
    expect(total(records, 'fs.read.bytes', { path: src, comm: 'cat' })).toBe(300_000);
    expect(total(records, 'fs.write.bytes', { path: dst, comm: 'cat' })).toBe(300_000);
    expect(statSync(dst).size).toBe(300_000);
    // In-kernel copies: one read of the source and one write of the destination each.
    expect(total(records, 'fs.write.bytes', { pid: pyPid, path: copy })).toBe(1000);
    expect(total(records, 'fs.write.bytes', { pid: pyPid, path: sent })).toBe(500);
    expect(total(records, 'fs.read.bytes', { pid: pyPid, path: src })).toBe(1500);
    expect(total(records, 'fs.read.ops', { pid: pyPid, path: src })).toBe(2);
  });

  it('system-wide (no target): any process is traced', async () => {
    const out = join(scratch, 'system-wide.out');
    const { outcome, records } = await runWorker(manifest, {
      pluginDir,
      options: { vfs: 'false' },
      during: async () => {
        const dd = spawn('dd', ['if=/dev/zero', `of=${out}`, 'bs=4k', 'count=256', 'status=none']);
        await new Promise((r) => dd.once('exit', r));
      },
    });
    expect(outcome.status, outcome.stderrTail).toBe('stopped');
    expect(total(records, 'fs.write.bytes', { path: out, comm: 'dd' })).toBe(1_048_576);
    expect(total(records, 'fs.write.ops', { path: out, comm: 'dd' })).toBe(256);
  });

  it('names files a target process opened before tracing started (service-style target)', async () => {
    // Longer than the 64 bytes bpftrace 0.17 allows in a string literal.
    mkdirSync(join(scratch, 'a-directory-with-a-long-name'), { recursive: true });
    const file = join(
      scratch,
      'a-directory-with-a-long-name',
      'preopened-file-whose-path-is-longer-than-64-bytes.log',
    );
    expect(file.length).toBeGreaterThan(64);
    // Opens the file, says so, then writes 5 x 1000 bytes once told to go.
    const py = spawn(
      'python3',
      [
        '-c',
        'import os, sys\nfd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o644)\nprint("open", flush=True)\nsys.stdin.readline()\nfor i in range(5):\n    os.write(fd, b"x" * 1000)\n',
        file,
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    await new Promise<void>((r) => py.stdout.once('data', () => r()));
    const { outcome, records } = await runWorker(manifest, {
      pluginDir,
      target: { kind: 'pid', pids: [py.pid!], description: `pid ${py.pid}` },
      during: async () => {
        py.stdin.end('go\n');
        await new Promise((r) => py.once('exit', r));
      },
    });
    expect(outcome.status, outcome.stderrTail).toBe('stopped');
    expect(
      total(records, 'fs.write.bytes', { path: file, pid: String(py.pid), comm: 'python3' }),
    ).toBe(5000);
    expect(total(records, 'fs.open.ops', { path: file })).toBe(0);
  });
});

describe.runIf(canProcIo)('fs-io proc-io fallback (real /proc/PID/io)', () => {
  it('reports the bytes the kernel accounted to the workload process', async () => {
    const file = join(scratch, 'procio.dat');
    const truth = join(scratch, 'procio.json');
    // Records its own /proc/self/io before and after its writes; stays alive long enough to be sampled.
    const prog = `
import json, os, sys, time
def io():
    return {k: int(v) for k, v in (l.split(': ') for l in open('/proc/self/io').read().splitlines())}
a = io()
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
for i in range(16):
    os.write(fd, b'z' * 65536)
os.close(fd)
b = io()
open(sys.argv[2], 'w').write(json.dumps({'wchar': b['wchar'] - a['wchar'], 'syscw': b['syscw'] - a['syscw'], 'pid': os.getpid()}))
time.sleep(1)
`;
    const { w, target } = run(['python3', '-c', prog, file, truth]);
    const { outcome, records } = await runWorker(manifest, {
      pluginDir,
      target,
      technique: 'proc-io',
      options: { interval: '200ms' },
      during: () => w.go(),
    });
    expect(outcome.status, outcome.stderrTail).toBe('stopped');
    const t = JSON.parse(readFileSync(truth, 'utf8')) as {
      wchar: number;
      syscw: number;
      pid: number;
    };
    expect(t.wchar).toBe(16 * 65536);
    // The truth file itself is written after the second reading: its bytes come on top.
    const truthBytes = statSync(truth).size;
    expect(total(records, 'proc.io.wchar', { pid: String(t.pid) })).toBe(t.wchar + truthBytes);
    expect(total(records, 'proc.io.syscw', { pid: String(t.pid) })).toBe(t.syscw + 1);
  });
  it('counts a sampled child once although its reaping parent accumulates its I/O', async () => {
    const file = join(scratch, 'reaped.dat');
    // The child writes 100 000 bytes and lives through several samples; the parent reaps it
    // and lives on, so the kernel adds the child's I/O to the parent's /proc/PID/io.
    const prog = `
import os, sys, time
child = os.fork()
if child == 0:
    fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(fd, b'r' * 100000)
    time.sleep(0.8)
    os._exit(0)
os.waitpid(child, 0)
time.sleep(0.8)
`;
    const { w, target } = run(['python3', '-c', prog, file]);
    const { outcome, records } = await runWorker(manifest, {
      pluginDir,
      target,
      technique: 'proc-io',
      options: { interval: '100ms' },
      during: () => w.go(),
    });
    expect(outcome.status, outcome.stderrTail).toBe('stopped');
    const wchar = new Map<string, number>();
    for (const s of samples(records))
      if (s.series === 'proc.io.wchar')
        wchar.set(s.labels!.pid!, (wchar.get(s.labels!.pid!) ?? 0) + s.value);
    // One process (the child) has the 100 000 bytes; nobody else has them again.
    expect([...wchar.values()].filter((v) => v >= 100_000)).toEqual([100_000]);
  });

  it('counts a process that got a recycled pid from zero, not against the old one', async (t) => {
    let writable = false;
    try {
      writeFileSync('/proc/sys/kernel/ns_last_pid', readFileSync('/proc/sys/kernel/ns_last_pid'));
      writable = true;
    } catch {
      // not root
    }
    if (!capability('ns_last_pid', writable, 'cannot write /proc/sys/kernel/ns_last_pid'))
      return t.skip();
    const file = join(scratch, 'recycled.dat');
    const result = join(scratch, 'recycled.json');
    // Child A writes 1 000 000 bytes and is reaped; the parent then forks until a child gets
    // A's pid back (through ns_last_pid) and that child B writes 100 000 bytes. Within one
    // interval the sampler sees pid A before and after: B's counters are below A's.
    const prog = `
import json, os, sys, time
def child(n):
    fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(fd, b'r' * n)
    time.sleep(0.6)
    os._exit(0)
a = os.fork()
if a == 0:
    child(1000000)
os.waitpid(a, 0)
recycled = False
for attempt in range(200):
    with open('/proc/sys/kernel/ns_last_pid', 'w') as f:
        f.write(str(a - 1))
    b = os.fork()
    if b == 0:
        if os.getpid() == a:
            child(100000)
        os._exit(0)
    if b == a:
        recycled = True
        break
    os.waitpid(b, 0)
if recycled:
    os.waitpid(b, 0)
open(sys.argv[2], 'w').write(json.dumps({'pid': a, 'recycled': recycled}))
time.sleep(0.3)
`;
    const { w, target } = run(['python3', '-c', prog, file, result]);
    const { outcome, records } = await runWorker(manifest, {
      pluginDir,
      target,
      technique: 'proc-io',
      options: { interval: '100ms' },
      during: () => w.go(),
    });
    expect(outcome.status, outcome.stderrTail).toBe('stopped');
    const r = JSON.parse(readFileSync(result, 'utf8')) as { pid: number; recycled: boolean };
    expect(r.recycled, 'no fork got the pid back in 200 tries (the host forks too much)').toBe(
      true,
    );
    const wchar = new Map<string, number>();
    for (const s of samples(records))
      if (s.series === 'proc.io.wchar')
        wchar.set(s.labels!.pid!, (wchar.get(s.labels!.pid!) ?? 0) + s.value);
    // Both processes under the one pid, each counted in full, once; nobody else has them.
    expect(wchar.get(String(r.pid))).toBe(1_100_000);
    expect([...wchar.values()].filter((v) => v >= 100_000)).toEqual([1_100_000]);
  });
});
