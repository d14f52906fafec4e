/**
 * What gets into the traced interpreter, and how: a bootstrap (a few lines of Python, run by the
 * interpreter itself) that connects to the worker's socket, receives the agent's source and runs
 * it; and the gdb scripts that make the interpreter run the bootstrap.
 */

/** Python source of the bootstrap. It never raises: any failure leaves the process as it was. */
export function bootstrapSource(socketPath: string): string {
  const body = [
    'try:',
    // _socket, not socket: eventlet and gevent patch the socket module into green sockets.
    '    import _socket, json, os',
    '    c = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)',
    '    c.settimeout(10)',
    `    c.connect(${pyString(socketPath)})`,
    '    c.sendall((json.dumps({"t": "boot", "pid": os.getpid()}) + "\\n").encode())',
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

def scalpels_buffer(data):
    # mmap rather than malloc: the thread may have been stopped inside malloc, holding its lock.
    buf = int(gdb.parse_and_eval("((void *(*)(void *, unsigned long, int, int, int, long)) mmap)(0, %d, 3, 0x22, -1, 0)" % (len(data) + 4096)))
    if buf in (0, 2**64 - 1, -1):
        raise RuntimeError("mmap in the target failed")
    gdb.selected_inferior().write_memory(buf, data + b"\\0")
    return buf
`;

/**
 * gdb script for a running interpreter: queue the bootstrap with Py_AddPendingCall, which the
 * main thread runs at its next safe point, holding the GIL. Nothing runs inside the target while
 * gdb has it stopped, except mmap and Py_AddPendingCall.
 */
export function gdbPendingCallScript(bootstrapFile: string): string {
  return `${GDB_COMMON}
try:
    scalpels_setup()
    if int(gdb.parse_and_eval("((int (*)(void)) Py_IsInitialized)()")) != 1:
        raise RuntimeError("the Python interpreter of this process is not initialized")
    buf = scalpels_buffer(open(${pyString(bootstrapFile)}, "rb").read())
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
    buf = scalpels_buffer(open(${pyString(bootstrapFile)}, "rb").read())
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
BEGIN { printf("ready\\n"); }
`;
}
