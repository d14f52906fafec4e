#!/usr/bin/env node
import { createRequire } from 'node:module';
import type { Argv } from 'yargs';
import { exitCodeFor, reportError } from './errors.js';

// yargs 17's CommonJS build is one bundled file: it loads in a fraction of the time of the
// multi-module ESM build, and every command pays for the parser.
const require = createRequire(import.meta.url);
const yargs = require('yargs/yargs') as (args: string[]) => Argv;

const version = (require('../package.json') as { version: string }).version;

/** What a root process may accept of user scripts: asked of `run` and `agent`, which start tracers themselves. */
function scriptOptions<T>(y: Argv<T>) {
  return y
    .option('allow-scripts', {
      type: 'boolean',
      describe:
        'accept user scripts (SystemTap .stp files, tapset folders) from root-owned files not writable by others',
    })
    .option('allow-guru', {
      type: 'boolean',
      describe: 'accept SystemTap guru mode (guru=true; needs --allow-scripts)',
    });
}

async function main(argv: string[]): Promise<number> {
  warnInlinePasswords(argv);
  let exitCode = 0;
  const setExit = (code: number): void => {
    exitCode = code;
  };
  const cli = yargs(argv)
    .scriptName('scalpels')
    .usage(
      '$0 <command> [options]\n\nTrace a workload on an OpenStack node and quantify what it did.',
    )
    .parserConfiguration({ 'populate--': true, 'unknown-options-as-args': false })
    .option('store', {
      type: 'string',
      describe:
        'where records go: sqlite:///path/to/file.db (default under $XDG_DATA_HOME/scalpels/)',
      global: true,
    })
    .option('json', { type: 'boolean', describe: 'print listings as JSON', global: true })
    .option('agent', {
      type: 'string',
      describe: 'agent to talk to: unix:///path/to.sock or tcp://host:port (or SCALPELS_AGENT)',
      global: true,
    })
    .option('redis', {
      type: 'string',
      describe:
        'cluster: redis://host:port/db?passwordfile=F the agents register with (or SCALPELS_REDIS; SCALPELS_REDIS_PASSWORD_FILE)',
      global: true,
    })
    .option('cluster-key-file', {
      type: 'string',
      describe:
        'cluster: file holding the key that signs commands to agents (root, mode 0600; or SCALPELS_CLUSTER_KEY_FILE)',
      global: true,
    })
    .option('token-file', {
      type: 'string',
      describe: 'file holding the agent token, for TCP (or SCALPELS_TOKEN_FILE)',
      global: true,
    })
    .command(
      'plugins <action> [name] [settings..]',
      'list, describe, validate or create tracer plugins',
      (y) =>
        y
          .positional('action', {
            choices: ['list', 'info', 'validate', 'new'] as const,
            describe: 'list | info NAME | validate NAME key=value.. | new NAME [--dir D]',
          })
          .positional('name', { type: 'string' })
          .positional('settings', { type: 'string', array: true })
          .option('check', {
            type: 'boolean',
            default: true,
            describe: 'list: run the quick availability checks (--no-check skips them)',
          })
          .option('dir', {
            type: 'string',
            describe:
              'new: folder to write (default: here when empty, else ./scalpels-plugin-NAME)',
          })
          .option('core', {
            type: 'string',
            describe:
              'new: npm spec of @scalpels/core for devDependencies (default ^ this core; e.g. file:/path/scalpels-core-0.1.0.tgz)',
          }),
      async (args) => {
        if (args.action === 'new') {
          const { newPluginCommand } = await import('./commands/scaffold.js');
          setExit(await newPluginCommand(args as Parameters<typeof newPluginCommand>[0]));
          return;
        }
        const { pluginsCommand } = await import('./commands/plugins.js');
        setExit(await pluginsCommand(args as unknown as Parameters<typeof pluginsCommand>[0]));
      },
    )
    .command(
      'presets [name]',
      'presets of installed bundles (named sets of tracers, options and services), and which services run here',
      (y) => y.positional('name', { type: 'string', describe: 'show one preset in detail' }),
      async (args) => {
        const { presetsCommand } = await import('./commands/presets.js');
        setExit(await presetsCommand(args as Parameters<typeof presetsCommand>[0]));
      },
    )
    .command(
      'doctor',
      "run every plugin's checks and say how to fix what is missing",
      {},
      async (args) => {
        const { doctorCommand } = await import('./commands/plugins.js');
        setExit(await doctorCommand(args as unknown as Parameters<typeof doctorCommand>[0]));
      },
    )
    .command(
      'run',
      'trace a workload from its start to its end: scalpels run -t T[,T..]|--preset P [--set T.key=value].. -- CMD [ARGS..]',
      (y) =>
        scriptOptions(
          y
            .option('tracer', {
              alias: 't',
              type: 'string',
              array: true,
              describe: 'tracers to run (comma-separated or repeated)',
            })
            .option('preset', {
              type: 'string',
              describe: 'tracers and options of a preset (scalpels presets); -t adds tracers',
            })
            .option('set', {
              type: 'string',
              array: true,
              describe: 'tracer option: TRACER.KEY=VALUE (repeatable)',
            })
            .option('name', { type: 'string', describe: 'task name' })
            .option('label', {
              type: 'string',
              array: true,
              describe: 'task label KEY=VALUE (repeatable)',
            })
            .option('format', {
              choices: ['table', 'json', 'none'] as const,
              default: 'table',
              describe: 'summary printed to stderr at the end',
            })
            .option('top', { type: 'number', describe: 'rows per top table (default 10)' })
            .option('all', { type: 'boolean', describe: 'print every series, not the summary' })
            .option('ops', {
              type: 'number',
              describe:
                'the workload did N operations (N server boots): adds per-operation figures',
            }),
        ),
      async (args) => {
        const { runCommand } = await import('./commands/run.js');
        setExit(await runCommand(args as unknown as Parameters<typeof runCommand>[0]));
      },
    )
    .command(
      'agent',
      'serve tracers over RPC on this node (unix socket 0600; TCP only with a token)',
      (y) =>
        scriptOptions(
          y
            .option('socket', {
              type: 'string',
              describe:
                'unix socket path (default $XDG_RUNTIME_DIR/scalpels/agent.sock or /run/scalpels/agent.sock)',
            })
            .option('listen', {
              type: 'string',
              describe: 'also listen on TCP HOST:PORT (needs --token-file)',
            })
            .option('node', { type: 'string', describe: 'node name (default: hostname)' })
            .option('heartbeat', {
              type: 'string',
              describe: 'cluster heartbeat period (default 2s)',
            })
            .option('metrics', {
              type: 'string',
              describe:
                'also serve OpenMetrics of running tasks at http://HOST:PORT/metrics (loopback only)',
            }),
        ),
      async (args) => {
        const { agentCommand } = await import('./commands/agent.js');
        const metrics = args.metrics
          ? await (await import('./commands/watch.js')).serveMetrics(args)
          : undefined;
        try {
          setExit(await agentCommand(args as unknown as Parameters<typeof agentCommand>[0]));
        } finally {
          await metrics?.close();
        }
      },
    )
    .command(
      'start',
      'start tracers on the agent: scalpels start -t T[,T..]|--preset P [--pid N|--service S] [--set T.key=value]..; prints the task id',
      (y) =>
        y
          .option('tracer', {
            alias: 't',
            type: 'string',
            array: true,
            describe: 'tracers to start',
          })
          .option('preset', {
            type: 'string',
            describe: 'tracers, options and services of a preset (scalpels presets)',
          })
          .option('set', {
            type: 'string',
            array: true,
            describe: 'tracer option: TRACER.KEY=VALUE',
          })
          .option('pid', { type: 'number', array: true, describe: 'target process (repeatable)' })
          .option('service', {
            type: 'string',
            array: true,
            describe: 'target service: process or systemd unit name (repeatable)',
          })
          .option('name', { type: 'string', describe: 'task name' })
          .option('label', { type: 'string', array: true, describe: 'task label KEY=VALUE' })
          .option('restarts', {
            type: 'number',
            describe: 'restart a crashed worker up to N times, with backoff',
          })
          .option('nodes', {
            type: 'string',
            describe: 'with --redis: all, or node names a,b (one task across them)',
          }),
      async (args) => {
        const { startCommand } = await import('./commands/agent.js');
        setExit(await startCommand(args as unknown as Parameters<typeof startCommand>[0]));
      },
    )
    .command(
      'stop [task]',
      'stop a task on the agent (or some of its tracers)',
      (y) =>
        y
          .positional('task', { type: 'string' })
          .option('last', { type: 'boolean', describe: 'the most recent task' })
          .option('tracer', {
            alias: 't',
            type: 'string',
            array: true,
            describe: 'only these tracers',
          }),
      async (args) => {
        const { stopCommand } = await import('./commands/agent.js');
        setExit(await stopCommand(args as unknown as Parameters<typeof stopCommand>[0]));
      },
    )
    .command(
      'status',
      'what runs now on the agent: tasks, tracers, worker pids, uptime, records',
      {},
      async (args) => {
        const { statusCommand } = await import('./commands/agent.js');
        setExit(await statusCommand(args as unknown as Parameters<typeof statusCommand>[0]));
      },
    )
    .command(
      'nodes',
      'agents registered in the cluster (--redis), with heartbeat age and tracers',
      {},
      async (args) => {
        const { nodesCommand } = await import('./commands/cluster.js');
        setExit(await nodesCommand(args as unknown as Parameters<typeof nodesCommand>[0]));
      },
    )
    .command(
      'collect',
      'drain task streams from Redis into SQLite (acknowledged after commit; duplicates skipped)',
      (y) =>
        y
          .option('from', { type: 'string', demandOption: true, describe: 'redis://host:port/db' })
          .option('to', { type: 'string', describe: 'sqlite:///path/to/file.db (default store)' })
          .option('task', { type: 'string', describe: 'only this task' })
          .option('follow', { type: 'boolean', describe: 'keep draining until interrupted' })
          .option('claim-idle', {
            type: 'string',
            describe:
              'take over batches a dead collector left unacknowledged this long (default 30s)',
          }),
      async (args) => {
        const { collectCommand } = await import('./commands/collect.js');
        setExit(await collectCommand(args as unknown as Parameters<typeof collectCommand>[0]));
      },
    )
    .command('tasks', 'list tasks', {}, async (args) => {
      const { tasksCommand } = await import('./commands/tasks.js');
      setExit(await tasksCommand(args as unknown as Parameters<typeof tasksCommand>[0]));
    })
    .command(
      'report [task]',
      "print a task's report",
      (y) =>
        y
          .positional('task', { type: 'string', describe: 'task id (or unique prefix, or name)' })
          .option('last', { type: 'boolean', describe: 'the most recent task' })
          .option('format', {
            choices: ['table', 'json', 'csv', 'html', 'jsonl', 'openmetrics'] as const,
            default: 'table',
            describe:
              'html: one offline file with charts; jsonl: every record; openmetrics: Prometheus text',
          })
          .option('output', {
            alias: 'o',
            type: 'string',
            describe: 'write to FILE instead of stdout',
          })
          .option('top', {
            type: 'number',
            describe: 'rows per top table (default 10); event keys per tracer in JSON (default 20)',
          })
          .option('all', {
            type: 'boolean',
            describe: 'table: every series of every tracer instead of the headline and top rows',
          })
          .option('ops', {
            type: 'number',
            describe: 'the workload did N operations (N server boots): adds per-operation figures',
          })
          .option('top-by', {
            choices: ['time', 'count', 'value'] as const,
            describe:
              'rank event keys by total time (default), count, or summed value (bytes, rows)',
          }),
      async (args) => {
        const { reportCommand } = await import('./commands/tasks.js');
        setExit(await reportCommand(args as unknown as Parameters<typeof reportCommand>[0]));
      },
    )
    .command(
      'compare <a> <b>',
      'two tasks side by side: deltas and ratios of every series and top key, noise-flagged',
      (y) =>
        y
          .positional('a', { type: 'string', describe: 'task A (id, unique prefix or name)' })
          .positional('b', { type: 'string', describe: 'task B' })
          .option('format', { choices: ['table', 'json', 'html'] as const, default: 'table' })
          .option('output', { alias: 'o', type: 'string', describe: 'write to FILE' })
          .option('rows', {
            type: 'number',
            default: 40,
            describe: 'rows per tracer (table, html)',
          })
          .option('top', { type: 'number', default: 100, describe: 'event keys per task' })
          .option('ops', {
            type: 'string',
            describe:
              'each workload did N operations (N, or A,B when they differ): counters and histogram buckets compared per operation',
          }),
      async (args) => {
        const { compareCommand } = await import('./commands/compare.js');
        setExit(await compareCommand(args as unknown as Parameters<typeof compareCommand>[0]));
      },
    )
    .command(
      'mark <text>',
      'add a timestamped marker to the running task (reports annotate and split by markers)',
      (y) =>
        y
          .positional('text', {
            type: 'string',
            describe: 'what happens from now, e.g. "boot 50 VMs"',
          })
          .option('task', { type: 'string', describe: 'this task instead of the running one' }),
      async (args) => {
        const { markCommand } = await import('./commands/mark.js');
        setExit(await markCommand(args as unknown as Parameters<typeof markCommand>[0]));
      },
    )
    .command(
      'watch [task]',
      "live view of a task's hottest series, refreshing (Ctrl-C to leave)",
      (y) =>
        y
          .positional('task', { type: 'string', describe: 'task id (default: the running one)' })
          .option('last', { type: 'boolean', describe: 'the most recent task' })
          .option('interval', { type: 'string', default: '2s', describe: 'refresh every' })
          .option('window', { type: 'string', describe: 'rates over the last (default 5s)' })
          .option('rows', { type: 'number', describe: 'rows (default: fit the terminal)' })
          .option('once', { type: 'boolean', describe: 'print one frame and exit' }),
      async (args) => {
        const { watchCommand } = await import('./commands/watch.js');
        setExit(await watchCommand(args as unknown as Parameters<typeof watchCommand>[0]));
      },
    )
    .command(
      'recover',
      'undo what dead tracers changed and mark their tasks interrupted',
      {},
      async (args) => {
        const { recoverCommand } = await import('./commands/tasks.js');
        setExit(await recoverCommand(args as unknown as Parameters<typeof recoverCommand>[0]));
      },
    )
    .demandCommand(1, 'give a command (see scalpels --help)')
    .recommendCommands()
    .strict()
    .version(version)
    .help()
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      throw err ?? new UsageError(msg);
    });
  await cli.parseAsync();
  return exitCode;
}

/** A password in a URL on the command line is visible to every local user in /proc/PID/cmdline. */
function warnInlinePasswords(argv: string[]): void {
  if (!argv.some((a) => /^rediss?:\/\/[^/@\s]*:[^/@\s]+@/.test(a.replace(/^--[\w-]+=/, ''))))
    return;
  process.stderr.write(
    'scalpels: warning: a Redis password on the command line is visible to every local user ' +
      '(/proc/PID/cmdline); use ?passwordfile=F or SCALPELS_REDIS_PASSWORD_FILE\n',
  );
}

class UsageError extends Error {
  override readonly name = 'UserError';
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    reportError(err);
    process.exitCode = exitCodeFor(err);
  },
);
