/**
 * What gets into the traced interpreter, and how: a bootstrap (a few lines of Python, run by the
 * interpreter itself) that connects to the worker's socket, receives the agent's source and runs
 * it; and the gdb scripts that make the interpreter run the bootstrap.
 */

import { WORKER_READY_LINE } from '@scalpels/core/api';

/** Replaced by the gdb script with how the bootstrap was run (`direct`, `pending-call`, `start`). */
export const VIA_MARK = '__SCALPELS_VIA__';

/**
 * Python source of the bootstrap. It never raises: any failure leaves the process as it was. It
 * carries the worker's key (see worker-main.ts): only what gdb puts into a traced interpreter can
 * talk to the worker.
 */
export function bootstrapSource(socketPath: string, key: string): string {
  const body = [
    'try:',
    // _socket, not socket: eventlet and gevent patch the socket module into green sockets.
    '    import _socket, json, os',
    '    c = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)',
    '    c.settimeout(10)',
    `    c.connect(${pyString(socketPath)})`,
    // The gdb script puts how it ran the bootstrap in place of VIA_MARK.
    `    c.sendall((json.dumps({"t": "boot", "pid": os.getpid(), "via": "${VIA_MARK}", "key": ${pyString(key)}}) + "\\n").encode())`,
    '    buf = b""',
    '    while b"\\n" not in buf:',
    '        more = c.recv(65536)',
    '        if not more:',
    '            raise EOFError()',
    '        buf += more',
    '    line, _, src = buf.partition(b"\\n")',
    '    cfg = json.loads(line)',
    '    while len(src) < cfg["size"]:',
    '        more = c.recv(cfg["size"] - len(src))',
    '        if not more:',
    '            raise EOFError()',
    '        src += more',
    '    c.settimeout(None)',
    '    exec(compile(src, cfg["name"], "exec"), {"__name__": "_scalpels_pycalls", "_sock": c, "_config": cfg})',
    'except BaseException:',
    '    pass',
    '',
  ].join('\n');
  // Run through exec() with a fresh globals dict, so nothing is left in __main__'s namespace.
  return `exec(${pyString(body)}, {})\n`;
}

/** A Python string literal (JSON string syntax is valid Python for the characters JSON escapes). */
function pyString(s: string): string {
  return JSON.stringify(s);
}

const GDB_COMMON = `
import gdb

def scalpels_out(kind, text):
    gdb.write("SCALPELS-%s %s\\n" % (kind, text))
    gdb.flush()

def scalpels_setup():
    for cmd in ("set pagination off", "set confirm off", "set unwindonsignal on",
                "set breakpoint pending on", "handle SIGSTOP nostop noprint nopass"):
        gdb.execute(cmd, to_string=True)

def scalpels_waiting_in_syscall():
    # x86_64: orig_rax is the number of the system call the thread is stopped in (-1: none).
    try:
        nr = int(gdb.parse_and_eval("$orig_rax"))
    except Exception:
        return False
    if nr >= 2**63:
        nr -= 2**64
    if nr < 0:
        return False
    names = []
    f = gdb.newest_frame()
    while f is not None and len(names) < 64:
        names.append(f.name())
        f = f.older()
    # Never inside the allocator, the dynamic loader or fork: the bootstrap needs their locks.
    deny = ("malloc", "free", "realloc", "calloc", "memalign", "arena", "_int_", "_dl_", "dlopen", "fork")
    if any(n and any(d in n for d in deny) for n in names):
        return False
    if nr == 202:
        # futex: a lock wait. Only a lock of the host program (uwsgi's accept lock), never the
        # GIL or a Python lock, which the bootstrap would need, nor anything unnamed.
        if any(n is None or "Py" in n or "gil" in n or "acquire" in n for n in names):
            return False
    return True

def scalpels_buffer(data):
    # mmap rather than malloc: the thread may have been stopped inside malloc, holding its lock.
    buf = int(gdb.parse_and_eval("((void *(*)(void *, unsigned long, int, int, int, long)) mmap)(0, %d, 3, 0x22, -1, 0)" % (len(data) + 4096)))
    if buf in (0, 2**64 - 1, -1):
        raise RuntimeError("mmap in the target failed")
    gdb.selected_inferior().write_memory(buf, data + b"\\0")
    return buf
`;

/**
 * gdb script for a running interpreter. When its main thread waits in a system call (not a lock
 * wait), the bootstrap runs right away on it, between PyGILState_Ensure and PyGILState_Release:
 * an embedded interpreter whose main thread stays in C (a uwsgi master, an idle worker) never
 * reaches a safe point otherwise. Else the bootstrap is queued with Py_AddPendingCall, which the
 * main thread runs at its next safe point, holding the GIL. Nothing else runs inside the target
 * while gdb has it stopped, except mmap.
 */
export function gdbPendingCallScript(bootstrapFile: string): string {
  return `${GDB_COMMON}
try:
    scalpels_setup()
    if int(gdb.parse_and_eval("((int (*)(void)) Py_IsInitialized)()")) != 1:
        raise RuntimeError("the Python interpreter of this process is not initialized")
    boot = open(${pyString(bootstrapFile)}, "rb").read()
    direct = scalpels_waiting_in_syscall()
    buf = scalpels_buffer(boot.replace(b"${VIA_MARK}", b"direct" if direct else b"pending-call"))
    if direct:
        # Blocked in a system call (uwsgi workers on their accept lock, masters in epoll_wait,
        # eventlet hubs in epoll_wait), neither in the allocator nor waiting for the GIL or a
        # Python lock: it may run no Python for a long time, so run the bootstrap now, on it.
        st = int(gdb.parse_and_eval("((int (*)(void)) PyGILState_Ensure)()"))
        rc = int(gdb.parse_and_eval("((int (*)(const char *)) PyRun_SimpleString)((const char *) %d)" % buf))
        gdb.parse_and_eval("((void (*)(int)) PyGILState_Release)(%d)" % st)
        scalpels_out("RESULT" if rc == 0 else "ERROR", "ran" if rc == 0 else "PyRun_SimpleString returned %d" % rc)
    else:
        rc = int(gdb.parse_and_eval("((int (*)(void *, void *)) Py_AddPendingCall)((void *) PyRun_SimpleString, (void *) %d)" % buf))
        scalpels_out("RESULT" if rc == 0 else "ERROR", "queued" if rc == 0 else "Py_AddPendingCall returned %d" % rc)
except Exception as e:
    scalpels_out("ERROR", str(e).splitlines()[0] if str(e) else type(e).__name__)
try:
    gdb.execute("detach", to_string=True)
except Exception:
    pass
`;
}

/**
 * gdb script for an interpreter stopped right after exec: run until Py_RunMain (the interpreter is
 * initialized, the main thread holds the GIL, no user code has run) and run the bootstrap there.
 */
export function gdbStartScript(bootstrapFile: string): string {
  return `${GDB_COMMON}
try:
    scalpels_setup()
    bp = gdb.Breakpoint("Py_RunMain", internal=True)
    gdb.execute("continue", to_string=True)
    if not gdb.selected_inferior().pid:
        raise RuntimeError("the process exited before Py_RunMain")
    frame = gdb.selected_frame()
    if frame.name() != "Py_RunMain":
        raise RuntimeError("stopped in %s instead of Py_RunMain" % frame.name())
    bp.delete()
    buf = scalpels_buffer(open(${pyString(bootstrapFile)}, "rb").read().replace(b"${VIA_MARK}", b"start"))
    rc = int(gdb.parse_and_eval("((int (*)(const char *)) PyRun_SimpleString)((const char *) %d)" % buf))
    scalpels_out("RESULT" if rc == 0 else "ERROR", "ran" if rc == 0 else "PyRun_SimpleString returned %d" % rc)
except Exception as e:
    scalpels_out("ERROR", str(e).splitlines()[0] if str(e) else type(e).__name__)
try:
    gdb.execute("detach", to_string=True)
except Exception:
    pass
`;
}

/**
 * bpftrace program that stops (SIGSTOP) every process of the target's tree right after it execs
 * and prints it, so the worker can inject an interpreter before it runs any user code, and resume
 * the others at once. Ancestors are walked up to a fixed depth (bpftrace needs bounded loops).
 */
export function execStopProgram(rootPids: readonly number[], depth = 24): string {
  const cond = rootPids.map((p) => `$t->tgid == ${p}`).join(' || ');
  return `tracepoint:sched:sched_process_exec
{
  $t = curtask;
  $hit = 0;
  unroll(${depth}) {
    if (${cond}) { $hit = 1; }
    $t = $t->real_parent;
  }
  if ($hit) {
    printf("exec %d\\n", pid);
    signal("SIGSTOP");
  }
}
BEGIN { printf("${WORKER_READY_LINE}\\n"); }
`;
}
