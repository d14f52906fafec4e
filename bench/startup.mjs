// Start-up benchmark: median wall time of `scalpels plugins list` against `node -e 0`, both
// measured in this run (5 runs each, interleaved so load changes hit both alike).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'cli', 'dist', 'main.js');
const RUNS = Number(process.env.BENCH_RUNS ?? 5);

const time = (args) => {
  const t0 = performance.now();
  execFileSync(process.execPath, args, { stdio: 'ignore', env: { ...process.env, NO_COLOR: '1' } });
  return performance.now() - t0;
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

time(['-e', '0']);
time([cli, 'plugins', 'list']); // warm the page cache for both
const bare = [];
const list = [];
for (let i = 0; i < RUNS; i++) {
  bare.push(time(['-e', '0']));
  list.push(time([cli, 'plugins', 'list']));
}
const result = {
  benchmark: 'startup',
  runs: RUNS,
  nodeMedianMs: Number(median(bare).toFixed(1)),
  pluginsListMedianMs: Number(median(list).toFixed(1)),
  ratio: Number((median(list) / median(bare)).toFixed(2)),
  target: '<= 2.5',
};
mkdirSync(join(here, 'results'), { recursive: true });
writeFileSync(join(here, 'results', 'startup.json'), `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(result));
