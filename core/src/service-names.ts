import { basename, dirname } from 'node:path';
import { readRootOwnedFile } from './trust.js';

/**
 * The names an OpenStack service is known by, read from how it was started. Debian, devstack and
 * the distributions run the same service in different ways:
 *
 * - a Python console script: `python3 /usr/bin/nova-conductor --config-file …`;
 * - uwsgi: `uwsgi_python311 --http-socket :5000 --ini /etc/keystone/keystone-uwsgi.ini` (the ini
 *   names the app: `keystone`, its folder `/etc/keystone`, its `wsgi-file`
 *   `/usr/bin/keystone-wsgi-public`), devstack's `--procname-prefix`;
 * - Apache mod_wsgi daemons, whose title is the daemon group: `(wsgi:keystone-public)`;
 * - gunicorn: `gunicorn: worker [glance-api]`, `--name`, or the app module `keystone.wsgi:app`;
 * - a process title set by the service itself: `neutron-server: api worker (…)`.
 *
 * The first name is the one reports show; every name matches `--service`.
 */
export interface ServiceNames {
  /** The service name for reports, when the command line says more than the executable. */
  primary?: string;
  /** Every name that matches this process (primary first), the comm and executable included. */
  all: string[];
}

const PYTHON = /^python[0-9.]*$/;
const INTERPRETERS = /^(python[0-9.]*|perl|ruby|node|nodejs|sh|bash|dash|java|php[0-9.]*)$/;
/** Largest uwsgi ini read: Debian's are 3-4 KiB. */
const MAX_INI_BYTES = 256 << 10;

/** Names of one process from its argv and comm; `readIni` reads a root-owned uwsgi ini (tests pass their own). */
export function serviceNames(
  argv: readonly string[],
  comm: string,
  readIni: (path: string) => string | undefined = readRootOwnedIni,
): ServiceNames {
  const derived: string[] = [];
  const arg0 = argv[0] ?? '';
  const exe = basename(arg0);

  // mod_wsgi daemon processes (display-name=%{GROUP}) and their comm, cut to 15 bytes.
  const wsgiGroup = /^\(wsgi:([^)\s]+)\)?/.exec(arg0) ?? /^\(wsgi:([^)\s]+)/.exec(comm);
  if (wsgiGroup) derived.push(...withoutRole(wsgiGroup[1]!));

  // gunicorn's own titles (setproctitle): `gunicorn: master [NAME]`.
  const gunicornTitle = /^gunicorn: \w+ \[([^\]]+)\]/.exec(argv.join(' '));
  if (gunicornTitle) derived.push(...appNames(gunicornTitle[1]!));

  const isUwsgi = /uwsgi/i.test(exe) || argv.some((a) => /^--(ini|procname-prefix)/.test(a));
  if (isUwsgi) derived.push(...uwsgiNames(argv, readIni));

  const script = scriptOf(argv);
  if (script && basename(script) === 'gunicorn') derived.push(...gunicornNames(argv));
  else if (exe === 'gunicorn') derived.push(...gunicornNames(argv));
  else if (script) derived.push(basename(script), basename(script).replace(/\.py$/, ''));

  // A title the process set itself: `neutron-server: rpc worker (…)`, `nova-api: …`.
  const title = /^([a-z][\w.-]*[a-z0-9]): /.exec(arg0);
  if (title && !gunicornTitle) derived.push(title[1]!);

  const all = unique([...derived, comm, exe].filter((n) => n !== '' && n.length <= 128));
  return { primary: derived[0], all };
}

/** The script an interpreter runs: its first argument that is not an option. */
function scriptOf(argv: readonly string[]): string | undefined {
  const exe = basename(argv[0] ?? '');
  if (!INTERPRETERS.test(exe)) return undefined;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    // python3 -m MODULE / -c CODE: no script file.
    if (PYTHON.test(exe) && (a === '-m' || a === '-c')) return undefined;
    if (PYTHON.test(exe) && (a === '-W' || a === '-X')) {
      i++;
      continue;
    }
    if (!a.startsWith('-')) return a;
  }
  return undefined;
}

function optionValues(argv: readonly string[], names: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    for (const n of names) {
      if (a === n && i + 1 < argv.length) out.push(argv[i + 1]!);
      else if (a.startsWith(`${n}=`)) out.push(a.slice(n.length + 1));
    }
  }
  return out;
}

function uwsgiNames(argv: readonly string[], readIni: (p: string) => string | undefined): string[] {
  const out: string[] = [];
  for (const p of optionValues(argv, ['--procname-prefix', '--procname-prefix-spaced']))
    out.push(p.trim());
  for (const ini of optionValues(argv, ['--ini', '--yaml', '--json', '--xml'])) {
    // keystone-uwsgi.ini -> keystone; nova-api-uwsgi.ini -> nova-api.
    const file = basename(ini).replace(/\.(ini|ya?ml|json|xml)$/, '');
    out.push(file.replace(/[-_]uwsgi$/, '').replace(/^uwsgi[-_]/, ''));
    const text = /\.ini$/.test(ini) ? readIni(ini) : undefined;
    if (text) out.push(...iniNames(text));
    // /etc/keystone/keystone-uwsgi.ini -> keystone (the project's config folder)
    const folder = basename(dirname(ini));
    if (dirname(dirname(ini)) === '/etc' && folder !== 'uwsgi') out.push(folder);
  }
  for (const f of optionValues(argv, ['--wsgi-file', '--file'])) out.push(basename(f));
  for (const m of optionValues(argv, ['--module', '-w', '--wsgi'])) out.push(...moduleNames(m));
  return out.filter((n) => n !== '');
}

/** From the `[uwsgi]` section: the wsgi-file (`/usr/bin/keystone-wsgi-public`), procname, module. */
function iniNames(text: string): string[] {
  const out: string[] = [];
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const s = /^\[([^\]]+)\]$/.exec(line);
    if (s) {
      section = s[1]!.trim();
      continue;
    }
    if (section !== 'uwsgi') continue;
    const kv = /^([\w-]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (!kv) continue;
    const [, key, value] = kv;
    if (!value) continue;
    if (key === 'procname-prefix' || key === 'procname-prefix-spaced') out.unshift(value);
    else if (key === 'wsgi-file' || key === 'file') out.push(basename(value));
    else if (key === 'module' || key === 'wsgi') out.push(...moduleNames(value));
  }
  return out;
}

function gunicornNames(argv: readonly string[]): string[] {
  const out = optionValues(argv, ['--name', '-n']);
  for (const c of optionValues(argv, ['--config', '-c'])) {
    const folder = basename(dirname(c));
    if (dirname(dirname(c)) === '/etc') out.push(folder);
  }
  const app = argv.slice(1).find((a) => /^[\w.]+:[\w.()]+$/.test(a));
  if (app) out.push(...moduleNames(app));
  return out;
}

/** `keystone.server.wsgi:initialize_public_application` -> keystone. */
function moduleNames(spec: string): string[] {
  const mod = spec.split(':')[0]!.trim();
  const first = mod.split('.')[0] ?? '';
  return /^[\w-]+$/.test(first) ? [first] : [];
}

/** `keystone-public` -> keystone-public, keystone (mod_wsgi groups split by role). */
function withoutRole(group: string): string[] {
  const out = [group];
  const bare = group.replace(/-(public|admin|internal|wsgi|api-wsgi)$/, '');
  if (bare !== group) out.push(bare);
  return out;
}

function appNames(name: string): string[] {
  return withoutRole(name.trim());
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}

/** A service's ini is believed only when root-owned and not writable by others. */
export function readRootOwnedIni(path: string): string | undefined {
  return readRootOwnedFile(path, MAX_INI_BYTES);
}
