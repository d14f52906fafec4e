import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { capability } from '@scalpels/core/testing';

const supervisor = fileURLToPath(new URL('../dist/supervise.js', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the supervisor around a shell command in its own process group, as the core's runner does. */
function supervise(
  command: string,
  opts: { stopAfterReady?: boolean; stopTimeoutMs?: number } = {},
): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        supervisor,
        '--module',
        'scalpels_test_1',
        '--runtime',
        'kernel',
        '--stop-timeout',
        String(opts.stopTimeoutMs ?? 5000),
        '--',
        'sh',
        '-c',
        command,
      ],
      { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (opts.stopAfterReady && stdout.includes('# scalpels: ready\n')) {
        opts.stopAfterReady = false;
        process.kill(-child.pid!, 'SIGINT');
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => {
      // Whatever the outcome, leave no test process behind.
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // the group is already gone
      }
      resolve({ code, stdout, stderr });
    });
  });
}

const built = capability(
  'built plugin',
  existsSync(supervisor),
  `${supervisor} is missing: run npx tsc -b in plugins/systemtap`,
);

describe.runIf(built)('systemtap worker supervisor', () => {
  it('lets stap finish its end probes on SIGINT and exits 0', async () => {
    const r = await supervise(
      'trap "echo 42; exit 0" INT; echo "# scalpels: ready"; while :; do sleep 0.05; done',
      {
        stopAfterReady: true,
      },
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('# scalpels: ready\n42\n');
  });

  it('escalates to SIGTERM and SIGKILL when stap ignores SIGINT, and fails', async () => {
    const r = await supervise(
      'trap "" INT TERM; echo "# scalpels: ready"; while :; do sleep 0.05; done',
      {
        stopAfterReady: true,
        stopTimeoutMs: 300,
      },
    );
    expect(r.stderr).toContain('did not exit 300 ms after SIGINT; sending SIGTERM');
    expect(r.stderr).toContain('sending SIGKILL');
    expect(r.code).not.toBe(0);
  });

  it("turns stap's skipped probes and transport failures into a drop notice", async () => {
    const r = await supervise(
      'echo 7; echo "WARNING: There were 2 transport failures." >&2; echo "WARNING: Number of errors: 0, skipped probes: 5" >&2',
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('7\n# scalpels: dropped 7\n');
  });

  it('explains a missing kernel build tree and keeps stap exit code', async () => {
    const r = await supervise(
      'echo \'Checking "/lib/modules/9.9.9-x/build/.config" failed with error: No such file or directory\' >&2; exit 1',
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /scalpels: SystemTap cannot build a module for kernel .*\/lib\/modules\/9\.9\.9-x\/build\/\.config is missing/,
    );
    expect(r.stderr).toContain('scalpels doctor');
  });
});
