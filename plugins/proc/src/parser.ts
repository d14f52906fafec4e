import {
  diagnostic,
  WORKER_READY_LINE,
  type Labels,
  type ParseContext,
  type Parser,
  type Sample,
} from '@scalpels/core';
import { unescapeLabel } from './format.js';
import type { Options } from './options.js';

const SERIES = /^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$/;
const LABEL_KEY = /^[a-z][a-z0-9_]*$/;

/** Parses one sampler line (see ./format.ts) into a sample; comments and the ready line give nothing. Pure. */
export function parseLine(text: string): Sample | ReturnType<typeof diagnostic> | null {
  if (text === '' || text.startsWith('#') || text === WORKER_READY_LINE) return null;
  const fields = text.split('\t');
  if (fields.length < 3)
    return diagnostic(`expected ts, series and value: ${JSON.stringify(text.slice(0, 120))}`);
  const [tsText, series, valueText] = fields as [string, string, string];
  const ts = Number(tsText);
  if (!/^\d+$/.test(tsText) || !Number.isSafeInteger(ts))
    return diagnostic(`bad timestamp ${JSON.stringify(tsText)}`);
  if (!SERIES.test(series)) return diagnostic(`bad series name ${JSON.stringify(series)}`);
  const value = Number(valueText);
  if (valueText === '' || !Number.isFinite(value))
    return diagnostic(`bad value ${JSON.stringify(valueText)} for ${series}`);
  const sample: Sample = { kind: 'sample', series, value, ts };
  if (fields.length > 3) {
    const labels: Record<string, string> = {};
    for (let i = 3; i < fields.length; i++) {
      const field = fields[i]!;
      const eq = field.indexOf('=');
      const key = field.slice(0, eq);
      const v = eq > 0 ? unescapeLabel(field.slice(eq + 1)) : undefined;
      if (!LABEL_KEY.test(key) || v === undefined)
        return diagnostic(`bad label ${JSON.stringify(field.slice(0, 80))} for ${series}`);
      labels[key] = v;
    }
    sample.labels = labels as Labels;
  }
  return sample;
}

export function createParser(_ctx: ParseContext<Options>): Parser {
  return { line: parseLine };
}
