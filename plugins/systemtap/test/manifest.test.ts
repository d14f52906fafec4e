import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { validateOptions, type Target, type TrustPolicy, type WorkerContext } from '@scalpels/core';
import { trustedScratchDir } from '@scalpels/core/testing';
import plugin from '../src/index.js';
import { READY_LINE, moduleName } from '../src/command.js';
import { stapFlags } from '../src/flags.js';

const pluginDir = fileURLToPath(new URL('..', import.meta.url));
const runtimeDir = mkdtempSync(join(tmpdir(), 'scalpels-stap-test-'));
// User scripts must be root's and in root's folders (docs/security.md): a trusted scratch folder.
const scriptDir = trustedScratchDir('stap-test-');
const userScript = join(scriptDir, 'top.stp');
writeFileSync(userScript, 'probe begin { println(1) }\n', { mode: 0o644 });
afterAll(() => {
  rmSync(runtimeDir, { recursive: true, force: true });
  rmSync(scriptDir, { recursive: true, force: true });
});
const allowAll: TrustPolicy = { allowScripts: true, allowGuru: true };

function ctx(target: Target, policy: TrustPolicy = allowAll): WorkerContext {
  return { target, taskId: '01J9ZK-task', tracerId: 3, runtimeDir, pluginDir, policy };
}
const none: Target = { kind: 'none', pids: [], description: 'system-wide' };

const spec = <T>(x: T): T => x;

async function argvFor(raw: Record<string, unknown>, target: Target = none): Promise<string[]> {
  const spec = await plugin.worker(validateOptions(plugin, raw), ctx(target));
  return [...spec.argv];
}

describe('systemtap options', () => {
  it('defaults to the bundled syscalls script on the kernel runtime', () => {
    const o = validateOptions(plugin, {});
    expect(o).toMatchObject({ script: 'syscalls', runtime: 'kernel', guru: false, interval: 1000 });
  });

  it('accepts allow-listed flags and refuses the rest with the reason', () => {
    expect(
      stapFlags(
        ['-w', '-s 8', '-DMAXACTION=5000', '--skip-badvars', '-G limit=10', '-d /usr/bin/python3'],
        false,
      ),
    ).toEqual({
      argv: [
        '-w',
        '-s',
        '8',
        '-DMAXACTION=5000',
        '--skip-badvars',
        '-G',
        'limit=10',
        '-d',
        '/usr/bin/python3',
      ],
    });
    for (const bad of [
      '-g',
      '--guru-mode',
      '-o /tmp/x',
      '-DSTP_NO_OVERLOAD=1',
      '-c ls',
      '-x 1',
      '-p4',
      '-b',
      '-G x="a b"',
    ]) {
      expect(stapFlags([bad], false)).toHaveProperty('error');
    }
    expect(stapFlags(['-I /srv/tapsets'], false)).toHaveProperty('error');
    expect(stapFlags(['-I /srv/tapsets'], true)).toEqual({ argv: ['-I', '/srv/tapsets'] });
  });

  it('refuses guru mode smuggled through flags, and bundled scripts on a runtime they do not support', () => {
    expect(() => validateOptions(plugin, { flags: '-g' })).toThrow(/guru=true/);
    expect(() => validateOptions(plugin, { runtime: 'bpf' })).toThrow(/syscalls.*kernel/);
    expect(() => validateOptions(plugin, { script: 'python-calls', args: 'x' })).toThrow(
      /not args/,
    );
    expect(() => validateOptions(plugin, { script: 'nonsense' })).toThrow(
      /neither a bundled script/,
    );
    expect(() => validateOptions(plugin, { runtime: 'dyninst' })).toThrow(/runtime/);
    expect(() =>
      validateOptions(plugin, { script: 'python-calls', functions: 'no colon' }),
    ).toThrow(/functions/);
  });
});

describe('systemtap worker command', () => {
  it('runs stap under the supervisor with a module name, SIGINT stop and a ready probe', async () => {
    const spec = await plugin.worker(validateOptions(plugin, {}), ctx(none));
    const argv = [...spec.argv];
    expect(argv[0]).toBe(process.execPath);
    expect(argv[1]).toBe(join(pluginDir, 'dist', 'supervise.js'));
    const module = moduleName('01J9ZK-task', 3);
    expect(module).toBe('scalpels_01j9zktask_3');
    expect(argv.slice(argv.indexOf('--'))).toEqual([
      '--',
      'stap',
      '-m',
      module,
      '-E',
      expect.stringContaining(READY_LINE),
      join(pluginDir, 'scripts', 'syscalls.stp'),
      '1000',
    ]);
    expect(spec.stop?.signal).toBe('SIGINT');
    expect(spec.stop!.graceMs!).toBeGreaterThan(20_000);
    expect(spec.ready?.stdout?.test(READY_LINE)).toBe(true);
    expect(spec.cwd).toBe(runtimeDir);
  });

  it('maps the target to -x and never to -c', async () => {
    const run: Target = {
      kind: 'run',
      pids: [process.pid],
      command: ['sleep', '1'],
      description: 'run: sleep 1',
    };
    const argv = await argvFor({ interval: '250ms' }, run);
    const stap = argv.slice(argv.indexOf('stap'));
    expect(stap.slice(stap.indexOf('-x'), stap.indexOf('-x') + 2)).toEqual([
      '-x',
      String(process.pid),
    ]);
    expect(stap).not.toContain('-c');
    expect(stap.at(-1)).toBe('250');
    const many = await argvFor(
      {},
      { kind: 'service', pids: [10, 20, 30], description: 'service x' },
    );
    expect(many.slice(many.indexOf('--extra-roots'), many.indexOf('--extra-roots') + 2)).toEqual([
      '--extra-roots',
      '20,30',
    ]);
  });

  it('passes a user script its args, runtime, guru mode and flags', async () => {
    const argv = await argvFor({
      script: userScript,
      args: 'nova,5',
      runtime: 'bpf',
      guru: 'true',
      flags: '-w,-s 4',
    });
    const stap = argv.slice(argv.indexOf('stap'));
    expect(stap.slice(0, 6)).toEqual([
      'stap',
      '--runtime=bpf',
      '-g',
      '-m',
      'scalpels_01j9zktask_3',
      '-w',
    ]);
    expect(stap.slice(-3)).toEqual([userScript, 'nova', '5']);
    expect(
      spec(await plugin.worker(validateOptions(plugin, { script: userScript }), ctx(none))).mayExit,
    ).toBe(true);
    expect(argv.slice(argv.indexOf('--runtime'), argv.indexOf('--runtime') + 2)).toEqual([
      '--runtime',
      'bpf',
    ]);
  });

  it('builds no worker for a user script or guru mode that root did not allow', async () => {
    const deny: TrustPolicy = { allowScripts: false, allowGuru: false };
    const scriptOnly: TrustPolicy = { allowScripts: true, allowGuru: false };
    const build = (raw: Record<string, unknown>, policy: TrustPolicy) =>
      Promise.resolve().then(() => plugin.worker(validateOptions(plugin, raw), ctx(none, policy)));
    await expect(build({ script: userScript }, deny)).rejects.toThrow(
      /^systemtap: option "script": ".*" refused: user scripts need the agent \(or scalpels run\) started with --allow-scripts$/,
    );
    await expect(build({ script: userScript, guru: 'true' }, scriptOnly)).rejects.toThrow(
      /^systemtap: option "guru" refused: .*--allow-guru$/,
    );
    await expect(build({ guru: 'true' }, deny)).rejects.toThrow(/--allow-guru/);
  });

  it('gives python-calls the interpreter, interval and function filter', async () => {
    const argv = await argvFor({
      script: 'python-calls',
      python: '/usr/bin/python3',
      interval: '2s',
    });
    const tail = argv.slice(-4);
    expect(tail[0]).toBe(join(pluginDir, 'scripts', 'python-calls.stp'));
    expect(tail[1]).toMatch(/^\/.*python3[\d.]*$/);
    expect(tail[2]).toBe('2000');
    expect(tail[3]!.split(',')).toContain('oslo_messaging/rpc/client.py:call');
    expect(tail[3]!.split(',')).toContain('sqlalchemy/engine/base.py:execute');
  });

  it('declares a schema with the series its parser emits', () => {
    expect(Object.keys(plugin.schema.series)).toEqual([
      'systemtap.syscalls',
      'systemtap.python_calls',
      'systemtap.counter',
      'systemtap.gauge',
      'systemtap.histogram',
    ]);
    expect(plugin.schema.series['systemtap.histogram']!.kind).toBe('histogram');
  });
});
