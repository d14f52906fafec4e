/**
 * Extra stap flags a user may add (option `flags`). Only flags that neither lift SystemTap's
 * safety limits nor change where output goes are allowed: no `-g` (guru mode has its own option
 * `guru=true`), no `-I` (tapset directories may hold embedded C, which is guru mode by the back
 * door), no `-o`/`-b`/`-p`/`-c`/`-x`/`-m`/`-r`/`--runtime` (the tracer sets those itself).
 */

/** Compile-time limits that may be raised with `-D NAME=NUMBER`. */
export const ALLOWED_MACROS: readonly string[] = [
  'MAXACTION',
  'MAXACTION_INTERRUPTIBLE',
  'MAXBACKTRACE',
  'MAXERRORS',
  'MAXMAPENTRIES',
  'MAXNESTING',
  'MAXSKIPPED',
  'MAXSTRINGLEN',
  'MAXTRYLOCK',
  'STP_OVERLOAD_INTERVAL',
  'STP_OVERLOAD_THRESHOLD',
  'TRYLOCKDELAY',
];

const SWITCHES = new Set([
  '-w',
  '-t',
  '-u',
  '-P',
  '--skip-badvars',
  '--suppress-handler-errors',
  '--ldd',
  '--all-modules',
]);

/** One-line description for `plugins info`. */
export const FLAGS_HELP =
  'extra stap flags, each one item: -w -t -u -P --skip-badvars --suppress-handler-errors --ldd --all-modules, -s MB, -d OBJECT, -G VAR=VALUE, -D NAME=NUMBER (NAME one of MAXACTION, MAXMAPENTRIES, MAXSTRINGLEN, MAXSKIPPED, ... see README); -g and -I only through guru=true';

/**
 * Turns the `flags` option into stap argv, or returns the reason an item is refused.
 * `guru` additionally admits `-I DIR` (guru mode itself is the `guru` option, never a flag).
 */
export function stapFlags(
  items: readonly string[],
  guru: boolean,
): { argv: string[] } | { error: string } {
  const argv: string[] = [];
  for (const raw of items) {
    const item = raw.trim();
    if (SWITCHES.has(item)) {
      argv.push(item);
      continue;
    }
    let m = /^-s\s*(\d+)$/.exec(item);
    if (m) {
      const mb = Number(m[1]);
      if (mb < 1 || mb > 4095)
        return { error: `flag ${JSON.stringify(item)}: -s takes 1-4095 (MB)` };
      argv.push('-s', String(mb));
      continue;
    }
    m = /^-D\s*([A-Z_]+)=(\d+)$/.exec(item);
    if (m) {
      if (!ALLOWED_MACROS.includes(m[1]!)) {
        return {
          error: `flag ${JSON.stringify(item)}: -D allows only ${ALLOWED_MACROS.join(', ')}`,
        };
      }
      argv.push(`-D${m[1]}=${m[2]}`);
      continue;
    }
    m = /^-d\s*(\/[^\0]*)$/.exec(item);
    if (m) {
      argv.push('-d', m[1]!);
      continue;
    }
    // stap's own safety pattern for -G values.
    m = /^-G\s*([a-z_][a-z0-9_]*=[a-z0-9_.-]+)$/.exec(item);
    if (m) {
      argv.push('-G', m[1]!);
      continue;
    }
    m = /^-I\s*(\/[^\0]*)$/.exec(item);
    if (m) {
      if (!guru)
        return { error: `flag ${JSON.stringify(item)}: -I (tapset directory) needs guru=true` };
      argv.push('-I', m[1]!);
      continue;
    }
    if (/^-g$|^--guru/.test(item))
      return { error: 'guru mode is the option guru=true, not a flag' };
    return { error: `flag ${JSON.stringify(item)} is not allowed (allowed: ${FLAGS_HELP})` };
  }
  return { argv };
}
