import type { OptionSpecs, OptionValuesOf } from '@scalpels/core';

/** The options of proc (`--set proc.KEY=VALUE`). */
export const OPTIONS = {
  interval: {
    type: 'duration',
    default: '1s',
    min: '100ms',
    max: '1h',
    description: 'Sampling interval',
  },
  system: {
    type: 'boolean',
    default: true,
    description: 'Include system-wide series (kernel.*, mem.*, disk.*, network.*)',
  },
  devices: {
    type: 'list',
    description:
      'Block devices to report (globs, e.g. sd*,nvme0n1); default: whole disks except loop and ram',
  },
  interfaces: {
    type: 'list',
    description: 'Network interfaces to report (globs, e.g. eth*,br-ex); default: all',
  },
} as const satisfies OptionSpecs;

/** What the plugin's functions receive: options validated by the core, defaults applied. */
export type Options = OptionValuesOf<typeof OPTIONS>;
