import type { OptionSpecs, OptionValuesOf } from '@scalpels/core';
import { PRESETS } from './presets.js';

const presetNames = Object.keys(PRESETS);

/** The options of python-calls (`--set python-calls.KEY=VALUE`). */
export const OPTIONS = {
  function: {
    type: 'list',
    description:
      'Function names to count (matched against the name or the qualified name, Class.method)',
    pattern: /^[A-Za-z_][A-Za-z0-9_.<>]*$/,
  },
  module: {
    type: 'list',
    description: "Module name globs (the function's module, e.g. oslo_messaging.*)",
  },
  file: {
    type: 'list',
    description: 'Source file path globs (e.g. */oslo_messaging/rpc/client.py)',
  },
  preset: {
    type: 'list',
    description: `Ready-made filters, added to the others: ${presetNames.join(', ')}`,
    pattern: new RegExp(`^(${presetNames.join('|')})$`),
  },
  top: {
    type: 'integer',
    default: 100,
    min: 0,
    description:
      'Report the N most called functions by name and sum the rest as "(other)"; 0 = no limit',
  },
  thread: {
    type: 'boolean',
    default: false,
    description:
      'Label calls with the thread that made them (the green thread under eventlet); off: one series per function and process',
  },
  timing: {
    type: 'boolean',
    default: false,
    description:
      'Measure inclusive time per call (python.call.time, python.call.duration); costs more',
  },
  exceptions: {
    type: 'boolean',
    default: false,
    description: 'Count calls that end by raising (python.exceptions)',
  },
  interval: {
    type: 'duration',
    default: '1s',
    min: '50ms',
    description: 'How often counts are reported',
    unit: 'ms',
  },
  follow: {
    type: 'boolean',
    default: true,
    description:
      'Also trace Python processes the target starts later (caught at exec, before they run any code)',
  },
  'attach-timeout': {
    aliases: ['attachTimeout'],
    type: 'duration',
    default: '10s',
    description: "How long a running interpreter's main thread may take to pick up the profiler",
    unit: 'ms',
  },
} as const satisfies OptionSpecs;

/** What the plugin's functions receive: options validated by the core, defaults applied. */
export type Options = OptionValuesOf<typeof OPTIONS>;
