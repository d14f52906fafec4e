import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { cliDir, type GlobalArgs } from '../context.js';

/** The template of `scalpels plugins new`, shipped in the CLI package (`files`). */
export const pluginTemplateDir = join(cliDir, 'templates', 'plugin');

const NAME = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;

export interface ScaffoldOptions {
  /** Tracer name: the package is `scalpels-plugin-NAME`. */
  name: string;
  /** Folder to write; created when missing, refused when not empty. */
  dir: string;
  /** Version spec of @scalpels/core in devDependencies (default `^` the running core's version). */
  coreSpec?: string;
}

export interface ScaffoldResult {
  dir: string;
  packageName: string;
  files: string[];
}

function coreVersion(): string {
  const require = createRequire(import.meta.url);
  return (require('@scalpels/core/package.json') as { version: string }).version;
}

/** Files of the template, relative to it. */
function templateFiles(dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? templateFiles(join(dir, e.name), base) : [relative(base, join(dir, e.name))],
  );
}

/** `gitignore.tmpl` becomes `.gitignore` (npm pack drops files named .gitignore); `x.tmpl` becomes `x`. */
function targetName(rel: string): string {
  const out = rel.endsWith('.tmpl') ? rel.slice(0, -'.tmpl'.length) : rel;
  return out === 'gitignore' ? '.gitignore' : out;
}

/** Writes a ready plugin package from the template; every file is new (nothing is overwritten). */
export async function scaffoldPlugin(opts: ScaffoldOptions): Promise<ScaffoldResult> {
  const { UserError, PLUGIN_API_VERSION } = await import('@scalpels/core');
  if (!NAME.test(opts.name) || opts.name.length > 40)
    throw new UserError(
      `plugins new: "${opts.name}" is not a tracer name (lowercase letters, digits and single dashes, starting with a letter, at most 40)`,
    );
  const dir = resolve(opts.dir);
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new UserError(`plugins new: ${dir} is not a folder`);
    if (readdirSync(dir).length > 0)
      throw new UserError(`plugins new: ${dir} is not empty (give an empty or new --dir)`);
  }
  if (!existsSync(pluginTemplateDir))
    throw new Error(`plugin template missing at ${pluginTemplateDir} (broken installation)`);
  const major = Number(PLUGIN_API_VERSION.split('.')[0]);
  const version = coreVersion();
  const values: Record<string, string> = {
    __NAME__: opts.name,
    __DESCRIPTION__: `${opts.name} samples of the node and of target process trees (a starting point)`,
    __API_RANGE__: `>=${PLUGIN_API_VERSION} <${major + 1}`,
    // Compatibility is the plugin API range (scalpels.apiVersion), checked by the core; a caret
    // range on a 0.x core would make npm refuse the plugin beside the next minor CLI.
    __CORE_RANGE__: `>=${version}`,
    __CORE_SPEC__: opts.coreSpec ?? `^${version}`,
  };
  const files: string[] = [];
  for (const rel of templateFiles(pluginTemplateDir).sort()) {
    const text = readFileSync(join(pluginTemplateDir, rel), 'utf8').replace(
      /__[A-Z_]+__/g,
      (m) => values[m] ?? m,
    );
    const out = join(dir, targetName(rel));
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, text, { flag: 'wx', mode: 0o644 });
    files.push(targetName(rel));
  }
  return { dir, packageName: `scalpels-plugin-${opts.name}`, files };
}

interface NewArgs extends GlobalArgs {
  name?: string;
  dir?: string;
  /** npm spec of @scalpels/core for devDependencies (a tarball while core is not published). */
  core?: string;
}

/**
 * `scalpels plugins new NAME [--dir D]`: without --dir, the current folder when it is empty
 * (as `npm init` does), else a new `scalpels-plugin-NAME` folder in it.
 */
export async function newPluginCommand(args: NewArgs): Promise<number> {
  const { UserError } = await import('@scalpels/core');
  if (!args.name) throw new UserError('plugins new: give the tracer name, e.g. plugins new hello');
  const cwd = process.cwd();
  const dir =
    args.dir ?? (readdirSync(cwd).length === 0 ? cwd : join(cwd, `scalpels-plugin-${args.name}`));
  const r = await scaffoldPlugin({ name: args.name, dir, coreSpec: args.core });

  const { PluginRegistry } = await import('@scalpels/core/plugins');
  const clash = new PluginRegistry([cliDir]).list().find((p) => p.name === args.name && !p.bundle);
  if (args.json) {
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    return 0;
  }
  const where = relative(cwd, r.dir) || '.';
  const lines = [
    `wrote ${r.packageName} in ${r.dir}:`,
    ...r.files.map((f) => `  ${f}`),
    '',
    'next:',
    ...(where === '.' ? [] : [`  cd ${where}`]),
    '  npm install           # builds too (prepare)',
    '  npm test              # parser over testdata/, the real worker, README tables',
    `  SCALPELS_PLUGIN_PATH=${r.dir} scalpels run -t ${args.name} -- true`,
  ];
  if (clash)
    lines.push(
      '',
      `note: a tracer named "${args.name}" is already installed (${clash.package}@${clash.version} at ${clash.dir}); both would be reported as a conflict`,
    );
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
