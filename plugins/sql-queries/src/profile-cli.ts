#!/usr/bin/env node
/**
 * `node dist/profile-cli.js [REPORT.json] [--json]`: prints the profile of every sql-queries
 * tracer of a `scalpels report --format json` (from the file, or stdin).
 */
import { readFileSync } from 'node:fs';
import { formatProfile, profile, type ReportTracer } from './profile.js';

const args = process.argv.slice(2);
const asJson = args.includes('--json');
const file = args.find((a) => a !== '--json');
try {
  const report = JSON.parse(readFileSync(file ?? 0, 'utf8')) as {
    format?: string;
    tracers?: ReportTracer[];
  };
  if (report.format !== 'scalpels.report/v1')
    throw new Error(`not a scalpels.report/v1 report: ${file ?? 'stdin'}`);
  const tracers = (report.tracers ?? []).filter(
    (t) => t.plugin?.package === '@scalpels/plugin-sql-queries' || t.tracer === 'sql-queries',
  );
  if (tracers.length === 0) throw new Error('the report has no sql-queries tracer');
  const out = tracers.map((t) => ({ tracer: t.tracer, profile: profile(t) }));
  process.stdout.write(
    asJson
      ? `${JSON.stringify(out, null, 2)}\n`
      : `${out.map((o) => `${o.tracer}\n${formatProfile(o.profile)}`).join('\n\n')}\n`,
  );
} catch (e) {
  process.stderr.write(`sql-queries profile: ${(e as Error).message}\n`);
  process.exitCode = 1;
}
