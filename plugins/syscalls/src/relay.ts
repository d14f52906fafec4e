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
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let stopRequested = false;
for (const sig of STOP_SIGNALS)
  process.on(sig, () => {
    stopRequested = true;
    if (tool.exitCode === null && tool.signalCode === null) tool.kill(sig);
  });
tool.once('error', (e) => {
  process.stderr.write(`relay: ${argv[0]}: ${e.message}\n`);
  process.exit(127);
});
tool.once('exit', (code, signal) => {
  const exists = existsSync(file);
  // The tool creates the file when it starts; the summary is in it once it is not empty.
  const written = exists && statSync(file).size > 0;
  if (written) process.stdout.write(readFileSync(file));
  // Ended by a stop signal (ours, or the core's group signal that reached the tool first): the
  // summary is complete. strace -c writes nothing at all when it saw no call, so an empty file
  // then means zero calls, not a failure. A tool already leaving (its target gone) when the stop
  // came may die of the signal after writing: that is a normal stop too.
  const stopped = signal !== null && (stopRequested || STOP_SIGNALS.includes(signal));
  if (stopped && exists) process.exitCode = 0;
  else {
    process.exitCode = code ?? 128;
    if (!written)
      process.stderr.write(
        `relay: ${argv[0]} wrote no summary (${signal ? `killed by ${signal}` : `exit code ${code}`})\n`,
      );
  }
});
