/**
 * The tracer's worker process: runs stap and owns its stop.
 *
 *   node supervise.js --module NAME --stop-timeout MS [--runtime kernel|bpf] [--extra-roots 1,2] -- stap ARGS...
 *
 * stap's stdout is passed through untouched (the parser reads it). On SIGINT/SIGTERM (which the
 * core sends to the whole process group, stap included) it waits for stap to run its end probes
 * and unload its module; after --stop-timeout it escalates to SIGTERM, then SIGKILL. It then
 * checks that the kernel module is gone and unloads it with `staprun -d` if not; a module that
 * stays loaded makes it exit 3 with a message saying how to remove it. Probes stap skipped and
 * output it lost are reported on stdout as `# scalpels: dropped N`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { release } from 'node:os';
import { moduleLoaded } from './leftovers.js';

interface Args {
  module: string;
  stopTimeoutMs: number;
  runtime: string;
  extraRoots: string;
  command: string[];
}

function parseArgs(argv: string[]): Args {
  const sep = argv.indexOf('--');
  const own = sep >= 0 ? argv.slice(0, sep) : argv;
  const command = sep >= 0 ? argv.slice(sep + 1) : [];
  const get = (name: string): string | undefined => {
    const i = own.indexOf(name);
    return i >= 0 ? own[i + 1] : undefined;
  };
  return {
    module: get('--module') ?? '',
    stopTimeoutMs: Number(get('--stop-timeout') ?? 20000),
    runtime: get('--runtime') ?? 'kernel',
    extraRoots: get('--extra-roots') ?? '',
    command,
  };
}

/** What stap says on stderr that the tracer should know about. */
class StderrWatch {
  skipped = 0;
  transportFailures = 0;
  noBuildTree: string | undefined;
  private partial = '';

  push(chunk: string): void {
    const text = this.partial + chunk;
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const l of lines) this.line(l);
  }

  end(): void {
    if (this.partial) this.line(this.partial);
    this.partial = '';
  }

  private line(l: string): void {
    let m = /skipped probes: (\d+)/.exec(l);
    if (m) this.skipped = Math.max(this.skipped, Number(m[1]));
    m = /There were (\d+) transport failures/.exec(l);
    if (m) this.transportFailures = Math.max(this.transportFailures, Number(m[1]));
    m = /^Checking "(\/lib\/modules\/[^"]+\/build\/\.config)" failed/.exec(l);
    if (m) this.noBuildTree = m[1];
  }
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  const [file, ...rest] = args.command;
  if (!file) {
    process.stderr.write('supervise: no command after --\n');
    process.exit(2);
  }
  if (args.extraRoots) {
    process.stderr.write(
      `scalpels: stap -x takes one pid; processes ${args.extraRoots} (and their children) are not in target() and only system-wide probes see them\n`,
    );
  }
  // Handlers first: the core may signal the group as soon as stap prints its ready line.
  let child: ChildProcess | undefined = undefined;
  let stopping = false;
  const timers: NodeJS.Timeout[] = [];
  const onStop = (): void => {
    if (stopping) return;
    stopping = true;
    // The signal reached stap through the process group; resending SIGINT could cut its end
    // probes short. Escalate only if it does not finish in time.
    timers.push(
      setTimeout(() => {
        process.stderr.write(
          `scalpels: stap did not exit ${args.stopTimeoutMs} ms after SIGINT; sending SIGTERM\n`,
        );
        child?.kill('SIGTERM');
        timers.push(
          setTimeout(() => {
            process.stderr.write('scalpels: stap still running; sending SIGKILL\n');
            child?.kill('SIGKILL');
          }, 3000),
        );
      }, args.stopTimeoutMs),
    );
  };
  process.on('SIGINT', onStop);
  process.on('SIGTERM', onStop);
  process.on('SIGHUP', onStop);

  // stap stays in our process group: a SIGKILL of the group by the core reaches it too.
  const stap = spawn(file, rest, { stdio: ['ignore', 'inherit', 'pipe'] });
  child = stap;
  const watch = new StderrWatch();
  stap.stderr.setEncoding('utf8');
  stap.stderr.on('data', (chunk: string) => {
    process.stderr.write(chunk);
    watch.push(chunk);
  });

  stap.on('error', (e) => {
    process.stderr.write(`scalpels: cannot run ${file}: ${e.message}\n`);
    process.exit(127);
  });

  stap.on('close', (code, signal) => {
    for (const t of timers) clearTimeout(t);
    watch.end();
    const dropped = watch.skipped + watch.transportFailures;
    if (dropped > 0) process.stdout.write(`# scalpels: dropped ${dropped}\n`);

    let exitCode = code ?? (signal === 'SIGINT' ? 0 : 1);
    if (args.runtime === 'kernel' && args.module && moduleLoaded(args.module)) {
      spawnSync('staprun', ['-d', args.module], {
        stdio: ['ignore', 'ignore', 'inherit'],
        timeout: 15000,
      });
      if (moduleLoaded(args.module)) {
        process.stderr.write(
          `scalpels: systemtap module ${args.module} is still loaded after stap exited; remove it with: staprun -d ${args.module} (or rmmod ${args.module})\n`,
        );
        exitCode = 3;
      } else {
        process.stderr.write(`scalpels: unloaded leftover systemtap module ${args.module}\n`);
      }
    }
    if (!stopping && watch.noBuildTree) {
      const noModules =
        args.runtime === 'kernel' && !existsSync('/proc/modules')
          ? ', and the kernel has no loadable module support (no /proc/modules) to load one'
          : '';
      process.stderr.write(
        `scalpels: SystemTap cannot build a module for kernel ${release()}: ${watch.noBuildTree} is missing (no kernel build tree)${noModules}; run \`scalpels doctor\` for what to install\n`,
      );
    }
    // A stap stopped on request exits 0; an interrupted one may report the signal.
    if (stopping && exitCode !== 3 && (signal === 'SIGINT' || signal === 'SIGTERM')) exitCode = 0;
    process.exit(exitCode);
  });
}

main();
