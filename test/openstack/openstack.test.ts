// Acceptance on a real OpenStack (Debian 12 packages, ../shared/openstack-lab): each tracer and
// every preset, with default options as an operator runs them, against the lab's independent
// figures (the workload's own counts, performance_schema, file sizes). The lab's services add
// background SQL and RPC: counts are filtered by the workload's names, schema or vhost.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capability, machineTestLock } from '@scalpels/core/testing';
import { startAgent as startAgentProcess } from '../agent-process.js';
import {
  LAB_SERVICES,
  adminEnv,
  labDir,
  labPid,
  labPresent,
  labUp,
  waitLabIdle,
  repoRoot,
  workloadResult,
} from './lab.js';

const onCi = process.env.CI === 'true';
if (onCi && !labPresent)
  throw new Error(
    `the OpenStack lab is missing at ${labDir} (CI checks out the repository beside shared/; or set SCALPELS_OPENSTACK_LAB)`,
  );
const live = capability(
  'OpenStack lab',
  labPresent && process.getuid?.() === 0,
  `needs root and the lab at ${labDir} (SCALPELS_OPENSTACK_LAB)`,
);

const cli = join(repoRoot, 'cli/dist/main.js');
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-openstack-'));
const store = `sqlite://${join(scratch, 'store.db')}`;
const env = { NO_COLOR: '1', XDG_DATA_HOME: join(scratch, 'xdg') };
const children: ResultPromise[] = [];
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await Promise.allSettled(children);
  rmSync(scratch, { recursive: true, force: true });
});

function scalpels(args: string[], extra: string[] = [], timeout = 15 * 60_000) {
  // Options go before `--`: what follows it is the workload's command line.
  const dash = args.indexOf('--');
  const argv =
    dash < 0
      ? [...args, '--store', store, ...extra]
      : [...args.slice(0, dash), '--store', store, ...extra, ...args.slice(dash)];
  return execa(process.execPath, [cli, ...argv], {
    reject: false,
    env,
    timeout,
  });
}

async function startAgent(): Promise<string[]> {
  const socket = join(scratch, 'agent', 'agent.sock');
  await startAgentProcess(children, ['--socket', socket, '--store', store], env);
  return ['--agent', `unix://${socket}`];
}

interface ReportSeries {
  name: string;
  labels: Record<string, string>;
  sum: number | null;
}
interface ReportTracer {
  tracer: string;
  status: string;
  error: string | null;
  series: ReportSeries[];
  events: { count: number };
}
async function report(task: string): Promise<ReportTracer[]> {
  const r = await scalpels(['report', task, '--format', 'json']);
  expect(r.exitCode, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { tracers: ReportTracer[] }).tracers;
}
const sumBy = (series: ReportSeries[], name: string, key: (s: ReportSeries) => string) => {
  const out: Record<string, number> = {};
  for (const s of series.filter((x) => x.name === name))
    out[key(s)] = (out[key(s)] ?? 0) + (s.sum ?? 0);
  return out;
};

const workload = join(labDir, 'workload.sh');
/** A workload of 10 boots takes 1-3 minutes on the busy 2-core host. */
const TEST_TIMEOUT = 15 * 60_000;
const SCHEMAS = ['keystone', 'glance', 'placement', 'nova_api', 'nova', 'nova_cell0'];

/** SUM(COUNT_STAR) per schema from performance_schema's digest table: the server's own figure. */
async function digestTotals(): Promise<Record<string, number>> {
  const r = await execa('mysql', [
    '-uroot',
    '-N',
    '-B',
    '-e',
    `SELECT SCHEMA_NAME, SUM(COUNT_STAR) FROM performance_schema.events_statements_summary_by_digest WHERE SCHEMA_NAME IN (${SCHEMAS.map((s) => `'${s}'`).join(',')}) GROUP BY SCHEMA_NAME`,
  ]);
  const out: Record<string, number> = {};
  for (const line of r.stdout.split('\n').filter(Boolean)) {
    const [schema, n] = line.split('\t');
    out[schema!] = Number(n);
  }
  return out;
}

describe.runIf(live)('OpenStack lab (Debian packages)', () => {
  let agent: string[] = [];
  beforeAll(async () => {
    await labUp();
    agent = await startAgent();
  }, 25 * 60_000);

  it(
    'rpc-calls with default options counts the four nova methods of 10 boots: 10/10/10/10',
    async () => {
      await waitLabIdle();
      const r = await scalpels([
        'run',
        '-t',
        'rpc-calls',
        '--name',
        'os-rpc',
        '--',
        workload,
        '10',
      ]);
      expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
      expect(workloadResult(r.stdout)).toMatchObject({
        requested: 10,
        active: 10,
        gone: 10,
        errors: 0,
      });
      const [rpc] = await report('os-rpc');
      expect(rpc!.status).toBe('stopped');
      const published = {
        ...sumBy(rpc!.series, 'rpc.calls', (s) => s.labels.method!.split('.').pop()!),
      };
      for (const [m, n] of Object.entries(
        sumBy(rpc!.series, 'rpc.casts', (s) => s.labels.method!.split('.').pop()!),
      ))
        published[m] = (published[m] ?? 0) + n;
      expect({
        schedule_and_build_instances: published.schedule_and_build_instances,
        select_destinations: published.select_destinations,
        build_and_run_instance: published.build_and_run_instance,
        terminate_instance: published.terminate_instance,
      }).toEqual({
        schedule_and_build_instances: 10,
        select_destinations: 10,
        build_and_run_instance: 10,
        terminate_instance: 10,
      });
    },
    TEST_TIMEOUT,
  );

  it(
    'rpc-calls on a vhost the services do not use says so in its note: traffic, nothing decoded',
    async () => {
      const vhost = `scalpels-os-empty-${process.pid}`;
      await execa('rabbitmqctl', ['-q', 'add_vhost', vhost]);
      try {
        await execa('rabbitmqctl', [
          '-q',
          'set_permissions',
          '-p',
          vhost,
          'guest',
          '.*',
          '.*',
          '.*',
        ]);
        await waitLabIdle();
        const r = await scalpels([
          'run',
          '-t',
          'rpc-calls',
          '--set',
          `rpc-calls.vhost=${vhost}`,
          '--name',
          'os-rpc-empty',
          '--',
          workload,
          '1',
        ]);
        expect(r.stdout, r.stderr).toMatch(/^RESULT servers requested=1 /m);
        const [rpc] = await report('os-rpc-empty');
        expect(rpc!.series.filter((s) => s.name === 'rpc.calls')).toEqual([]);
        expect(rpc!.error).toMatch(
          /^note: port 5672 carried \d+ bytes to the broker but no message was traced on vhost scalpels-os-empty-/,
        );
      } finally {
        await execa('rabbitmqctl', ['-q', 'delete_vhost', vhost], { reject: false });
      }
    },
    TEST_TIMEOUT,
  );

  it(
    'proc --service for the seven services tells them apart by name (uwsgi apps included), each rooted at the pid its init script wrote',
    async () => {
      const names = Object.keys(LAB_SERVICES);
      const started = await scalpels(
        [
          'start',
          '-t',
          'proc',
          '--set',
          'proc.interval=500ms',
          '--name',
          'os-proc',
          ...names.flatMap((n) => ['--service', n]),
        ],
        agent,
      );
      expect(started.exitCode, started.stderr).toBe(0);
      const tokens = await execa('bash', [workload, 'tokens', '5'], { reject: false });
      expect(tokens.exitCode, tokens.stdout).toBe(0);
      const stopped = await scalpels(['stop', 'os-proc'], agent);
      expect(stopped.exitCode, stopped.stderr).toBe(0);
      const [proc] = await report('os-proc');
      const cpu = proc!.series.filter((s) => s.name === 'proc.cpu.user');
      // One tree per service, labelled with the service's name (not uwsgi_python311 or python3),
      // rooted at the pid the init script wrote.
      expect(Object.fromEntries(cpu.map((s) => [s.labels.comm, Number(s.labels.pid)]))).toEqual(
        Object.fromEntries(names.map((n) => [n, labPid(n)])),
      );
      // --service keystone found the uwsgi master and its workers (one tree)
      const json = await scalpels(['report', 'os-proc', '--format', 'json']);
      const target = (JSON.parse(json.stdout) as { task: { target: string } }).task.target;
      expect(Number(/service keystone \((\d+) processes\)/.exec(target)?.[1])).toBeGreaterThan(1);
      // keystone answered 5 token requests: its tree used CPU
      expect(cpu.find((s) => s.labels.comm === 'keystone')!.sum).toBeGreaterThan(0);
    },
    TEST_TIMEOUT,
  );

  it(
    'the controller preset finds every controller service of the lab; the compute preset nova-compute',
    async () => {
      const r = await scalpels(['presets', '--json']);
      expect(r.exitCode, r.stderr).toBe(0);
      const presets = (
        JSON.parse(r.stdout) as {
          presets: {
            name: string;
            services: { name: string; running: string | null; pids: number[] }[];
          }[];
        }
      ).presets;
      const found = (preset: string) =>
        Object.fromEntries(
          presets
            .find((p) => p.name === preset)!
            .services.filter((s) => s.running)
            .map((s) => [s.name, s.pids]),
        );
      const controller = found('openstack-controller');
      for (const s of [
        'keystone',
        'glance-api',
        'placement-api',
        'nova-api',
        'nova-conductor',
        'nova-scheduler',
      ])
        expect(controller[s], s).toEqual([labPid(s)]);
      expect(Object.keys(controller)).toEqual(expect.arrayContaining(['mariadb', 'rabbitmq']));
      expect(found('openstack-compute')['nova-compute']).toEqual([labPid('nova-compute')]);

      // start --preset: the services found are traced, the missing ones named, none failing the rest
      const started = await scalpels(
        ['start', '--preset', 'openstack-controller', '-t', 'proc', '--name', 'os-preset'],
        agent,
      );
      expect(started.exitCode, started.stderr).toBe(0);
      expect(started.stderr).toMatch(/services not found \(not traced\): .*neutron-server/);
      const stopped = await scalpels(['stop', 'os-preset'], agent);
      expect(stopped.exitCode, stopped.stderr).toBe(0);
      const tracers = await report('os-preset');
      const proc = tracers.find((t) => t.tracer === 'proc')!;
      const labels = new Set(
        proc.series.filter((s) => s.name === 'proc.cpu.user').map((s) => s.labels.comm),
      );
      for (const s of ['keystone', 'glance-api', 'placement-api', 'nova-api', 'nova-conductor'])
        expect(labels.has(s), `${s} in ${[...labels].join(', ')}`).toBe(true);
    },
    TEST_TIMEOUT,
  );

  const startSql = () =>
    scalpels(
      ['start', '-t', 'sql-queries', '--set', 'sql-queries.events=true', '--name', 'os-sql'],
      agent,
    );

  it(
    'sql-queries digest counts match performance_schema for the lab schemas; events match or say why not',
    async () => {
      // MariaDB's slow log serves one store's tracers at a time: the sql-queries suites, which
      // switch it with stores of their own, take the same machine-wide lock.
      const release = await machineTestLock('database-servers', 10 * 60_000);
      try {
        await sqlDigestsMatch();
      } finally {
        release();
      }
    },
    TEST_TIMEOUT,
  );

  async function sqlDigestsMatch(): Promise<void> {
    // The tracer's window encloses the server's: started (ready) before the first snapshot,
    // stopped after the last. What it counts beyond the server's deltas is the lab's background
    // SQL of those moments only.
    await waitLabIdle();
    // The server's slow log serves one scalpels tracer at a time: while another suite holds it,
    // wait until it is released (bounded), then start.
    const until = Date.now() + 10 * 60_000;
    let started = await startSql();
    while (
      started.exitCode !== 0 &&
      /another scalpels tracer is logging/.test(started.stderr) &&
      Date.now() < until
    ) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      started = await startSql();
    }
    expect(started.exitCode, started.stderr).toBe(0);
    const before = await digestTotals();
    const r = await execa('bash', [workload, '3'], { reject: false });
    const after = await digestTotals();
    const stopped = await scalpels(['stop', 'os-sql'], agent);
    expect(stopped.exitCode, stopped.stderr).toBe(0);
    // The SQL figures hold whether or not every boot succeeded (a quota shared with other
    // users of the lab may refuse one): the workload must have run.
    expect(r.stdout, r.stderr).toMatch(/^RESULT servers requested=3 accepted=[1-3] /m);
    const [sql] = await report('os-sql');
    const traced = sumBy(sql!.series, 'sql.calls', (s) => s.labels.schema!);
    let server = 0;
    let ours = 0;
    for (const s of SCHEMAS) {
      server += (after[s] ?? 0) - (before[s] ?? 0);
      ours += traced[s] ?? 0;
    }
    expect(server).toBeGreaterThan(500);
    expect(ours).toBeGreaterThanOrEqual(server);
    expect(ours).toBeLessThanOrEqual(server * 1.02);
    // events: within 2 % of the digest totals, or the report says loudly why not
    const digestAll = sql!.series
      .filter((s) => s.name === 'sql.calls')
      .reduce((a, s) => a + (s.sum ?? 0), 0);
    if (sql!.events.count < digestAll * 0.98)
      expect(sql!.error ?? '').toMatch(/^note: .*(events incomplete|opened before tracing).*Fix:/);
  }

  it(
    'fs-io counts the bytes glance writes for an image upload: the size of the file under /var/lib/glance/images',
    async () => {
      const file = join(scratch, 'image.raw');
      const size = 16 << 20;
      // Random bytes: no sparse file, no compression anywhere.
      const data = Buffer.alloc(size);
      for (let i = 0; i < size; i += 32)
        createHash('sha256').update(String(i)).digest().copy(data, i);
      writeFileSync(file, data);
      const started = await scalpels(
        ['start', '-t', 'fs-io', '--service', 'glance-api', '--name', 'os-fsio'],
        agent,
      );
      expect(started.exitCode, started.stderr).toBe(0);
      const name = `scalpels-os-${process.pid}`;
      const os = (args: string[]) =>
        execa('/usr/bin/openstack', args, {
          env: { ...process.env, ...adminEnv() },
          reject: false,
        });
      const created = await os([
        'image',
        'create',
        '--disk-format',
        'raw',
        '--container-format',
        'bare',
        '--file',
        file,
        '-f',
        'value',
        '-c',
        'id',
        name,
      ]);
      const stopped = await scalpels(['stop', 'os-fsio'], agent);
      try {
        expect(created.exitCode, created.stderr).toBe(0);
        expect(stopped.exitCode, stopped.stderr).toBe(0);
        const id = created.stdout.trim();
        const stored = `/var/lib/glance/images/${id}`;
        expect(statSync(stored).size).toBe(size);
        const [fsio] = await report('os-fsio');
        const written = sumBy(fsio!.series, 'fs.write.bytes', (s) => s.labels.path!);
        expect(written[stored]).toBe(size);
      } finally {
        if (created.exitCode === 0) await os(['image', 'delete', created.stdout.trim()]);
      }
    },
    TEST_TIMEOUT,
  );
});
