// The OpenStack lab (Debian's own packages, see ../shared/openstack-lab/README.md): where it is,
// bringing it up once per run, and running its workload.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/**
 * The lab folder: `$SCALPELS_OPENSTACK_LAB`, else `../shared/openstack-lab` from the repository
 * root (CI checks the repository out beside a copy of shared/).
 */
export const labDir = resolve(
  process.env.SCALPELS_OPENSTACK_LAB ?? join(repoRoot, '..', 'shared', 'openstack-lab'),
);
export const labPresent = existsSync(join(labDir, 'up.sh'));
export const rcFile = process.env.OSLAB_RC ?? '/etc/osbox/admin-openrc';

/** The lab's services by the pid files its init scripts write. */
export const LAB_SERVICES: Record<string, string> = {
  keystone: '/run/keystone/keystone.pid',
  'glance-api': '/run/glance/glance-api.pid',
  'placement-api': '/run/placement/placement-api.pid',
  'nova-api': '/run/nova/nova-api.pid',
  'nova-conductor': '/run/nova/nova-conductor.pid',
  'nova-scheduler': '/run/nova/nova-scheduler.pid',
  'nova-compute': '/run/nova/nova-compute.pid',
};

export function labPid(service: string): number | undefined {
  try {
    const pid = Number(readFileSync(LAB_SERVICES[service]!, 'utf8').trim());
    return pid > 0 && existsSync(`/proc/${pid}`) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Environment of the lab's admin (keystone v3), from the openrc up.sh writes. */
export function adminEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of readFileSync(rcFile, 'utf8').split('\n')) {
    const m = /^export (OS_\w+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

/**
 * Brings the lab up: `up.sh` is idempotent (about 9 minutes from scratch, 2-3 when installed).
 * Left out when every service already runs and the admin openrc exists, unless
 * SCALPELS_OPENSTACK_UP=always.
 */
export async function labUp(): Promise<void> {
  const running = Object.keys(LAB_SERVICES).every((s) => labPid(s) !== undefined);
  if (running && existsSync(rcFile) && process.env.SCALPELS_OPENSTACK_UP !== 'always') return;
  const r = await execa('bash', [join(labDir, 'up.sh')], {
    reject: false,
    all: true,
    timeout: 20 * 60_000,
  });
  if (r.exitCode !== 0)
    throw new Error(`${labDir}/up.sh failed (${r.exitCode}):\n${r.all?.slice(-3000)}`);
}

/** `RESULT servers requested=N accepted=N active=N deleted=N gone=N errors=0 seconds=S` as numbers. */
export function workloadResult(output: string): Record<string, number> {
  const line = output.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`workload printed no RESULT line:\n${output.slice(-2000)}`);
  const out: Record<string, number> = {};
  for (const m of line.matchAll(/(\w+)=([\d.]+)/g)) out[m[1]!] = Number(m[2]);
  return out;
}

/**
 * Waits until no other `workload.sh` runs on the lab (other users of a shared machine): the
 * project's quota is 10 instances, and their RPC would mix with ours. Polls, up to `maxMs`.
 */
export async function waitLabIdle(maxMs = 10 * 60_000): Promise<void> {
  const until = Date.now() + maxMs;
  for (;;) {
    const r = await execa('pgrep', ['-f', 'openstack-lab/workload\\.sh'], { reject: false });
    if (r.exitCode !== 0 || Date.now() > until) return;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
