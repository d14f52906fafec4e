// Workloads shared by the tests and the testdata recorder. Each is an argv; the launcher holds
// it until the tracer is ready (a line on stdin), like `scalpels run` does.
import { spawn } from 'node:child_process';

/** Waits for one line on stdin, then runs argv as a child and exits with its code. */
export const LAUNCHER = [
  'python3',
  '-c',
  'import subprocess, sys\nsys.stdin.readline()\nsys.exit(subprocess.call(sys.argv[1:]))',
];

/**
 * A Python program whose file I/O is known exactly (see EXPECTED_MIXED): writes, fsync, dup2,
 * fdatasync, a forked child writing on an inherited descriptor, preads and failed opens.
 */
export const MIXED_PY = `
import os, sys
path = sys.argv[1]
fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
for i in range(10):
    os.write(fd, b'a' * 4096)
os.fsync(fd)
os.dup2(fd, 100)
os.write(100, b'b')
os.fdatasync(100)
child = os.fork()
if child == 0:
    os.write(fd, b'c' * 7)
    os._exit(0)
os.waitpid(child, 0)
os.close(fd)
os.close(100)
fd = os.open(path, os.O_RDONLY)
for i in range(10):
    os.pread(fd, 4096, i * 4096)
os.close(fd)
for i in range(3):
    try:
        os.open(path + '.missing', os.O_RDONLY)
    except FileNotFoundError:
        pass
`;

/** What MIXED_PY does to its file, per process (the parent and its forked child). */
export const EXPECTED_MIXED = {
  parent: {
    writeOps: 11,
    writeBytes: 40961,
    readOps: 10,
    readBytes: 40960,
    opens: 2,
    fsync: 1,
    fdatasync: 1,
  },
  child: { writeOps: 1, writeBytes: 7 },
  missingOpens: 3,
};

/** Starts the launcher holding `argv`; `go()` releases it, `exited` resolves with its code. */
export function launch(argv) {
  const child = spawn(LAUNCHER[0], [...LAUNCHER.slice(1), ...argv], {
    stdio: ['pipe', 'ignore', 'inherit'],
  });
  const exited = new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => resolve(code));
  });
  return {
    pid: child.pid,
    exited,
    go() {
      child.stdin.end('go\n');
      return exited;
    },
  };
}
