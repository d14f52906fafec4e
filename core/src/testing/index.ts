/**
 * Test helpers for plugin authors (`@scalpels/core/testing`): run a parser over recorded output
 * and compare with expected records; run a plugin's real worker under a timeout.
 */
import { readFileSync, existsSync, readdirSync, mkdirSync, mkdtempSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type {
  ParseDiagnostic,
  ParseNote,
  OptionValues,
  ParseResult,
  PluginManifest,
  TraceRecord,
  DroppedNotice,
} from '../api.js';
import { validateOptions } from '../options.js';
import { NODE_CONFIG_DIR } from '../trust.js';

export { runWorker, waitFor, type RunWorkerOptions, type RunWorkerResult } from './run-worker.js';
export { memorySetupContext } from './setup-context.js';
export { machineTestLock } from './machine-lock.js';
export { runCli, runCliOk, cliEntry, type RunCliOptions, type CliResult } from './cli.js';
export {
  checkPluginConformance,
  checkBundleConformance,
  type ConformanceOptions,
} from './conformance.js';
/** A plugin's report view applied to a report, as `scalpels report` renders it. */
export {
  summarize,
  formatSummaryText,
  type ReportSummary,
  type SummaryTable,
} from '../report/summary.js';

export interface ParseOutcome {
  records: TraceRecord[];
  /** Diagnostics for malformed lines, with their 1-based line numbers. */
  diagnostics: { line: number; message: string }[];
  /** Notes about the figures (see ParseNote). */
  notes: string[];
  dropped: number;
}

/** Feeds lines to a fresh parser of the plugin, as the runner would. */
export function parseLines(
  manifest: PluginManifest,
  lines: Iterable<string>,
  rawOptions: Record<string, unknown> = {},
  technique?: string,
): ParseOutcome {
  const options = validateOptions(manifest, rawOptions);
  const parser = manifest.parser({ options, technique, startedAt: 0 });
  const out: ParseOutcome = { records: [], diagnostics: [], notes: [], dropped: 0 };
  let n = 0;
  const take = (r: ParseResult | DroppedNotice | ParseNote, line: number): void => {
    if (r === null || r === undefined) return;
    if (Array.isArray(r)) {
      for (const x of r as (TraceRecord | ParseNote)[])
        if (x.kind === 'note') out.notes.push(x.message);
        else out.records.push(x);
      return;
    }
    const one = r as TraceRecord | DroppedNotice | ParseNote | ParseDiagnostic;
    if (one.kind === 'diagnostic') out.diagnostics.push({ line, message: one.message });
    else if (one.kind === 'note') out.notes.push(one.message);
    else if (one.kind === 'dropped') out.dropped += one.count;
    else out.records.push(one);
  };
  for (const text of lines) {
    n++;
    take(parser.line(text), n);
  }
  if (parser.end) take(parser.end(), n);
  return out;
}

/** Splits recorded stdout as the runner does (on `\n`; a final line without newline counts). */
export function splitRecorded(text: string): string[] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

export interface TestdataCase {
  /** Folder name, `<tool>-<version>-<scenario>`. */
  name: string;
  dir: string;
  /** Recorded stdout of the real tool. */
  stdout: string;
  /** Options the tracer ran with (`options.json`), raw as a user would give them. */
  options: Record<string, unknown>;
  technique?: string;
  /** `expected.json`: the records the parser must produce, plus counts of parse errors and drops. */
  expected: { records: TraceRecord[]; parseErrors?: number; dropped?: number };
}

/**
 * Lists the cases of a plugin's `testdata/` folder. Each case folder holds `stdout.txt` (recorded
 * from the real tool), `expected.json`, optionally `options.json` and a `README.md` saying how it
 * was recorded.
 */
export function loadTestdata(testdataDir: string): TestdataCase[] {
  if (!existsSync(testdataDir)) return [];
  return readdirSync(testdataDir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(testdataDir, d.name, 'stdout.txt')))
    .map((d) => {
      const dir = join(testdataDir, d.name);
      const json = (f: string): unknown =>
        existsSync(join(dir, f)) ? JSON.parse(readFileSync(join(dir, f), 'utf8')) : undefined;
      const opts = (json('options.json') ?? {}) as Record<string, unknown> & { technique?: string };
      const { technique, ...options } = opts;
      return {
        name: d.name,
        dir,
        stdout: readFileSync(join(dir, 'stdout.txt'), 'utf8'),
        options,
        technique,
        expected: (json('expected.json') ?? { records: [] }) as TestdataCase['expected'],
      };
    });
}

/** Parses a testdata case; compare `records`, `diagnostics.length` and `dropped` with `expected`. */
export function parseTestdataCase(manifest: PluginManifest, c: TestdataCase): ParseOutcome {
  return parseLines(manifest, splitRecorded(c.stdout), c.options, c.technique);
}

export type { OptionValues };

/**
 * Gate for tests that need something of the machine (a tool, a service, root). Returns whether
 * the test can run. When it cannot, it prints why; under `CI=true` a missing capability throws,
 * so CI fails instead of silently skipping.
 */
export function capability(name: string, available: boolean, why: string): boolean {
  if (available) return true;
  if (process.env.CI === 'true')
    throw new Error(`required capability missing under CI: ${name}: ${why}`);
  console.warn(`skipping tests that need ${name}: ${why}`);
  return false;
}

/**
 * A scratch folder root may trust for credential files and scripts (see trustedFile): as root a
 * fresh 0700 folder inside /etc/scalpels/ (created 0755 when missing), otherwise one in $HOME.
 * Files written there must be 0600/0640 to pass. Remove it after the test.
 */
export function trustedScratchDir(prefix = 'test-'): string {
  const root = (process.geteuid?.() ?? 0) === 0;
  const base = root ? NODE_CONFIG_DIR : homedir();
  if (root) mkdirSync(base, { recursive: true, mode: 0o755 });
  return mkdtempSync(join(base, prefix));
}
