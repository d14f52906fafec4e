import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { RedisStore } from './redis.js';
import { SqliteStore } from './sqlite.js';
import type { Store } from './types.js';

export * from './types.js';

/** The default store: `$XDG_DATA_HOME/scalpels/scalpels.db` (or `~/.local/share/scalpels/`). */
export function defaultStoreUrl(env: NodeJS.ProcessEnv = process.env): string {
  const base =
    env.XDG_DATA_HOME && isAbsolute(env.XDG_DATA_HOME)
      ? env.XDG_DATA_HOME
      : join(homedir(), '.local', 'share');
  return `sqlite://${join(base, 'scalpels', 'scalpels.db')}`;
}

/** `sqlite:///abs/path.db`, `sqlite:rel/path.db` or a plain path → the file path. */
export function sqlitePath(url: string): string | undefined {
  if (url.startsWith('sqlite://')) return resolve(url.slice('sqlite://'.length));
  if (url.startsWith('sqlite:')) return resolve(url.slice('sqlite:'.length));
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return resolve(url);
  return undefined;
}

/** Opens the store a URL names. Synchronous: better-sqlite3 is loaded here, on first use. */
export function openStore(url: string): Store {
  const path = sqlitePath(url);
  if (path !== undefined) {
    if (path === '/' || path.endsWith('/'))
      throw new UserError(`--store ${url}: expected a file path`);
    return new SqliteStore(path);
  }
  if (url.startsWith('redis://') || url.startsWith('rediss://')) return new RedisStore(url);
  // Only the scheme is echoed: a URL may carry a password.
  const scheme = url.split(':')[0];
  throw new UserError(
    `--store: unsupported store "${scheme}" (use sqlite:///path/to/file.db or redis://host:port/db)`,
  );
}
