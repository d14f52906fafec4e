// Runs every benchmark of this folder in turn (each prints one JSON line).
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
for (const file of readdirSync(here)
  .filter((f) => f.endsWith('.mjs') && f !== 'run.mjs')
  .sort()) {
  if (only.length && !only.some((o) => file.startsWith(o))) continue;
  execFileSync(process.execPath, [join(here, file)], { stdio: 'inherit' });
}
