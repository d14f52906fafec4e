import { trustedFile, UserError, type TrustPolicy } from '@scalpels/core';
import { bundledScript } from './bundled.js';
import type { Options } from './options.js';

/** The tapset folders (`-I DIR`) the flags name. */
export function includeDirs(options: Options): string[] {
  return options.flags.flatMap((f) => /^-I\s*(\/[^\0]*)$/.exec(f.trim())?.[1] ?? []);
}

/**
 * What root allowed for this tracer, checked before it starts (in check()) and again when the
 * worker is built: a user script only with --allow-scripts and from a file only root can change
 * (trustedFile), guru mode only with --allow-guru, tapset folders (`-I`, guru only) like scripts.
 * Throws a one-line UserError naming the option.
 */
export function requireTrusted(options: Options, policy: TrustPolicy | undefined): void {
  const { script } = options;
  if (!bundledScript(script))
    trustedFile(script, 'script', { label: 'systemtap: option "script"', policy });
  if (options.guru && policy?.allowGuru !== true)
    throw new UserError(
      'systemtap: option "guru" refused: guru mode needs the agent (or scalpels run) started with --allow-guru',
    );
  for (const dir of includeDirs(options))
    trustedFile(dir, 'folder', { label: 'systemtap: option "flags" (-I)', policy });
}
