/**
 * Which files root may run or read because a request named them. The agent is root on every
 * node and its requests cross a trust boundary (unix socket, TCP token, cluster): a request names
 * plugins and options, never a program, and a file only when root protected it. One check for
 * every plugin: `trustedFile()` (and `readTrustedFile()` for credentials); node settings come
 * from a root-owned /etc/scalpels/config.json (`nodeSettings()`).
 */
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readSync,
  readdirSync,
  realpathSync,
  type Stats,
} from 'node:fs';
import { dirname, isAbsolute, join, sep } from 'node:path';
import type { TrustKind, TrustPolicy } from './api.js';
import { UserError } from './errors.js';

export const NODE_CONFIG_DIR = '/etc/scalpels';
export const NODE_CONFIG_FILE = `${NODE_CONFIG_DIR}/config.json`;
/** Environment variable naming another node configuration file (for root's own use and tests). */
export const NODE_CONFIG_ENV = 'SCALPELS_CONFIG';

/** The most a credential or option file may hold: larger is not a password file. */
const MAX_CREDENTIAL_BYTES = 64 << 10;
/** The most entries of a script folder that are checked; beyond it the folder is refused. */
const MAX_FOLDER_ENTRIES = 10_000;

export interface NodeConfig {
  /** Folders (besides /etc/scalpels) from which requests may name credential files. */
  trustedDirs: readonly string[];
  /** Per plugin settings: `plugins["rpc-calls"].rabbitmqctl`, ... */
  plugins: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
}

/** The uids whose files may be trusted: root's, and the invoking user's when not root. */
function trustedOwners(): Set<number> {
  const me = process.geteuid?.() ?? 0;
  return new Set([0, me]);
}

function ownerName(): string {
  return (process.geteuid?.() ?? 0) === 0 ? 'root' : 'root or you';
}

function oct(mode: number): string {
  return `0${(mode & 0o7777).toString(8)}`;
}

/** Each folder from `dir` up to `/` is owned by a trusted uid and writable by its owner only. */
function chainProblem(dir: string): string | undefined {
  const owners = trustedOwners();
  for (let d = dir; ; d = dirname(d)) {
    let st: Stats;
    try {
      st = lstatSync(d);
    } catch (e) {
      return `cannot inspect folder ${d}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`;
    }
    if (!owners.has(st.uid)) return `folder ${d} is owned by uid ${st.uid}, not ${ownerName()}`;
    // A symlink's own mode means nothing; who may replace it is its folder's business (next step).
    if (!st.isSymbolicLink() && (st.mode & 0o022) !== 0)
      return `folder ${d} is group- or world-writable (mode ${oct(st.mode)})`;
    if (d === dirname(d)) return undefined;
  }
}

/** Owner and write bits of the file itself. */
function modeProblem(st: Stats, what: string): string | undefined {
  if (!trustedOwners().has(st.uid)) return `${what} is owned by uid ${st.uid}, not ${ownerName()}`;
  if ((st.mode & 0o022) !== 0) return `${what} is group- or world-writable (mode ${oct(st.mode)})`;
  return undefined;
}

function inside(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : `${dir}${sep}`);
}

function realOrSelf(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/**
 * Why root must not use `path` as a `kind` file, or undefined when it may. Rules (root; a
 * non-root user may also own the files, since they run with their own rights):
 * - every kind: an absolute path; the file and every folder up to `/` owned by root and not
 *   group- or world-writable (so nobody else can change or swap it between check and use);
 * - `program`: a regular executable file;
 * - `script`, `folder`: only with `policy.allowScripts` (agent or run started with
 *   --allow-scripts); a folder's whole content is checked;
 * - `credential`: not a symlink, a regular file, mode 0600/0640 (no write but the owner's, no
 *   access for others); as root, inside /etc/scalpels/ or a folder in the node config's
 *   `trustedDirs` (root-owned 0600 files elsewhere are root's own secrets: /root/.ssh, /etc/shadow).
 */
export function trustProblem(
  path: string,
  kind: TrustKind,
  policy?: TrustPolicy,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if ((kind === 'script' || kind === 'folder') && policy?.allowScripts !== true)
    return 'user scripts need the agent (or scalpels run) started with --allow-scripts';
  return fileProblem(path, kind, env);
}

/** trustProblem without the policy: how the file itself is protected. */
function fileProblem(path: string, kind: TrustKind, env: NodeJS.ProcessEnv): string | undefined {
  if (typeof path !== 'string' || path === '' || path.includes('\0')) return 'not a path';
  if (!isAbsolute(path)) return 'not an absolute path';
  let link: Stats;
  try {
    link = lstatSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'does not exist' : `cannot inspect it: ${code ?? String(e)}`;
  }
  if (kind === 'credential') {
    if (link.isSymbolicLink()) return 'is a symbolic link (name the file itself)';
    if (!link.isFile()) return 'is not a regular file';
    if (!trustedOwners().has(link.uid)) return `is owned by uid ${link.uid}, not ${ownerName()}`;
    if ((link.mode & 0o027) !== 0)
      return `has mode ${oct(link.mode)}: a credential file must be 0600 or 0640`;
    const chain = chainProblem(dirname(path));
    if (chain) return chain;
    if ((process.geteuid?.() ?? 0) === 0) {
      const real = realOrSelf(dirname(path));
      const allowed = [NODE_CONFIG_DIR, ...safeNodeConfig(env).trustedDirs].map(realOrSelf);
      if (!allowed.some((d) => inside(real, d)))
        return `as root, credential files are read only from ${NODE_CONFIG_DIR}/ or a folder listed in "trustedDirs" of ${nodeConfigPath(env)}`;
    }
    return undefined;
  }
  // Programs, scripts and folders may be reached through symlinks (/usr/sbin/rabbitmqctl is one):
  // the folders of the name and of the target are both checked.
  const real = realOrSelf(path);
  const given = chainProblem(dirname(path));
  if (given) return given;
  if (real !== path) {
    const target = chainProblem(dirname(real));
    if (target) return `${target} (it resolves to ${real})`;
  }
  let st: Stats;
  try {
    st = lstatSync(real);
  } catch (e) {
    return `cannot inspect ${real}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`;
  }
  if (kind === 'folder') {
    if (!st.isDirectory()) return 'is not a folder';
    return modeProblem(st, 'the folder') ?? folderContentProblem(real);
  }
  if (!st.isFile()) return 'is not a regular file';
  const own = modeProblem(st, 'the file');
  if (own) return own;
  if (kind === 'program' && (st.mode & 0o111) === 0) return 'is not executable';
  return undefined;
}

/** Every entry below a script folder: owned by a trusted uid, writable by its owner only. */
function folderContentProblem(root: string): string | undefined {
  const todo = [root];
  let seen = 0;
  while (todo.length) {
    const dir = todo.pop()!;
    for (const name of readdirSync(dir)) {
      if (++seen > MAX_FOLDER_ENTRIES) return `holds more than ${MAX_FOLDER_ENTRIES} entries`;
      const p = join(dir, name);
      const st = lstatSync(p);
      if (st.isSymbolicLink()) return `${p} is a symbolic link`;
      const problem = modeProblem(st, p);
      if (problem) return problem;
      if (st.isDirectory()) todo.push(p);
    }
  }
  return undefined;
}

/**
 * `path` when root may use it as a `kind` file; otherwise a UserError of one line:
 * `LABEL: PATH refused: WHY`. `label` names who asked (`sql-queries: option "defaults-file"`).
 */
export function trustedFile(
  path: string,
  kind: TrustKind,
  opts: { label: string; policy?: TrustPolicy; env?: NodeJS.ProcessEnv },
): string {
  const problem = trustProblem(path, kind, opts.policy, opts.env);
  if (problem) throw new UserError(`${opts.label}: ${JSON.stringify(path)} refused: ${problem}`);
  return path;
}

/**
 * Reads a credential file after `trustedFile(path, 'credential')`, checking again on the open
 * file (no symlink followed, the same file, still owner-only) so that nothing swapped in between
 * is read.
 */
export function readTrustedFile(
  path: string,
  opts: { label: string; env?: NodeJS.ProcessEnv },
): string {
  trustedFile(path, 'credential', opts);
  const before = lstatSync(path);
  const refuse = (why: string): UserError =>
    new UserError(`${opts.label}: ${JSON.stringify(path)} refused: ${why}`);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    throw refuse(`cannot open it: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  try {
    const st = fstatSync(fd);
    if (st.ino !== before.ino || st.dev !== before.dev) throw refuse('it changed while read');
    if (!st.isFile() || !trustedOwners().has(st.uid) || (st.mode & 0o027) !== 0)
      throw refuse('it changed while read');
    if (st.size > MAX_CREDENTIAL_BYTES)
      throw refuse(`larger than ${MAX_CREDENTIAL_BYTES} bytes: not a credential file`);
    const buf = Buffer.alloc(Math.min(st.size + 1, MAX_CREDENTIAL_BYTES + 1));
    let n = 0;
    for (let r; n < buf.length && (r = readSync(fd, buf, n, buf.length - n, n)) > 0;) n += r;
    if (n > MAX_CREDENTIAL_BYTES)
      throw refuse(`larger than ${MAX_CREDENTIAL_BYTES} bytes: not a credential file`);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

export function nodeConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return env[NODE_CONFIG_ENV] || NODE_CONFIG_FILE;
}

const EMPTY: NodeConfig = { trustedDirs: [], plugins: {} };

/**
 * The node configuration: `{"trustedDirs": [..], "plugins": {"NAME": {..}}}` in
 * /etc/scalpels/config.json (or $SCALPELS_CONFIG). Absent: empty. Used only when the file and its
 * folders are root's and not group- or world-writable; otherwise, or when it is not such JSON, a
 * UserError naming the file.
 */
export function nodeConfig(env: NodeJS.ProcessEnv = process.env): NodeConfig {
  const file = nodeConfigPath(env);
  try {
    lstatSync(file);
  } catch {
    return EMPTY;
  }
  const problem = fileProblem(file, 'script', env);
  if (problem) throw new UserError(`node configuration ${file} ignored: ${problem}`);
  let parsed: unknown;
  try {
    const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const st = fstatSync(fd);
      if (st.size > 1 << 20) throw new Error('larger than 1 MiB');
      const buf = Buffer.alloc(st.size);
      let n = 0;
      for (let r; n < buf.length && (r = readSync(fd, buf, n, buf.length - n, n)) > 0;) n += r;
      parsed = JSON.parse(buf.subarray(0, n).toString('utf8'));
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    throw new UserError(`node configuration ${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  const isObj = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObj(parsed)) throw new UserError(`node configuration ${file}: not a JSON object`);
  const dirs = parsed.trustedDirs ?? [];
  if (!Array.isArray(dirs) || !dirs.every((d) => typeof d === 'string' && isAbsolute(d)))
    throw new UserError(`node configuration ${file}: "trustedDirs" must be absolute paths`);
  const plugins = parsed.plugins ?? {};
  if (!isObj(plugins) || !Object.values(plugins).every(isObj))
    throw new UserError(`node configuration ${file}: "plugins" must map plugin names to objects`);
  return { trustedDirs: dirs as string[], plugins: plugins as NodeConfig['plugins'] };
}

/** Like nodeConfig(), but an unusable file counts as empty (its problem is reported where it is used). */
function safeNodeConfig(env: NodeJS.ProcessEnv): NodeConfig {
  try {
    return nodeConfig(env);
  } catch {
    return EMPTY;
  }
}

/** One plugin's section of the node configuration (`plugins[NAME]`), {} when none. */
export function nodeSettings(
  plugin: string,
  env: NodeJS.ProcessEnv = process.env,
): Readonly<Record<string, unknown>> {
  return nodeConfig(env).plugins[plugin] ?? {};
}

/**
 * A program named by the node configuration (`plugins[NAME][key]`), checked with trustedFile;
 * undefined when the configuration does not name one.
 */
export function configuredProgram(
  plugin: string,
  key: string,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  const value = nodeSettings(plugin, env)[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string')
    throw new UserError(`${nodeConfigPath(env)}: plugins.${plugin}.${key} must be a path`);
  return trustedFile(value, 'program', {
    label: `${nodeConfigPath(env)}: plugins.${plugin}.${key}`,
    env,
  });
}

/**
 * Reads a small root-owned regular file that others cannot write (a service's own configuration:
 * what it names decides what is traced), without following a symlink or blocking on a FIFO.
 * Undefined when it is missing, unreadable, not root's, writable by others or over `maxBytes`.
 */
export function readRootOwnedFile(path: string, maxBytes = 4 << 20): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.uid !== 0 || (st.mode & 0o022) !== 0 || st.size > maxBytes)
      return undefined;
    const buf = Buffer.alloc(st.size);
    const n = readSync(fd, buf, 0, st.size, 0);
    return buf.subarray(0, n).toString('utf8');
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads a secret of the user running Scalpels (a cluster key, a Redis password): a regular file,
 * not a symlink, owned by root or this user, not readable by others (group read only when
 * `groupReadable`: 0640), at most `maxBytes`. Refusals are one line naming `label` and the fix.
 */
export function readOwnSecretFile(
  path: string,
  label: string,
  opts: { groupReadable: boolean; maxBytes: number },
): string {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(
      `${label} ${path}: ${code === 'ELOOP' ? 'is a symbolic link' : (code ?? (e as Error).message)}`,
    );
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UserError(`${label} ${path} is not a regular file`);
    const uid = process.getuid?.() ?? 0;
    if (st.uid !== 0 && st.uid !== uid)
      throw new UserError(`${label} ${path} is owned by uid ${st.uid}, not root`);
    if ((st.mode & (opts.groupReadable ? 0o037 : 0o077)) !== 0)
      throw new UserError(
        `${label} ${path} has mode ${(st.mode & 0o777).toString(8)}: chmod 600 ${path}`,
      );
    const buf = Buffer.alloc(opts.maxBytes + 1);
    const n = readSync(fd, buf, 0, buf.length, 0);
    if (n > opts.maxBytes)
      throw new UserError(`${label} ${path} is larger than ${opts.maxBytes} bytes`);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}
