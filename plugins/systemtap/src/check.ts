import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { release } from 'node:os';
import type { CheckContext, CheckResult } from '@scalpels/core';
import type { Options } from './options.js';

/** Facts about this host that decide whether stap can run; injectable for tests. */
export interface Host {
  release: string;
  /** /proc/modules exists: the kernel loads modules (SystemTap's kernel runtime is a module). */
  modules: boolean;
  /** /lib/modules/RELEASE/build/.config exists. */
  buildTree: boolean;
  /** A vmlinux with debug info for the running kernel (needed by probes on kernel functions). */
  debuginfo: boolean;
  /** Linux distribution id from /etc/os-release (`debian`, `ubuntu`, `fedora`, ...). */
  distro: string;
  /** Whether this process belongs to stapusr / stapdev. */
  groups: { stapusr: boolean; stapdev: boolean };
  /** stapbpf can raise RLIMIT_MEMLOCK to unlimited (CAP_SYS_RESOURCE or an unlimited hard limit). */
  memlockOk: boolean;
  memlockHard: string;
}

export function probeHost(): Host {
  const rel = release();
  return {
    release: rel,
    modules: existsSync('/proc/modules'),
    buildTree: existsSync(`/lib/modules/${rel}/build/.config`),
    debuginfo: [
      `/usr/lib/debug/boot/vmlinux-${rel}`,
      `/usr/lib/debug/lib/modules/${rel}/vmlinux`,
      `/boot/vmlinux-${rel}`,
      `/lib/modules/${rel}/build/vmlinux`,
    ].some((p) => existsSync(p)),
    distro: distroId(),
    groups: stapGroups(),
    ...memlock(),
  };
}

function distroId(): string {
  try {
    const m = /^ID=("?)([^"\n]*)\1$/m.exec(readFileSync('/etc/os-release', 'utf8'));
    return m?.[2] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function stapGroups(): { stapusr: boolean; stapdev: boolean } {
  const mine = new Set(process.getgroups?.() ?? []);
  const gid = (name: string): number | undefined => {
    try {
      const line = readFileSync('/etc/group', 'utf8')
        .split('\n')
        .find((l) => l.startsWith(`${name}:`));
      return line ? Number(line.split(':')[2]) : undefined;
    } catch {
      return undefined;
    }
  };
  const has = (name: string): boolean => {
    const g = gid(name);
    return g !== undefined && mine.has(g);
  };
  return { stapusr: has('stapusr'), stapdev: has('stapdev') };
}

function memlock(): { memlockOk: boolean; memlockHard: string } {
  let hard = 'unknown';
  let capSysResource = false;
  try {
    const m = /^Max locked memory\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m) hard = m[1]!;
    const cap = /^CapEff:\s+([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'));
    // CAP_SYS_RESOURCE is capability 24.
    if (cap) capSysResource = (BigInt(`0x${cap[1]}`) & (1n << 24n)) !== 0n;
  } catch {
    // Not Linux or /proc hidden: let stapbpf say what is wrong.
    return { memlockOk: true, memlockHard: hard };
  }
  return { memlockOk: capSysResource || hard === 'unlimited', memlockHard: hard };
}

/** Debian/Ubuntu and Fedora/RHEL install commands for what is missing. */
export function installHint(
  distro: string,
  what: 'stap' | 'headers' | 'debuginfo',
  rel: string,
): string {
  const deb = ['debian', 'ubuntu', 'linuxmint', 'pop'].includes(distro);
  switch (what) {
    case 'stap':
      return deb ? 'apt-get install -y systemtap' : 'dnf install -y systemtap systemtap-runtime';
    case 'headers':
      return deb ? `apt-get install -y linux-headers-${rel}` : `dnf install -y kernel-devel-${rel}`;
    case 'debuginfo':
      return deb
        ? distro === 'ubuntu'
          ? `apt-get install -y linux-image-${rel}-dbgsym (from ddebs.ubuntu.com)`
          : `apt-get install -y linux-image-${rel}-dbg`
        : `dnf debuginfo-install -y kernel-${rel}`;
  }
}

/** What a user does when the running kernel itself cannot host SystemTap. */
function otherKernelHint(distro: string): string {
  return ['debian', 'ubuntu'].includes(distro)
    ? 'boot a distribution kernel with its headers and debug symbols (apt-get install -y linux-image-amd64 linux-headers-amd64 linux-image-amd64-dbg on Debian amd64)'
    : 'boot a distribution kernel and install its kernel-devel and kernel-debuginfo packages';
}

/**
 * The probe behind `scalpels plugins list` (quick: files and PATH only) and `scalpels doctor`
 * / start (full: also runs `stap -V` and asks the package manager whether headers exist).
 */
export async function checkSystemtap(
  ctx: CheckContext<Options>,
  host: Host = probeHost(),
): Promise<CheckResult> {
  const runtime = ctx.options.runtime;
  const rel = host.release;
  const stap = await ctx.which('stap');
  if (!stap) {
    return {
      status: 'fixable',
      detail: 'stap (SystemTap) is not installed',
      hint: installHint(host.distro, 'stap', rel),
    };
  }
  let version = '';
  if (ctx.depth === 'full') {
    const v = await ctx.exec([stap, '-V'], 10_000);
    const m = /version ([\d.]+)/.exec(v.stderr + v.stdout);
    version = m ? ` ${m[1]}` : '';
  }
  const what = `stap${version} (${stap})`;

  if (!ctx.isRoot && !host.groups.stapusr) {
    return {
      status: 'fixable',
      detail: `${what} is installed, but this user is neither root nor in group stapusr`,
      hint: 'run as root, or: usermod -aG stapusr,stapdev $USER (then log in again)',
    };
  }

  const problems: string[] = [];
  if (runtime === 'kernel' && !host.modules) {
    problems.push(
      `kernel ${rel} has no loadable module support (/proc/modules is missing, CONFIG_MODULES is off), so the module SystemTap builds cannot be loaded`,
    );
  }
  if (runtime === 'bpf' && !(await ctx.which('stapbpf'))) {
    problems.push('stapbpf (the BPF back end) is not installed');
  }
  if (runtime === 'bpf' && !host.memlockOk) {
    problems.push(
      `stapbpf raises RLIMIT_MEMLOCK to unlimited, but the hard limit here is ${host.memlockHard}${/^\d+$/.test(host.memlockHard) ? ' bytes' : ''} and the process lacks CAP_SYS_RESOURCE (a container?); give it ulimit -l unlimited (systemd LimitMEMLOCK=infinity, docker --ulimit memlock=-1)`,
    );
  }
  let headersPackaged: boolean | undefined;
  if (!host.buildTree) {
    if (ctx.depth === 'full' && ['debian', 'ubuntu'].includes(host.distro)) {
      const r = await ctx.exec(
        ['apt-cache', 'show', '--no-all-versions', `linux-headers-${rel}`],
        20_000,
      );
      headersPackaged = r.exitCode === 0 && r.stdout.includes('Package:');
    }
    const packaged =
      headersPackaged === false
        ? `; no package provides it (linux-headers-${rel} is unknown to apt: a custom kernel)`
        : '';
    problems.push(
      `there is no build tree for kernel ${rel} (/lib/modules/${rel}/build/.config)${packaged}`,
    );
  }

  if (problems.length === 0) {
    const note =
      runtime === 'kernel' && !host.debuginfo
        ? `; no kernel debug info, so only tracepoint, syscall and user-space probes work (for kernel.function probes: ${installHint(host.distro, 'debuginfo', rel)})`
        : '';
    return { status: 'ok', detail: `${what}, runtime ${runtime}, kernel ${rel}${note}` };
  }

  const detail = `${what} cannot run here: ${problems.join('; ')}`;
  // Only a missing build tree of a packaged kernel, or missing privileges, can be fixed in place.
  const onlyHeaders = problems.length === 1 && !host.buildTree && headersPackaged !== false;
  if (onlyHeaders)
    return { status: 'fixable', detail, hint: installHint(host.distro, 'headers', rel) };
  const stapbpfMissing =
    problems.length === 1 && runtime === 'bpf' && host.buildTree && host.memlockOk;
  if (stapbpfMissing)
    return { status: 'fixable', detail, hint: installHint(host.distro, 'stap', rel) };
  const fix =
    runtime === 'bpf' && !host.memlockOk && host.modules
      ? ''
      : ` To trace, ${otherKernelHint(host.distro)}.`;
  return {
    status: 'unavailable',
    detail: `${detail}.${fix} Scripts can still be checked with: scalpels plugins validate systemtap script=FILE`,
  };
}

/** Releases with a build tree here (Debian's linux-headers-* packages install one each). */
export function buildTreeReleases(): string[] {
  try {
    return readdirSync('/lib/modules')
      .filter((r) => existsSync(`/lib/modules/${r}/build/.config`))
      .sort((a, b) => b.localeCompare(a, undefined, { numeric: true }));
  } catch {
    return [];
  }
}
