import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { validateOptions, type CheckContext, type VerifyStage } from '@scalpels/core';
import { capability } from '@scalpels/core/testing';
import plugin from '../src/index.js';
import { BUNDLED } from '../src/bundled.js';
import { buildTreeReleases, probeHost } from '../src/check.js';

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

async function verify(raw: Record<string, unknown>): Promise<readonly VerifyStage[]> {
  const options = validateOptions(plugin, raw);
  return plugin.verify!(options, {
    options,
    depth: 'full',
    isRoot: process.getuid?.() === 0,
    exec,
    which,
  });
}
const status = (stages: readonly VerifyStage[]): Record<string, string> =>
  Object.fromEntries(stages.map((s) => [s.stage.split(' ')[0], s.status]));

describe.runIf(hasTree)('systemtap validate (stap passes as deep as this machine allows)', () => {
  for (const name of Object.keys(BUNDLED)) {
    it(
      `passes bundled script ${name} through parse, elaborate and translate; compile passes or the toolchain is at fault`,
      { timeout: 600_000 },
      async () => {
        const stages = await verify({ script: name });
        const s = status(stages);
        expect(s).toMatchObject({
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
  }

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
