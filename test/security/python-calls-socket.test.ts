/**
 * The python-calls worker's socket, as an unprivileged local user sees it (docs/security.md,
 * "python-calls socket"): the worker runs as root and listens on a unix socket that traced
 * interpreters of any user must reach. nobody finds it (its path is public in /proc/net/unix),
 * connects, and tries to inject counts without the key, with a wrong key, and with an endless
 * line. Each connection is closed; no injected count reaches a record; the traced process's own
 * counts still do.
 */
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runWorker } from '@scalpels/core/testing';
import type { Sample } from '@scalpels/core';
import plugin from '@scalpels/plugin-python-calls';
import { asNobody, canAttack } from './attacker.js';

const pluginDir = dirname(
  fileURLToPath(import.meta.resolve('@scalpels/plugin-python-calls/package.json')),
);
const PYTHON = '/usr/bin/python3';

/** The unix socket path `pid` listens on (from its fds and /proc/net/unix). */
function listeningPath(pid: number): string | undefined {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  for (const line of readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // Num RefCount Protocol Flags Type St Inode Path; a listening socket has the flag 00010000.
    if (f.length >= 8 && inodes.has(f[6]!) && f[3] === '00010000') return f[7];
  }
  return undefined;
}

/** The worker's pid: the python-calls worker-main among this process's descendants. */
function workerPid(): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${d}/status`, 'utf8'))?.[1]);
      if (cmd.includes('worker-main') && cmd.includes('python-calls') && isDescendant(ppid))
        return Number(d);
    } catch {
      // gone
    }
  }
  return undefined;
}

function isDescendant(pid: number): boolean {
  for (let p = pid, i = 0; p > 1 && i < 32; i++) {
    if (p === process.pid) return true;
    try {
      p = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1]);
    } catch {
      return false;
    }
  }
  return false;
}

/** nobody's client: connects, sends `payload` (bytes), reports how the worker answered. */
const CLIENT = `
import socket, sys, json
path, payload = sys.argv[1], sys.argv[2].encode().decode('unicode_escape').encode('latin-1')
repeat = int(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(path)
sent = 0
try:
    for _ in range(repeat):
        s.sendall(payload)
        sent += len(payload)
    got = s.recv(65536)
    print(json.dumps({"closed": got == b"", "got": len(got), "sent": sent}))
except (BrokenPipeError, ConnectionResetError) as e:
    print(json.dumps({"closed": True, "got": 0, "sent": sent, "error": type(e).__name__}))
except socket.timeout:
    print(json.dumps({"closed": False, "got": 0, "sent": sent, "error": "timeout"}))
`;

function attack(path: string, payload: string, repeat = 1): { closed: boolean; sent: number } {
  const r = asNobody([PYTHON, '-c', CLIENT, path, payload, String(repeat)]);
  if (r.status !== 0) throw new Error(`nobody's client failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as { closed: boolean; sent: number };
}

describe.runIf(canAttack)('python-calls socket, as another local user', () => {
  it(
    'refuses connections without the key, bounds lines, and keeps the traced counts',
    { timeout: 240_000 },
    async () => {
      // A traced service (root's) calling work() until told to stop; it says once it is traced.
      const target = spawn(
        PYTHON,
        [
          '-c',
          `import sys, time
def work(): return 1
seen = False
while True:
    work()
    if not seen and "_scalpels_pycalls" in sys.modules:
        seen = True; print("traced", flush=True)
    time.sleep(0.001)`,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      target.stdout.on('data', (c: Buffer) => (out += c.toString()));
      const forged = `{"t":"counts","pid":${target.pid},"items":[["MainThread","injected_by_nobody","/evil.py",1,424242,0,0]]}\\n`;
      const results: Record<string, { closed: boolean; sent: number }> = {};
      let socketDir = '';
      let listing: ReturnType<typeof asNobody> | undefined;
      let dirMode = 0;
      try {
        // Python must be up before it can be attached to.
        const up = Date.now() + 60_000;
        while (!readlinkSync(`/proc/${target.pid}/exe`).includes('python')) {
          if (Date.now() > up) throw new Error('target did not start');
          await new Promise((r) => setTimeout(r, 20));
        }
        const res = await runWorker(plugin, {
          pluginDir,
          technique: 'profiler',
          options: { function: 'work,injected_by_nobody', interval: '200ms' },
          target: { kind: 'pid', pids: [target.pid!], description: `pid ${target.pid}` },
          during: async () => {
            const end = Date.now() + 120_000;
            while (!out.includes('traced')) {
              if (Date.now() > end) throw new Error('the target was never traced');
              await new Promise((r) => setTimeout(r, 20));
            }
            const pid = workerPid();
            expect(pid, 'worker process').toBeDefined();
            const path = listeningPath(pid!);
            expect(path, 'worker socket').toMatch(/\/scalpels-pycalls-\w+\/agent\.sock$/);
            socketDir = dirname(path!);
            listing = asNobody(['ls', socketDir]);
            results.noKey = attack(path!, forged);
            results.bootNoKey = attack(path!, `{"t":"boot","pid":${target.pid}}\\n${forged}`);
            results.wrongKey = attack(
              path!,
              `{"t":"hello","pid":${target.pid},"key":"${'0'.repeat(64)}"}\\n${forged}`,
            );
            // An endless first line: cut after the bound, long before 64 MiB are accepted.
            results.flood = attack(path!, 'x'.repeat(1 << 16), 1024);
            dirMode = statSync(socketDir).mode & 0o777;
          },
        });
        expect(listing!.status, 'nobody listed the socket folder').not.toBe(0);
        expect(listing!.stderr).toMatch(/Permission denied/);
        expect(dirMode.toString(8), 'socket folder mode').toBe('711');
        for (const [name, r] of Object.entries(results))
          expect(r.closed, `${name}: the worker kept the connection`).toBe(true);
        expect(results.flood!.sent).toBeLessThan(64 << 20);
        const calls = res.records.filter(
          (r): r is Sample => r.kind === 'sample' && r.series === 'python.calls',
        );
        // The rule itself names the forged function (so a forgery would pass the filter), and
        // the attach event echoes the rule: what must be absent is any record of its calls.
        const forgedRecords = res.records.filter((r) =>
          JSON.stringify(r.kind === 'sample' ? r.labels : r.kind === 'event' ? r.key : '').includes(
            'injected_by_nobody',
          ),
        );
        expect(forgedRecords).toEqual([]);
        expect(JSON.stringify(res.records)).not.toContain('424242');
        expect(JSON.stringify(res.records)).not.toContain('/evil.py');
        const work = calls
          .filter((r) => r.labels?.function?.endsWith('work'))
          .reduce((a, r) => a + r.value, 0);
        expect(work, 'the traced process still reports its calls').toBeGreaterThan(0);
      } finally {
        target.kill('SIGKILL');
      }
    },
  );
});
