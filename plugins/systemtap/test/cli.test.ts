import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { validateOptions, type CheckContext } from '@scalpels/core';
import { capability, cliEntry, runCli, runCliOk, type CliResult } from '@scalpels/core/testing';
import plugin from '../src/index.js';
import { buildTreeReleases, probeHost } from '../src/check.js';
import { CONTROL_PROBE } from '../src/verify.js';

const cli = cliEntry();
const hasCli = capability(
  'scalpels CLI',
  cli !== undefined,
  'no built @scalpels/cli found: build the workspace (npx tsc -b)',
);
const dir = mkdtempSync(join(tmpdir(), 'scalpels-stap-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const env = { NO_COLOR: '1', XDG_DATA_HOME: dir };

function scalpels(args: string[], timeoutMs = 120_000): Promise<CliResult> {
  return runCli(args, { cli, timeoutMs, env });
}

function exec(argv: readonly string[], timeoutMs?: number): ReturnType<CheckContext['exec']> {
  return new Promise((resolve) =>
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs }, (err, stdout, stderr) =>
      resolve({
        exitCode: err ? (typeof err.code === 'number' ? err.code : 1) : 0,
        stdout,
        stderr,
      }),
    ),
  );
}
async function which(binary: string): Promise<string | undefined> {
  const r = await exec(['sh', '-c', `command -v ${binary}`]);
  return r.exitCode === 0 ? r.stdout.trim() : undefined;
}

describe.runIf(hasCli)('systemtap through the scalpels CLI', () => {
  it('documents options, conventions and bundled scripts in plugins info', async () => {
    const r = await scalpels(['plugins', 'info', 'systemtap']);
    expect(r.exitCode).toBe(0);
    for (const text of [
      'script',
      'runtime',
      'guru',
      'flags',
      'functions',
      'syscalls',
      'python-calls',
      '# scalpels:',
      'systemtap.counter',
      'systemtap.event',
    ]) {
      expect(r.stdout).toContain(text);
    }
  });

  it('refuses guru mode through flags as a user error', async () => {
    const r = await scalpels([
      'run',
      '-t',
      'systemtap',
      '--set',
      'systemtap.flags=-g',
      '--store',
      `sqlite://${dir}/a.db`,
      '--',
      'true',
    ]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('guru mode is the option guru=true');
  });

  it(
    'starts, or fails fast with the reason and what to install',
    { timeout: 300_000 },
    async () => {
      const here = await plugin.check({
        options: validateOptions(plugin, {}),
        depth: 'full',
        isRoot: true,
        exec,
        which,
      });
      const store = `sqlite://${dir}/run.db`;
      const r = await scalpels(
        [
          'run',
          '-t',
          'systemtap',
          '--set',
          'systemtap.interval=200ms',
          '--store',
          store,
          '--',
          'sh',
          '-c',
          'for i in 1 2 3 4 5; do cat /etc/hostname > /dev/null; done',
        ],
        280_000,
      );
      if (here.status !== 'ok') {
        expect(r.exitCode).toBe(1);
        expect(r.stderr).toContain('systemtap cannot run here');
        expect(r.stderr).toContain(here.detail);
        expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
        return;
      }
      expect(r.exitCode, r.stderr).toBe(0);
      const report = await runCliOk(['report', '--last', '--format', 'json', '--store', store], {
        cli,
        env,
      });
      const json = JSON.parse(report) as {
        tracers: { series: { name: string; labels: Record<string, string>; sum: number }[] }[];
      };
      const open = json.tracers[0]!.series.find(
        (s) => s.name === 'systemtap.syscalls' && s.labels.syscall === 'open',
      );
      expect(open!.sum).toBeGreaterThanOrEqual(5);
    },
  );

  it('validate exits 1 and quotes stap on a broken script', { timeout: 120_000 }, async () => {
    if (!capability('stap', (await which('stap')) !== undefined, 'apt-get install -y systemtap'))
      return;
    const file = join(dir, 'broken.stp');
    writeFileSync(file, 'probe begin { println(1 }\n');
    const r = await scalpels(['plugins', 'validate', 'systemtap', `script=${file}`]);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(/parse \(stap -p1\)\s+failed\s+.*parse error/);
  });

  it(
    'validates a bundled script stage by stage: elaborates it when kernel tracepoints resolve here, says why not otherwise',
    { timeout: 3_600_000 },
    async () => {
      const stap = await which('stap');
      if (!capability('stap', stap !== undefined, 'apt-get install -y systemtap')) return;
      const release = probeHost().buildTree ? probeHost().release : buildTreeReleases()[0];
      if (
        !capability(
          'a kernel build tree',
          release !== undefined,
          'no /lib/modules/*/build: apt-get install -y linux-headers-amd64',
        )
      )
        return;
      // One after the other: the first builds stap's tracepoint query modules, the second reuses them.
      const r = await scalpels(['plugins', 'validate', 'systemtap', 'script=syscalls'], 3_500_000);
      const control = await exec([stap!, '-r', release!, '-p2', '-e', CONTROL_PROBE], 3_500_000);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/parse \(stap -p1\)\s+passed/);
      expect(r.stdout).not.toMatch(/\bfailed\b/);
      if (control.exitCode === 0) {
        expect(r.stdout).toMatch(/elaborate \(stap -p2\)\s+passed/);
      } else {
        console.log(
          `kernel tracepoints do not resolve against ${release} here: checking the message`,
        );
        expect(r.stdout).toMatch(
          /elaborate \(stap -p2\)\s+skipped\s+kernel probes cannot be resolved/,
        );
      }
    },
  );
});
