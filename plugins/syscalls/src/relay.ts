/**
 * Runs a summary tool (strace -c, perf trace -s) that can only write its summary to a file
 * (its `-o /dev/stdout` fails: the worker's stdout is a socket), then copies that file to
 * stdout once the tool has exited. Usage: node relay.js SUMMARY_FILE -- TOOL ARGS...
 *
 * The core signals the whole process group; a stop signal that reaches only this process is
 * passed on to the tool (twice is harmless: both tools just finish). Either way this process
 * stays until the tool has written its summary.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';

const [file, sep, ...argv] = process.argv.slice(2);
if (!file || sep !== '--' || argv.length === 0) {
  process.stderr.write('usage: relay.js SUMMARY_FILE -- TOOL ARGS...\n');
  process.exit(2);
}
const tool = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit'] });
let stopRequested = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
  process.on(sig, () => {
    stopRequested = true;
    if (tool.exitCode === null && tool.signalCode === null) tool.kill(sig);
  });
tool.once('error', (e) => {
  process.stderr.write(`relay: ${argv[0]}: ${e.message}\n`);
  process.exit(127);
});
tool.once('exit', (code, signal) => {
  // The tool creates the file when it starts; the summary is in it only once it is not empty.
  const written = existsSync(file) && statSync(file).size > 0;
  if (written) process.stdout.write(readFileSync(file));
  // A tool already leaving (its target gone) when the stop signal came may die of it after its
  // summary is written: that is a normal stop.
  if (signal && stopRequested && written) process.exitCode = 0;
  else process.exitCode = code ?? 128;
  if (!written) process.stderr.write(`relay: ${argv[0]} wrote no summary\n`);
});
