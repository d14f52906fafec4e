// Presets from bundles: `scalpels presets`, `run --preset`, `start --preset` against a real
// agent, with a service that runs (a renamed copy of sleep) and services that do not.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '@scalpels/core/testing';
import { startAgent as startAgentProcess } from './agent-process.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'cli/dist/main.js');
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-presets-'));
const children: ResultPromise[] = [];
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await Promise.allSettled(children);
  rmSync(scratch, { recursive: true, force: true });
});

// A service of this test: a copy of sleep under its own name (comm is at most 15 characters).
const serviceName = `wsvc${process.pid % 100000}`;
const serviceBin = join(scratch, serviceName);
copyFileSync('/bin/sleep', serviceBin);

const bundles = join(scratch, 'bundles');
mkdirSync(join(bundles, 'scalpels-bundle-testsite'), { recursive: true });
writeFileSync(
  join(bundles, 'scalpels-bundle-testsite', 'package.json'),
  JSON.stringify({
    name: 'scalpels-bundle-testsite',
    version: '1.2.3',
    scalpels: {
      apiVersion: '>=1.0.0 <2',
      bundle: {
        presets: {
          'site-web': {
            description: 'a web node of this test',
            tracers: {
              proc: { options: { interval: '200ms', system: false } },
              nosuch: { optional: true },
            },
            services: [
              { name: 'web', match: ['no-such-unit-x1.service', serviceName] },
              { name: 'db', match: ['no-such-db-x1', 'no-such-db-x1.service'] },
            ],
          },
          'site-down': {
            description: 'nothing of it runs',
            tracers: { proc: {} },
            services: ['gone-svc-x1', { name: 'gone2', match: ['gone2-x1'] }],
          },
        },
      },
    },
  }),
);

const env = { NO_COLOR: '1', XDG_DATA_HOME: join(scratch, 'xdg'), SCALPELS_PLUGIN_PATH: bundles };
let n = 0;

function scalpels(args: string[], extra: string[] = []) {
  return runCli([...args, ...extra], { cli, env });
}

async function startAgent(): Promise<{ extra: string[]; proc: ResultPromise }> {
  const id = ++n;
  const socket = join(scratch, `agent-${id}`, 'agent.sock');
  const store = `sqlite://${join(scratch, `agent-${id}.db`)}`;
  const { proc } = await startAgentProcess(children, ['--socket', socket, '--store', store], env);
  return { extra: ['--agent', `unix://${socket}`, '--store', store], proc };
}

interface ListedPreset {
  name: string;
  bundle: { package: string; version: string };
  tracers: { name: string; optional: boolean; options: Record<string, string> }[];
  services: { name: string; match: string[]; running: string | null; pids: number[] }[];
}

describe('presets', () => {
  it('scalpels presets lists the OpenStack presets and which of a preset’s services run here', async () => {
    const service = execa(serviceBin, ['60'], { reject: false });
    children.push(service);
    const r = await scalpels(['presets', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const { presets, problems } = JSON.parse(r.stdout) as {
      presets: ListedPreset[];
      problems: string[];
    };
    expect(problems).toEqual([]);
    const byName = new Map(presets.map((p) => [p.name, p]));
    const controller = byName.get('openstack-controller')!;
    expect(controller.bundle.package).toBe('@scalpels/bundle-openstack');
    expect(controller.services.map((s) => s.name)).toEqual([
      'keystone',
      'glance-api',
      'placement-api',
      'nova-api',
      'nova-conductor',
      'nova-scheduler',
      'nova-novncproxy',
      'neutron-server',
      'cinder-api',
      'cinder-scheduler',
      'cinder-volume',
      'mariadb',
      'rabbitmq',
      'memcached',
    ]);
    expect(controller.services[3]!.match).toContain('devstack@n-api.service');
    expect(byName.get('openstack-compute')!.services.map((s) => s.name)).toEqual([
      'nova-compute',
      'libvirtd',
      'ovs-vswitchd',
      'neutron-openvswitch-agent',
      'ovn-controller',
      'neutron-ovn-metadata-agent',
    ]);
    const web = byName.get('site-web')!;
    expect(web.bundle).toMatchObject({ package: 'scalpels-bundle-testsite', version: '1.2.3' });
    expect(web.services).toMatchObject([
      { name: 'web', running: serviceName, pids: [service.pid] },
      { name: 'db', running: null, pids: [] },
    ]);
    const table = await scalpels(['presets']);
    expect(table.stdout).toMatch(
      /site-web\s+scalpels-bundle-testsite@1\.2\.3\s+proc,nosuch\?!\s+1\/2/,
    );
    service.kill('SIGKILL');
  });

  it('a malformed bundle is reported with what is wrong; the other presets stay usable', async () => {
    const broken = join(scratch, 'broken');
    mkdirSync(join(broken, 'scalpels-bundle-broken'), { recursive: true });
    writeFileSync(
      join(broken, 'scalpels-bundle-broken', 'package.json'),
      JSON.stringify({
        name: 'scalpels-bundle-broken',
        version: '0.0.1',
        scalpels: { apiVersion: '>=1.0.0 <2', bundle: { presets: { empty: { tracers: {} } } } },
      }),
    );
    const r = await runCli(['presets', '--json'], {
      cli,
      env: { ...env, SCALPELS_PLUGIN_PATH: `${bundles}:${broken}` },
      timeoutMs: 0,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { presets: { name: string }[]; problems: string[] };
    expect(out.problems).toHaveLength(1);
    expect(out.problems[0]).toMatch(
      /^scalpels-bundle-broken@0\.0\.1 \(.*\): preset "empty": "tracers" must name at least one tracer$/,
    );
    expect(out.presets.map((p) => p.name)).toContain('site-web');
  });

  it('an unknown preset is refused in one line', async () => {
    const r = await scalpels(['run', '--preset', 'nope', '--', 'true']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/unknown preset "nope" \(installed: .*site-web/);
  });

  it('start --preset traces the services found, names those not found and leaves out a missing optional tracer', async () => {
    const agent = await startAgent();
    const service = execa(serviceBin, ['60'], { reject: false });
    children.push(service);
    try {
      const started = await scalpels(['start', '--preset', 'site-web'], agent.extra);
      expect(started.exitCode, started.stderr).toBe(0);
      expect(started.stderr).toContain('preset site-web: optional tracer nosuch left out');
      expect(started.stderr).toContain(
        `services not found (not traced): db; traced: web (${serviceName})`,
      );
      const stopped = await scalpels(['stop', '--last'], agent.extra);
      expect(stopped.stdout).toMatch(/proc stopped/);
      const rep = await scalpels(['report', '--last', '--format', 'json'], agent.extra);
      const report = JSON.parse(rep.stdout) as {
        task: { target: string };
        tracers: { tracer: string; series: { name: string; labels: Record<string, string> }[] }[];
      };
      expect(report.task.target).toContain(`service ${serviceName} (1 process)`);
      expect(report.tracers.map((t) => t.tracer)).toEqual(['proc']);
      // The preset's options reached the tracer: per-process series of the service, no system ones.
      const series = report.tracers[0]!.series;
      expect(series.some((s) => s.labels.pid === String(service.pid))).toBe(true);
      expect(series.some((s) => s.name.startsWith('kernel.'))).toBe(false);
    } finally {
      service.kill('SIGKILL');
      agent.proc.kill('SIGTERM');
      await agent.proc;
    }
  });

  it('start --preset with none of its services running names them all and starts nothing', async () => {
    const agent = await startAgent();
    try {
      const r = await scalpels(['start', '--preset', 'site-down'], agent.extra);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(
        /preset site-down: none of its services runs here: not found: gone-svc-x1, gone2/,
      );
      const tasks = await scalpels(['tasks', '--json'], agent.extra);
      expect(JSON.parse(tasks.stdout || '[]')).toEqual([]);
    } finally {
      agent.proc.kill('SIGTERM');
      await agent.proc;
    }
  });

  it('run --preset runs its tracers with its options; --set overrides them', async () => {
    const store = `sqlite://${join(scratch, 'run.db')}`;
    const r = await scalpels([
      'run',
      '--preset',
      'site-web',
      '--set',
      'proc.system=true',
      '--store',
      store,
      '--format',
      'none',
      '--',
      'sleep',
      '0.5',
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain('run traces the command');
    const rep = await scalpels(['report', '--last', '--format', 'json', '--store', store]);
    const report = JSON.parse(rep.stdout) as {
      tracers: { tracer: string; status: string; series: { name: string }[] }[];
    };
    expect(report.tracers.map((t) => [t.tracer, t.status])).toEqual([['proc', 'stopped']]);
    expect(report.tracers[0]!.series.some((s) => s.name.startsWith('kernel.'))).toBe(true);
  });
});
