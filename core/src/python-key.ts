/**
 * The one key of a Python function, `module:qualname`, for every plugin that names Python
 * functions (python-calls' techniques, systemtap's bundled python-calls script), so that the
 * same function gets the same key whichever tracer saw it and reports can be compared.
 */
import { execFileSync } from 'node:child_process';

/** The `module:qualname` key (module `?` when unknown). The in-process agent builds the same. */
export function pythonFunctionKey(module: string, qualname: string): string {
  return `${module || '?'}:${qualname}`;
}

/**
 * The module an interpreter imports `file` as, for tracers that see only a source path (USDT
 * markers): its dotted path below the longest `sys.path` entry that holds it (`__init__` is the
 * package); else below a site-/dist-packages folder (another interpreter's, a venv) or a
 * standard library folder (`/usr/lib/python3.11/`); else the file's stem (a script: its folder
 * is its own sys.path[0]). `<frozen x>` is x; anything else (a path cut short, `<string>`) is `?`.
 */
export function pythonModuleOfFile(file: string, sysPath: readonly string[] = []): string {
  const dotted = (rel: string): string =>
    rel
      .replace(/\.py[co]?$/, '')
      .replace(/\//g, '.')
      .replace(/(^|\.)__init__$/, '');
  const source = /\.py[co]?$/.test(file);
  if (source)
    for (const entry of [...sysPath].sort((a, b) => b.length - a.length)) {
      const base = entry.endsWith('/') ? entry : `${entry}/`;
      if (file.startsWith(base)) return dotted(file.slice(base.length));
    }
  const pkg = /\/(?:site|dist)-packages\/(.+\.py[co]?)$/.exec(file)?.[1];
  if (pkg) return dotted(pkg);
  const stdlib = /\/lib\/python\d+(?:\.\d+)?\/(.+\.py[co]?)$/.exec(file)?.[1];
  if (stdlib) return dotted(stdlib);
  const stem = /([^/]+)\.py[co]?$/.exec(file)?.[1];
  if (stem) return stem;
  return /^<frozen (.+)>$/.exec(file)?.[1] ?? '?';
}

/** The key of function `qualname` defined in `file` (see pythonModuleOfFile). */
export function pythonKeyOfFile(
  file: string,
  qualname: string,
  sysPath: readonly string[] = [],
): string {
  return pythonFunctionKey(pythonModuleOfFile(file, sysPath), qualname);
}

const sysPaths = new Map<string, string[]>();
/**
 * `sys.path` of an interpreter (absolute entries, longest first), asked once per process; empty
 * while it cannot run. Give it a trusted interpreter (the node's own), never a traced binary.
 */
export function pythonSysPath(python: string): string[] {
  let paths = sysPaths.get(python);
  if (paths) return paths;
  try {
    const out = execFileSync(python, ['-c', 'import sys, json; print(json.dumps(sys.path))'], {
      encoding: 'utf8',
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    paths = (JSON.parse(out) as unknown[])
      .filter((p): p is string => typeof p === 'string' && p.startsWith('/'))
      .sort((a, b) => b.length - a.length);
  } catch {
    // Not cached: the interpreter may be installed while a long-lived agent runs.
    return [];
  }
  sysPaths.set(python, paths);
  return paths;
}
