import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { validateOptions, type CheckContext, type VerifyStage } from '@scalpels/core';
import { capability } from '@scalpels/core/testing';
import plugin from '../src/index.js';
import { BUNDLED } from '../src/bundled.js';
import { buildTreeReleases, probeHost } from '../src/check.js';
import { CONTROL_PROBE, verifySystemtap } from '../src/verify.js';

function exec(argv: readonly string[], timeoutMs?: number): ReturnType<CheckContext['exec']> {
  return new Promise((resolve) =>
    execFile(
      argv[0]!,
      argv.slice(1),
      { timeout: timeoutMs, maxBuffer: 64 << 20 },
      (err, stdout, stderr) =>
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

const stap = await which('stap');
const hasStap = capability('stap', stap !== undefined, 'apt-get install -y systemtap');
const hasTree =
  hasStap &&
  capability(
    'a kernel build tree',
    probeHost().buildTree || buildTreeReleases().length > 0,
    'no /lib/modules/*/build: apt-get install -y linux-headers-amd64',
  );

const dir = mkdtempSync(join(tmpdir(), 'scalpels-stap-verify-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function verify(
  raw: Record<string, unknown>,
  trees?: readonly string[],
): Promise<readonly VerifyStage[]> {
  const options = validateOptions(plugin, raw);
  const ctx = { options, depth: 'full' as const, isRoot: process.getuid?.() === 0, exec, which };
  // With `trees`: validate against those build trees instead of whatever this machine has.
  return trees
    ? verifySystemtap(options, ctx, { ...probeHost(), buildTree: false }, trees)
    : plugin.verify!(options, ctx);
}

/**
 * A kernel build tree that builds nothing: stap finds what it checks for (.config, Module.symvers,
 * the release), but every module build, its tracepoint query modules included, fails. This is
 * what a headers package that does not match the compiler looks like to stap, made on purpose so
 * that the outcome does not depend on which headers the mirror serves.
 */
function brokenTree(): string {
  const tree = join(dir, 'broken-build-tree');
  if (existsSync(tree)) return tree;
  mkdirSync(join(tree, 'include', 'config'), { recursive: true });
  const real = buildTreeReleases()[0];
  if (real) copyFileSync(`/lib/modules/${real}/build/.config`, join(tree, '.config'));
  else writeFileSync(join(tree, '.config'), 'CONFIG_MODULES=y\nCONFIG_X86_64=y\n');
  writeFileSync(join(tree, 'include', 'config', 'kernel.release'), `${real ?? '6.1.0-0-amd64'}\n`);
  writeFileSync(join(tree, 'Module.symvers'), '');
  writeFileSync(
    join(tree, 'Makefile'),
    '%:\n\t@echo "this build tree builds nothing" >&2; exit 2\n',
  );
  return tree;
}

/** Whether stap resolves kernel tracepoints against `release` here: what the tapsets need. */
async function tracepointsResolve(release: string): Promise<{ ok: boolean; stderr: string }> {
  const r = await exec([stap!, '-r', release, '-p2', '-e', CONTROL_PROBE], 1_800_000);
  return { ok: r.exitCode === 0, stderr: r.stderr };
}

const status = (stages: readonly VerifyStage[]): Record<string, string> =>
  Object.fromEntries(stages.map((s) => [s.stage.split(' ')[0], s.status]));

describe.runIf(hasTree)('systemtap validate (stap passes as deep as this machine allows)', () => {
  it('has a test below for every bundled script', () => {
    expect(Object.keys(BUNDLED).sort()).toEqual(['python-calls', 'syscalls']);
  });

  it(
    'bundled script python-calls (user-space probes) passes parse, elaborate and translate against the installed headers',
    { timeout: 1_800_000 },
    async () => {
      const stages = await verify({ script: 'python-calls' });
      expect(status(stages)).toMatchObject({
        script: 'passed',
        parse: 'passed',
        elaborate: 'passed',
        translate: 'passed',
      });
      const compile = stages.find((x) => x.stage.startsWith('compile'))!;
      if (compile.status !== 'passed') {
        expect(compile.status).toBe('skipped');
        expect(compile.detail).toContain('cannot compile even an empty script');
      }
      const here = stages.at(-1)!;
      expect(here.stage).toBe('run here');
      expect(here.status === 'passed').toBe(
        (
          await plugin.check({
            options: validateOptions(plugin, {}),
            depth: 'full',
            isRoot: true,
            exec,
            which,
          })
        ).status === 'ok',
      );
    },
  );

  it(
    'bundled script syscalls (syscall tapset) elaborates exactly when kernel tracepoints resolve against the installed headers, and says why not otherwise',
    { timeout: 3_600_000 },
    async () => {
      const release = probeHost().buildTree ? probeHost().release : buildTreeReleases()[0]!;
      // One after the other: the first builds stap's tracepoint query modules (cached in
      // ~/.systemtap), the second reuses them; two at once would both build them.
      const stages = await verify({ script: 'syscalls' });
      const control = await tracepointsResolve(release);
      const s = status(stages);
      expect(s).toMatchObject({ script: 'passed', parse: 'passed' });
      const elaborate = stages.find((x) => x.stage.startsWith('elaborate'))!;
      if (control.ok) {
        expect(s).toMatchObject({ elaborate: 'passed', translate: 'passed' });
      } else {
        console.log(
          `kernel tracepoints do not resolve against ${release} here (${control.stderr.split('\n').find((l) => l.startsWith('semantic error')) ?? 'stap failed'}): checking the message instead`,
        );
        expect(elaborate).toMatchObject({ status: 'skipped' });
        expect(elaborate.detail).toContain('kernel probes cannot be resolved');
        expect(s).toMatchObject({ translate: 'skipped', compile: 'skipped' });
      }
    },
  );

  it(
    'fails a script with a syntax error at parse, quoting stap',
    { timeout: 120_000 },
    async () => {
      const file = join(dir, 'broken.stp');
      writeFileSync(file, 'probe begin { printf("x\\n" }\n');
      const stages = await verify({ script: file });
      expect(status(stages)).toMatchObject({
        script: 'passed',
        parse: 'failed',
        elaborate: 'skipped',
        compile: 'skipped',
      });
      expect(stages[1]!.detail).toContain('parse error');
    },
  );

  it(
    'fails a script probing something that does not exist at elaborate',
    { timeout: 120_000 },
    async () => {
      const file = join(dir, 'noprobe.stp');
      writeFileSync(file, 'probe process("/nonexistent/bin/x").function("main") { println(1) }\n');
      const stages = await verify({ script: file });
      expect(status(stages)).toMatchObject({
        parse: 'passed',
        elaborate: 'failed',
        translate: 'skipped',
      });
      expect(stages[2]!.detail).toMatch(/semantic error|error/);
    },
  );

  it(
    'compiles a bpf-runtime script to BPF (-p4) against the available headers',
    { timeout: 300_000 },
    async () => {
      const script = fileURLToPath(
        new URL('../testdata/recording/scripts/count-per-second.stp', import.meta.url),
      );
      const stages = await verify({ script, runtime: 'bpf', args: '1234' });
      expect(status(stages)).toMatchObject({
        parse: 'passed',
        elaborate: 'passed',
        translate: 'skipped',
        compile: 'passed',
      });
    },
  );

  it('refuses a missing script before running stap', () => {
    expect(() => validateOptions(plugin, { script: join(dir, 'absent.stp') })).toThrow(
      /does not exist/,
    );
  });

  it(
    'refuses embedded C without guru mode, and passes it with guru=true',
    { timeout: 120_000 },
    async () => {
      const file = join(dir, 'embedded.stp');
      writeFileSync(
        file,
        'function f:long() %{ STAP_RETVALUE = 1; %}\nprobe begin { println(f()) }\n',
      );
      expect(status(await verify({ script: file }))).toMatchObject({ parse: 'failed' });
      expect(status(await verify({ script: file, guru: 'true' }))).toMatchObject({
        parse: 'passed',
        elaborate: 'passed',
      });
    },
  );
});

describe.runIf(hasStap)('systemtap validate against a build tree that cannot build modules', () => {
  it(
    'says the syscall tapset cannot be resolved there instead of failing the script, and checks nothing further',
    { timeout: 600_000 },
    async () => {
      const tree = brokenTree();
      const stages = await verify({ script: 'syscalls' }, [tree]);
      expect(status(stages)).toMatchObject({
        script: 'passed',
        parse: 'passed',
        elaborate: 'skipped',
        translate: 'skipped',
        compile: 'skipped',
      });
      const elaborate = stages.find((x) => x.stage.startsWith('elaborate'))!;
      expect(elaborate.detail).toContain(
        `kernel probes cannot be resolved against kernel headers of ${tree}`,
      );
      expect(elaborate.detail).toContain(CONTROL_PROBE);
      expect(elaborate.detail).toContain('no match');
      expect(elaborate.detail).toContain('its kernel probes were not checked');
      expect(stages.some((x) => x.status === 'failed')).toBe(false);
    },
  );

  it(
    "still fails the script's own pass-2 errors there: an unknown function, a user-space probe on a missing binary",
    { timeout: 600_000 },
    async () => {
      const tree = brokenTree();
      const unknownFn = join(dir, 'unknown-function.stp');
      // The kernel probe does not resolve there; the begin probe's error is the script's own.
      writeFileSync(
        unknownFn,
        'probe syscall.close { println(1) }\nprobe begin { println(no_such_function()) }\n',
      );
      const missingBinary = join(dir, 'missing-binary.stp');
      writeFileSync(
        missingBinary,
        'probe process("/nonexistent/bin/x").function("main") { println(1) }\n',
      );
      const [a, b] = await Promise.all([
        verify({ script: unknownFn }, [tree]),
        verify({ script: missingBinary }, [tree]),
      ]);
      expect(status(a)).toMatchObject({ parse: 'passed', elaborate: 'failed' });
      expect(a.find((x) => x.stage.startsWith('elaborate'))!.detail).toContain(
        'unresolved function',
      );
      expect(status(b)).toMatchObject({ parse: 'passed', elaborate: 'failed' });
      expect(b.find((x) => x.stage.startsWith('elaborate'))!.detail).toContain('no match');
    },
  );

  it(
    'elaborates and translates a script that needs no kernel probe (begin, timer), whatever the build tree',
    { timeout: 600_000 },
    async () => {
      const file = join(dir, 'timer.stp');
      writeFileSync(
        file,
        'global n\nprobe timer.ms(100) { n++ }\nprobe end { printf("%d\\n", n) }\n',
      );
      const stages = await verify({ script: file }, [brokenTree()]);
      expect(status(stages)).toMatchObject({
        parse: 'passed',
        elaborate: 'passed',
        translate: 'passed',
        compile: 'skipped',
      });
      expect(stages.find((x) => x.stage.startsWith('compile'))!.detail).toContain(
        'cannot compile even an empty script',
      );
    },
  );

  it(
    'compiles a bpf-runtime script on user-space probes to BPF (-p4) there: the bpf path needs no module build',
    { timeout: 600_000 },
    async () => {
      const script = fileURLToPath(
        new URL('../testdata/recording/scripts/count-per-second.stp', import.meta.url),
      );
      const stages = await verify({ script, runtime: 'bpf', args: '1234' }, [brokenTree()]);
      expect(status(stages)).toMatchObject({
        parse: 'passed',
        elaborate: 'passed',
        translate: 'skipped',
        compile: 'passed',
      });
    },
  );
});
