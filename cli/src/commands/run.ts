import type { TracerRequest } from '@scalpels/core/engine';
import { loadEngine, makeConfig, type GlobalArgs } from '../context.js';
import { checkOps } from './tasks.js';

interface RunArgs extends GlobalArgs {
  tracer: string[];
  set?: string[];
  preset?: string;
  name?: string;
  label?: string[];
  format: 'table' | 'json' | 'none';
  ops?: number;
  top?: number;
  all?: boolean;
  '--'?: (string | number)[];
}

/** Turns `-t a,b -t c` and `--set a.key=value` into tracer requests; a setting for an absent tracer is an error. */
export async function tracerRequests(
  tracers: string[],
  settings: string[] = [],
): Promise<TracerRequest[]> {
  const { parseSetting, UserError } = await import('@scalpels/core');
  const names = tracers
    .flatMap((t) => t.split(','))
    .map((t) => t.trim())
    .filter(Boolean);
  const requests = names.map((name) => ({ name, options: {} as Record<string, unknown> }));
  for (const s of settings) {
    const { tracer, key, value } = parseSetting(s);
    const req = requests.find((r) => r.name === tracer);
    if (!req)
      throw new UserError(`--set ${s}: tracer "${tracer}" is not among -t ${names.join(',')}`);
    req.options[key] = value;
  }
  return requests;
}

export function parseLabels(labels: string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of labels) {
    const eq = l.indexOf('=');
    if (eq <= 0)
      throw Object.assign(new Error(`--label ${l}: expected KEY=VALUE`), { name: 'UserError' });
    out[l.slice(0, eq)] = l.slice(eq + 1);
  }
  return out;
}

/**
 * `scalpels run`: validates everything first (nothing is stored on bad input), starts the
 * launcher, attaches the tracers to it, starts the command, waits for it, stops the tracers and
 * prints the report. Exits with the command's exit status.
 */
export async function runCommand(args: RunArgs): Promise<number> {
  const engine = await loadEngine();
  const { UserError, TOKENS, createContainer, Workload, buildReport, formatReportText, killGroup } =
    engine;
  const ops = checkOps(engine, args.ops);
  const command = (args['--'] ?? []).map(String);
  if (command.length === 0)
    throw new UserError(
      'run: give the command to trace after --, e.g. scalpels run -t proc -- sleep 1',
    );
  // --preset: its tracers and options first, then -t and --set given here.
  const { tracer, set } = await (await import('./presets.js')).applyPreset(args, 'run');
  const requests = await tracerRequests(tracer, set);
  const labels = parseLabels(args.label);
  const config = await makeConfig(args);
  const container = createContainer(config);
  const tasks = container.resolve<InstanceType<typeof engine.TaskService>>(TOKENS.TaskService);
  const stores = container.resolve<InstanceType<typeof engine.StoreProvider>>(TOKENS.StoreProvider);

  const prepared = await tasks.prepare(requests, true);
  await tasks.recover();

  // Ctrl-C on a terminal reaches the whole foreground group, the command included; a signal sent
  // to us alone is forwarded (a second one in any case, a third as SIGKILL). Before the command
  // has started, a signal cancels it. Either way the tracers are stopped and the report written.
  // Once the tracers are being stopped, a second signal quits at once: their workers are killed
  // and what the store could not record is left to `scalpels recover`.
  let signals = 0;
  let started = false;
  let stopping = false;
  let running: Awaited<ReturnType<typeof tasks.start>> | undefined;
  const quitNow = (): void => {
    for (const pid of running?.workerPids ?? []) killGroup(pid, 'SIGKILL');
    workload.signal('SIGKILL');
    process.stderr.write(
      `scalpels: quit before the tracers were stopped${running ? ` (task ${running.task.id}; \`scalpels recover\` restores what they changed)` : ''}\n`,
    );
    process.exit(130);
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (stopping) {
      if (signals > 1) quitNow();
      else process.stderr.write('scalpels: stopping the tracers; Ctrl-C again to quit at once\n');
      return;
    }
    if (started && (signals > 1 || !process.stdin.isTTY))
      workload.signal(signals > 2 ? 'SIGKILL' : sig === 'SIGINT' ? 'SIGINT' : 'SIGTERM');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  const unhook = (): void => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
  };

  const workload = await Workload.launch(command);
  const target = {
    kind: 'run' as const,
    pids: [workload.pid],
    launcher: workload.pid,
    command,
    description: `run: ${command.join(' ')}`,
  };
  try {
    running = await tasks.start(container, prepared, target, {
      name: args.name ?? command.join(' ').slice(0, 80),
      labels,
    });
  } catch (e) {
    await workload.release();
    unhook();
    throw e;
  }

  let exit: { exitCode: number | null; signal: string | null; error?: string };
  if (signals > 0) {
    exit = { exitCode: null, signal: 'SIGINT', error: undefined };
  } else {
    try {
      await workload.go();
      started = true;
      exit = await workload.exited();
    } catch (e) {
      exit = { exitCode: 127, signal: null, error: (e as Error).message };
    }
  }
  stopping = true;
  const outcomes = await running.stop();
  await workload.release();
  unhook();
  if (!started && signals > 0) {
    await stores.close();
    throw new UserError(
      `run: interrupted before the command started (task ${running.task.id} kept)`,
    );
  }

  let task;
  try {
    const store = stores.get();
    task = (await store.findTask(running.task.id))!;
    if (args.format !== 'none') {
      // The views of the plugins this run loaded.
      const views = Object.fromEntries(
        prepared.map((p) => [p.plugin.info.name, p.plugin.manifest.report] as const),
      );
      const report = await buildReport(store, task, { ops, top: args.top, views });
      process.stderr.write(
        args.format === 'json'
          ? `${JSON.stringify(report, null, 2)}\n`
          : formatReportText(report, { all: args.all }),
      );
    }
  } catch (e) {
    // The store went away: the tracers are stopped all the same; say what is known here.
    const dropped = outcomes.reduce((a, o) => a + o.dropped, 0);
    const records = outcomes.reduce((a, o) => a + o.records, 0);
    throw new UserError(
      `run: tracers stopped (${records} records sent, ${dropped} dropped) but the store failed: ${(e as Error).message.split('\n')[0]} (task ${running.task.id})`,
    );
  } finally {
    await stores.close();
  }
  if (exit.error)
    throw new UserError(`run: cannot start ${command[0]}: ${exit.error} (task ${task.id} kept)`);
  const how = exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.exitCode}`;
  process.stderr.write(
    `scalpels: task ${task.id} ${task.status}; command ${how}. Report: scalpels report ${task.id}\n`,
  );
  if (exit.signal) return 128 + (signalNumber(exit.signal) ?? 0);
  return exit.exitCode ?? 1;
}

function signalNumber(name: string): number | undefined {
  const table: Record<string, number> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGKILL: 9,
    SIGSEGV: 11,
    SIGPIPE: 13,
    SIGTERM: 15,
    SIGABRT: 6,
  };
  return table[name];
}
