// ESLint rule `scalpels/import-arrow`: keeps the dependency arrow `cli -> core <- plugins`.
// - core imports no plugin, no bundle and not the CLI;
// - a plugin imports only `@scalpels/core`'s plugin API, testing kit and /proc module (never its
//   internals by path), its own files, and third-party packages; never another plugin, a bundle
//   or the CLI;
// - the CLI imports no plugin (it finds them at run time through discovery).
// Relative specifiers are resolved against the importing file, so `../../plugins/x` is caught
// as surely as `@scalpels/plugin-x`.
import { dirname, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The core entry points a plugin may import (its plugin API, alone or with the small utilities, testing kit and /proc module). */
export const PLUGIN_CORE_ENTRIES = [
  '@scalpels/core',
  '@scalpels/core/api',
  '@scalpels/core/testing',
  '@scalpels/core/procfs',
];

/** `a`, `a and b`, `a, b and c`. */
function listed(names) {
  return names.length < 2 ? names.join('') : `${names.slice(0, -1).join(', ')} and ${names.at(-1)}`;
}

/** Which part of the workspace a path (relative to the root, `/`-separated) belongs to. */
export function areaOfPath(rel) {
  const parts = rel.split('/');
  if (parts[0] === '..' || parts[0] === '') return { kind: 'outside' };
  if (parts[0] === 'core') return { kind: 'core' };
  if (parts[0] === 'cli') return { kind: 'cli' };
  if (parts[0] === 'plugins' && parts.length > 2) return { kind: 'plugin', name: parts[1] };
  if (parts[0] === 'bundles' && parts.length > 2) return { kind: 'bundle', name: parts[1] };
  return { kind: 'other' };
}

/** What a package specifier names, for the packages that take part in the arrow. */
export function areaOfPackage(spec) {
  const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
  if (name === '@scalpels/core') return { kind: 'core', entry: spec };
  if (name === '@scalpels/cli') return { kind: 'cli' };
  let m = /^@scalpels\/plugin-(.+)$/.exec(name) ?? /^(?:@[^/]+\/)?scalpels-plugin-(.+)$/.exec(name);
  if (m) return { kind: 'plugin', name: m[1] };
  m = /^@scalpels\/bundle-(.+)$/.exec(name) ?? /^(?:@[^/]+\/)?scalpels-bundle-(.+)$/.exec(name);
  if (m) return { kind: 'bundle', name: m[1] };
  return { kind: 'third-party' };
}

function describe(target) {
  switch (target.kind) {
    case 'core':
      return 'the core';
    case 'cli':
      return 'the CLI';
    case 'plugin':
      return `plugin ${target.name}`;
    case 'bundle':
      return `bundle ${target.name}`;
    default:
      return 'code outside this package';
  }
}

/** Why `from` may not import `target` (by `spec`), or undefined when it may. */
export function violation(from, target, spec, relativeSpec) {
  if (from.kind === 'core') {
    if (['cli', 'plugin', 'bundle'].includes(target.kind))
      return `the core imports no plugin, bundle or CLI (${spec} is ${describe(target)})`;
    return undefined;
  }
  if (from.kind === 'plugin') {
    if (target.kind === 'plugin' && target.name === from.name && relativeSpec) return undefined;
    if (target.kind === 'core' && !relativeSpec && PLUGIN_CORE_ENTRIES.includes(target.entry))
      return undefined;
    if (target.kind === 'core')
      return `a plugin imports only ${listed(PLUGIN_CORE_ENTRIES)} from the core, not ${spec}`;
    if (['cli', 'plugin', 'bundle'].includes(target.kind))
      return `plugin ${from.name} imports only the core's plugin API, not ${describe(target)} (${spec})`;
    if (relativeSpec && target.kind !== 'third-party')
      return `plugin ${from.name} is self-contained: ${spec} leaves its folder`;
    return undefined;
  }
  if (from.kind === 'cli') {
    if (target.kind === 'plugin' || target.kind === 'bundle')
      return `the CLI imports no plugin or bundle (${spec} is ${describe(target)}): discovery finds them`;
    return undefined;
  }
  return undefined;
}

export const importArrow = {
  meta: {
    type: 'problem',
    docs: { description: 'Keep the import arrow cli -> core <- plugins' },
    schema: [],
    messages: { arrow: '{{why}}' },
  },
  create(context) {
    const file = context.filename;
    const rel = relative(ROOT, file).split(sep).join('/');
    const from = areaOfPath(rel);
    if (!['core', 'plugin', 'cli'].includes(from.kind)) return {};
    const check = (node, source) => {
      if (!source || source.type !== 'Literal' || typeof source.value !== 'string') return;
      const spec = source.value;
      let target;
      const relativeSpec = spec.startsWith('.') || spec.startsWith('/');
      if (relativeSpec) {
        const to = relative(ROOT, resolve(dirname(file), spec))
          .split(sep)
          .join('/');
        target = areaOfPath(to);
        if (target.kind === 'core') target.entry = spec;
      } else if (spec.startsWith('node:')) {
        return;
      } else {
        target = areaOfPackage(spec);
      }
      const why = violation(from, target, spec, relativeSpec);
      if (why) context.report({ node, messageId: 'arrow', data: { why } });
    };
    return {
      ImportDeclaration: (node) => check(node, node.source),
      ExportNamedDeclaration: (node) => check(node, node.source),
      ExportAllDeclaration: (node) => check(node, node.source),
      ImportExpression: (node) => check(node, node.source),
      TSImportEqualsDeclaration: (node) =>
        node.moduleReference?.type === 'TSExternalModuleReference' &&
        check(node, node.moduleReference.expression),
      // Newer typescript-eslint names the specifier `source`; older ones `argument.literal`.
      TSImportType: (node) => check(node, 'source' in node ? node.source : node.argument?.literal),
      CallExpression: (node) => {
        if (node.callee.type === 'Identifier' && node.callee.name === 'require')
          check(node, node.arguments[0]);
      },
    };
  },
};

export default { rules: { 'import-arrow': importArrow } };
