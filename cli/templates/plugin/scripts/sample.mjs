#!/usr/bin/env node
// The worker of scalpels-plugin-__NAME__. It observes the system and prints one line per value on
// stdout, nothing else:   <unix time in ms> TAB <series> TAB <value>
//   load1       the 1-minute load average (/proc/loadavg)
//   processes   live processes in the target's trees (root pids given as arguments), or on the
//               whole system when no pid is given
// Usage: node sample.mjs [--interval MS] [--count N] [PID..]
// It samples at once (the first line tells Scalpels it is ready), then every interval; on SIGTERM
// it prints a last sample and exits 0. Replace the sampling with what your tracer observes.
import { readFileSync, readdirSync } from 'node:fs';

let intervalMs = 1000;
let count = Infinity;
const roots = [];
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--interval') intervalMs = Number(args[++i]);
  else if (a === '--count') count = Number(args[++i]);
  else roots.push(Number(a));
}
if (!(intervalMs > 0) || !(count > 0) || roots.some((p) => !Number.isSafeInteger(p) || p <= 0)) {
  process.stderr.write('usage: sample.mjs [--interval MS] [--count N] [PID..]\n');
  process.exit(2);
}

function parentOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: the fields after the last ')' are safe.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? undefined : Number(fields[1]);
  } catch {
    return undefined; // gone meanwhile
  }
}

function countProcesses() {
  const parents = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const ppid = parentOf(Number(entry));
    if (ppid !== undefined) parents.set(Number(entry), ppid);
  }
  if (roots.length === 0) return parents.size;
  const wanted = new Set(roots);
  let n = 0;
  for (const pid of parents.keys()) {
    for (let p = pid, depth = 0; p !== undefined && p > 0 && depth < 128; depth++) {
      if (wanted.has(p)) {
        n++;
        break;
      }
      p = parents.get(p);
    }
  }
  return n;
}

let taken = 0;
function sample(then) {
  const ts = Date.now();
  const load1 = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  taken++;
  process.stdout.write(`${ts}\tload1\t${load1}\n${ts}\tprocesses\t${countProcesses()}\n`, then);
}

// The stop handler goes first: Scalpels may send SIGTERM as soon as it reads the first line.
let timer;
process.once('SIGTERM', () => {
  clearInterval(timer);
  sample(() => process.exit(0));
});
sample();
timer = setInterval(() => {
  if (taken >= count) {
    clearInterval(timer);
    return;
  }
  sample();
}, intervalMs);
