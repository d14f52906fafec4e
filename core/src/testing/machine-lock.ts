import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { privateDir } from '../private-dir.js';

/**
 * A lock shared by every test process of this machine (of this user), for tests that change or
 * compare server-wide state (a database server's log settings, its global counters): vitest runs
 * test files in parallel, and a suite elsewhere in the workspace may touch the same server.
 *
 * A directory in the user's private runtime folder (`/run/scalpels/test-locks` for root; never the
 * shared /tmp) holding the holder's pid; taken over when that process is gone. Resolves to the
 * release function; gives up after `timeoutMs` (keep it below the hook's or test's timeout, so no
 * wait outlives its test).
 */
export async function machineTestLock(name: string, timeoutMs = 240_000): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  if (!/^[\w-]+$/.test(name)) throw new Error(`bad lock name ${JSON.stringify(name)}`);
  const dir = join(privateDir('test-locks'), `${name}.lock`);
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, 'pid'), String(process.pid));
      return () => rmSync(dir, { recursive: true, force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let holder = 0;
      try {
        holder = Number(readFileSync(join(dir, 'pid'), 'utf8'));
      } catch {
        // being created right now
      }
      if (holder > 0 && !existsSync(`/proc/${holder}`))
        rmSync(dir, { recursive: true, force: true });
      else if (Date.now() > deadline)
        throw new Error(
          `test lock ${name} still held by pid ${holder} after ${timeoutMs / 1000} s`,
        );
      else await new Promise((r) => setTimeout(r, 100));
    }
  }
}
