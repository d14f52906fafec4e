import {
  chmodSync,
  constants,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { UserError } from './errors.js';

/**
 * Where root's scratch files live: never a shared /tmp, where another user can create the
 * folder first or plant a symlink for root to write through. Root uses `/run/scalpels` (or
 * `/var/lib/scalpels` when /run is not writable); another user its own runtime folder
 * (`$XDG_RUNTIME_DIR/scalpels`, else `~/.local/state/scalpels`). `SCALPELS_RUNTIME_DIR`
 * overrides (it is checked like the others).
 */
export function privateBaseDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SCALPELS_RUNTIME_DIR) return env.SCALPELS_RUNTIME_DIR;
  if ((process.getuid?.() ?? 0) === 0) return '/run/scalpels';
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'scalpels');
  return join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'scalpels');
}

/**
 * Makes (or checks) a folder only this user can use: a real directory, not a symlink, owned by
 * this user, mode 0700. A folder someone else made first is refused, never used as is.
 */
export function ensurePrivateDir(path: string): string {
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
      throw new UserError(`cannot make ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  const st = lstatSync(path);
  if (st.isSymbolicLink())
    throw new UserError(`refusing ${path}: it is a symbolic link (someone may have planted it)`);
  if (!st.isDirectory()) throw new UserError(`refusing ${path}: not a directory`);
  const uid = process.getuid?.() ?? 0;
  if (st.uid !== uid)
    throw new UserError(
      `refusing ${path}: owned by uid ${st.uid}, not by this user (uid ${uid}); remove it`,
    );
  if ((st.mode & 0o077) !== 0) chmodSync(path, 0o700);
  return path;
}

/** The private base folder, made when missing (falls back to /var/lib/scalpels for root). */
export function privateDir(sub?: string, env: NodeJS.ProcessEnv = process.env): string {
  let base = privateBaseDir(env);
  try {
    ensurePrivateDir(base);
  } catch (e) {
    if (base !== '/run/scalpels' || !isPermissionOrMissing(e)) throw e;
    base = ensurePrivateDir('/var/lib/scalpels');
  }
  return sub ? ensurePrivateDir(join(base, sub)) : base;
}

function isPermissionOrMissing(e: unknown): boolean {
  return /EACCES|EROFS|ENOENT|EPERM/.test(String((e as Error).message));
}

/** A fresh scratch folder (mkdtemp: a random name, mode 0700) under the private base. */
export function makeScratchDir(prefix: string, env: NodeJS.ProcessEnv = process.env): string {
  return mkdtempSync(join(privateDir('scratch', env), prefix));
}

/** Removes the scratch folders made with this prefix (recovery of a dead tracer's folders). */
export function removeScratchDirs(prefix: string, env: NodeJS.ProcessEnv = process.env): void {
  let dir: string;
  try {
    dir = privateDir('scratch', env);
  } catch {
    return;
  }
  for (const name of readdirSync(dir))
    if (name.startsWith(prefix)) rmSync(join(dir, name), { recursive: true, force: true });
}

/**
 * Opens a new file for writing that must not exist yet and must not be a symlink
 * (`O_CREAT|O_EXCL|O_NOFOLLOW`): a file planted in its place makes this fail instead of
 * letting root write through it.
 */
export function openExclusive(path: string, mode = 0o600): number {
  return openSync(
    path,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    mode,
  );
}
