// The root process of a `scalpels run` target. It exists so that tracers can attach to a process
// before the workload starts, and so that the workload's CPU time is still accounted (in this
// process's cutime/cstime) after it exits, until the tracers have taken their last sample.
//
// Protocol on fd 3 (a socket to the core), one line per message:
//   launcher → core: "ready", "started PID", "exited CODE SIGNAL", "error MESSAGE"
//   core → launcher: "go" (start the workload), "signal NAME" (pass a signal to the workload),
//                    "release" (exit now)
import { spawn } from 'node:child_process';
import net from 'node:net';

const argv = process.argv.slice(2);
const control = new net.Socket({ fd: 3, readable: true, writable: true });
let child;
let exitCode = 0;
let finished = false;

const send = (line) => control.write(`${line}\n`);

// Ctrl-C reaches the whole foreground group, the workload included: the launcher must only
// survive it (to keep the workload's CPU accounting until the tracers are done). Signals the
// core wants to pass on arrive as "signal NAME" on the control socket.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT']) process.on(sig, () => {});

let buffered = '';
control.on('data', (chunk) => {
  buffered += chunk.toString('utf8');
  let nl;
  while ((nl = buffered.indexOf('\n')) !== -1) {
    const cmd = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    if (cmd === 'go' && !child) start();
    else if (cmd.startsWith('signal ') && child && !finished) child.kill(cmd.slice(7));
    else if (cmd === 'release') process.exit(exitCode);
  }
});
// The core went away: nothing will release us, so leave once the workload is done.
control.on('close', () => {
  if (finished || !child) process.exit(exitCode);
  child.once('exit', () => process.exit(exitCode));
});
control.on('error', () => {});

function start() {
  child = spawn(argv[0], argv.slice(1), { stdio: 'inherit' });
  child.once('error', (err) => {
    finished = true;
    exitCode = 127;
    send(`error ${String(err.message).replace(/\n/g, ' ')}`);
  });
  child.once('spawn', () => send(`started ${child.pid}`));
  child.once('exit', (code, signal) => {
    if (finished) return;
    finished = true;
    exitCode = code ?? 128;
    send(`exited ${code ?? ''} ${signal ?? ''}`);
  });
}

send('ready');
