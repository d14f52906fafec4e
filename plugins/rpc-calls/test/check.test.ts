import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { capability, trustedScratchDir } from '@scalpels/core/testing';
import { validateOptions, type CheckContext } from '@scalpels/core';
import plugin from '../src/index.js';
import type { Options } from '../src/options.js';
import { ctlReason } from '../src/broker.js';
import { createVhost, deleteVhost, vhostTracing } from './fixtures/oslo-peer.mjs';
import { brokerUp, checkContext, rabbitmqctlWorks, runSetup, runUndo } from './helpers.js';

const live =
  capability('rabbitmq', await brokerUp(), 'no RabbitMQ listening on 127.0.0.1:5672') &&
  capability('rabbitmqctl', rabbitmqctlWorks(), 'rabbitmqctl missing or not allowed (run as root)');
// Password files must be root's and protected (see docs/security.md): a trusted scratch folder.
const scratch = trustedScratchDir('rpc-check-');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const check = (
  raw: Record<string, unknown>,
  depth: 'quick' | 'full',
  tweak: Partial<CheckContext<Options>> = {},
) => plugin.check({ ...checkContext(validateOptions(plugin, raw), depth), ...tweak });

describe.runIf(live)('rpc-calls check against the real broker', () => {
  it('quick: cheap probes only, nothing spawned', async () => {
    const spawned: string[][] = [];
    const r = await check({}, 'quick', {
      exec: async (argv) => {
        spawned.push([...argv]);
        return { exitCode: 1, stdout: '', stderr: '' };
      },
    });
    expect(r).toMatchObject({ status: 'ok', technique: 'firehose+nft' });
    expect(r.detail).toContain('not probed');
    expect(spawned).toEqual([]);
  });

  it('full: broker, credentials, firehose exchange and tracing switch', async () => {
    const r = await check({}, 'full');
    expect(r).toMatchObject({ status: 'ok', technique: 'firehose+nft' });
    expect(r.detail).toMatch(/reachable, tracing switch via .*rabbitmqctl/);
  });

  it('falls back along the techniques', async () => {
    expect(await check({ traffic: false }, 'full')).toMatchObject({
      status: 'ok',
      technique: 'firehose',
    });
    expect(await check({}, 'full', { isRoot: false })).toMatchObject({
      status: 'ok',
      technique: 'firehose+ss',
    });
  });

  it('refused credentials are fixable, with a hint', async () => {
    const file = join(scratch, 'password');
    writeFileSync(file, 'not-the-password\n', { mode: 0o600 });
    const r = await check({ 'password-file': file }, 'full');
    expect(r.status).toBe('fixable');
    expect(r.detail).toMatch(/refused the credentials of user guest/);
    expect(r.hint).toContain('password-file');
  });

  it('an unreachable broker is fixable, with a hint', async () => {
    const r = await check({ port: 1 }, 'full');
    expect(r.status).toBe('fixable');
    expect(r.detail).toContain('not reachable at 127.0.0.1:1');
    expect(r.hint).toMatch(/rabbitmq-server|rpc-calls.port/);
  });

  it('a vhost that does not exist is reported', async () => {
    const r = await check({ vhost: 'no-such-vhost-for-scalpels' }, 'full');
    expect(r.status).toBe('fixable');
    expect(r.detail).toContain('no-such-vhost-for-scalpels');
  });

  it('for a remote broker, points to the management API; rabbitmqctl is never an option', async () => {
    expect(() => validateOptions(plugin, { rabbitmqctl: '/usr/sbin/rabbitmqctl' })).toThrow(
      /^rpc-calls: option "rabbitmqctl" is no longer accepted: .*\/etc\/scalpels\/config\.json$/,
    );
    const remote = await check({ host: '192.0.2.1' }, 'quick');
    expect(remote.status).toBe('fixable');
    expect(remote.hint).toContain('rpc-calls.management-url=http://192.0.2.1:15672');
  });

  it('says why rabbitmqctl refused, not its usage text', () => {
    const canSwitchUser = capability(
      'runuser as root',
      process.getuid?.() === 0 && existsSync('/usr/sbin/runuser'),
      'needs root and runuser',
    );
    if (!canSwitchUser) return;
    const r = spawnSync('runuser', ['-u', 'nobody', '--', 'rabbitmqctl', '-q', 'list_vhosts'], {
      env: { ...process.env, HOME: '/tmp' },
      encoding: 'utf8',
    });
    expect(r.status).not.toBe(0);
    expect(r.stdout + r.stderr).toContain('Usage');
    expect(ctlReason(r.stdout, r.stderr)).toBe('Only root or rabbitmq should run rabbitmqctl');
  });

  it('validate: every stage short of changing the broker, and which permission is missing', async () => {
    // vhost / explicitly: the default is the vhost the node's OpenStack services use (the lab's
    // `openstack` when it runs), and the read-only user below is given rights on / only.
    const ok = await plugin.verify!(
      validateOptions(plugin, { vhost: '/' }),
      checkContext(validateOptions(plugin, { vhost: '/' }), 'full'),
    );
    expect(ok.map((s) => [s.stage, s.status])).toEqual([
      ['broker', 'passed'],
      ['firehose exchange', 'passed'],
      ['trace queue', 'passed'],
      ['tracing switch', 'passed'],
      ['traffic', 'passed'],
    ]);
    // A user that may read but not configure (declare queues) on the vhost.
    const user = `scalpels-ro-${process.pid}`;
    const file = join(scratch, 'ro-password');
    writeFileSync(file, 'ro-secret\n', { mode: 0o600 });
    execFileSync('rabbitmqctl', ['-q', 'add_user', user, 'ro-secret']);
    try {
      execFileSync('rabbitmqctl', ['-q', 'set_permissions', '-p', '/', user, '^$', '^$', '.*']);
      const options = validateOptions(plugin, { user, 'password-file': file, vhost: '/' });
      const stages = await plugin.verify!(options, checkContext(options, 'full'));
      expect(stages.find((s) => s.stage === 'broker')?.status).toBe('passed');
      expect(stages.find((s) => s.stage === 'trace queue')).toMatchObject({ status: 'failed' });
      expect(stages.find((s) => s.stage === 'trace queue')?.detail).toMatch(/ACCESS_REFUSED/);
    } finally {
      execFileSync('rabbitmqctl', ['-q', 'delete_user', user]);
    }
  });

  it('switches tracing on the nodes named in the option nodes, and back off', async () => {
    const vhost = `scalpels-test-rpc-nodes-${process.pid}`;
    createVhost(vhost);
    try {
      // The broker's own Erlang node name, as `-n` wants it (an atom, maybe quoted).
      const node = execFileSync('rabbitmqctl', ['-q', 'eval', 'node().'])
        .toString()
        .trim()
        .replace(/^'|'$/g, '');
      const options = validateOptions(plugin, { vhost, nodes: node });
      const { journal } = await runSetup(options, `nodes-${process.pid}`, 'firehose');
      const on = journal.find((a) => a.kind === 'rabbitmq-trace-on')!;
      expect(on.data).toMatchObject({ vhost, node });
      expect(on.description).toContain('-n rabbit@');
      expect(vhostTracing(vhost)).toBe(true);
      await runUndo(journal, options);
      expect(vhostTracing(vhost)).toBe(false);
      expect(() => validateOptions(plugin, { nodes: 'not-a-node' })).toThrow(/nodes/);
    } finally {
      deleteVhost(vhost);
    }
  });
});
