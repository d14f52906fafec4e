# Scalpels python-calls in-process agent.
#
# Loaded into the traced interpreter by a small bootstrap (see src/inject.ts) that connected to the
# worker's unix socket and received this source: it runs with `_sock` (the connected socket) and
# `_config` (a dict) in its globals. It counts calls of the functions the filter selects, per
# thread, and streams cumulative-delta counts to the worker. It never raises into the traced
# program: every failure ends the agent and leaves the program as it was.
#
# Hooks: sys.monitoring on 3.12+ (interpreter-wide, unmatched code objects are disabled, so they
# cost nothing after their first call); sys.setprofile/threading.setprofile before that.

import _socket
import fnmatch
import json
import os
import sys
import threading
import time

MODULE_NAME = "_scalpels_pycalls"
AGENT_FILE = "<scalpels-python-calls-agent>"
_MISS = object()
CO_GENERATOR_LIKE = 0x20 | 0x80 | 0x200  # generator, coroutine, async generator
# Histogram bucket bounds of the call duration, in nanoseconds (le labels are in ms).
BOUNDS_NS = (1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000, 10_000_000_000)


def _native_thread_api():
    """start_new_thread, allocate_lock, get_ident and sleep of the OS, also when eventlet or gevent
    monkey-patched them: the agent needs a real thread and real locks whatever green threads the
    program runs (OpenStack services run eventlet)."""
    import _thread

    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None:
        try:
            t, tm = patcher.original("_thread"), patcher.original("time")
            return t.start_new_thread, t.allocate_lock, t.get_ident, tm.sleep
        except Exception:
            pass
    gmonkey = sys.modules.get("gevent.monkey")
    if gmonkey is not None:
        try:
            start, lock, ident = gmonkey.get_original("_thread", ["start_new_thread", "allocate_lock", "get_ident"])
            return start, lock, ident, gmonkey.get_original("time", "sleep")
        except Exception:
            pass
    return _thread.start_new_thread, _thread.allocate_lock, _thread.get_ident, time.sleep


start_thread, allocate_lock, get_ident, sleep = _native_thread_api()


def _opcodes():
    import dis

    op = dis.opmap
    returns = {op[n] for n in ("RETURN_VALUE", "RETURN_CONST") if n in op}
    return returns, op.get("YIELD_VALUE"), op.get("RESUME")


class Agent:
    def __init__(self, sock, config):
        self.sock = sock
        self.path = config["sock"]
        self.rules = config.get("rules") or []
        self.timing = bool(config.get("timing"))
        self.exceptions = bool(config.get("exceptions"))
        self.interval = max(0.05, float(config.get("intervalMs", 1000)) / 1000.0)
        self.lock = allocate_lock()
        self.send_lock = allocate_lock()
        self.classes = {}  # code object -> (key tuple, generator-like, first offset) or None
        self.threads = []  # per-thread ThreadCounts
        self.active = True
        self.stopping = False
        self.hook = None
        self.exit_wrapper = None
        self.thread_states = None
        self.profiler_ids = set()
        self.profiler_refs = []
        self.timed_codes = set()
        self.tool = None
        self.returns, self.yield_op, self.resume_op = _opcodes()

    # -- classification ------------------------------------------------------------------------

    def classify(self, code, module):
        """Key of a code object when the filter selects it, else None (cached per code object)."""
        name = code.co_name
        qual = getattr(code, "co_qualname", name)
        fname = code.co_filename
        if module == MODULE_NAME or fname == AGENT_FILE:
            result = None  # never count the agent itself
        elif self.rules and not any(self._rule_matches(r, module, fname, name, qual) for r in self.rules):
            result = None
        else:
            key = ("%s:%s" % (module, qual), fname, code.co_firstlineno)
            gen = bool(code.co_flags & CO_GENERATOR_LIKE)
            result = (key, gen, self._first_offset(code) if gen else -1)
        self.classes[code] = result
        return result

    @staticmethod
    def _rule_matches(rule, module, fname, name, qual):
        functions = rule.get("functions")
        if functions and name not in functions and qual not in functions:
            return False
        files = rule.get("files")
        if files and not any(fnmatch.fnmatchcase(fname, g) for g in files):
            return False
        modules = rule.get("modules")
        if modules and not any(fnmatch.fnmatchcase(module, g) for g in modules):
            return False
        return True

    def _first_offset(self, code):
        # Where a new generator frame is when the profiler sees its first `call`: -1 before 3.11,
        # the first RESUME from 3.11 (resumptions stop at later RESUMEs).
        if self.resume_op is None:
            return -1
        co = code.co_code
        for i in range(0, len(co), 2):
            if co[i] == self.resume_op:
                return i
        return -1

    # -- counting ------------------------------------------------------------------------------

    def new_thread_counts(self):
        t = threading.current_thread()
        tc = ThreadCounts(t.name, get_ident())
        with self.lock:
            self.threads.append(tc)
        return tc

    def make_profiler(self):
        """A sys.setprofile function bound to the calling thread's counters."""
        tc = self.new_thread_counts()
        ns, exc, hist = tc.ns, tc.exc, tc.hist
        profilers = self.profiler_ids
        # Per thread: code object -> [key, generator-like, first offset, calls] or None. A list
        # cell counted in place costs less per call than a dict update; one writer per cell.
        cells = tc.cells
        cells_get = cells.get
        classes_get = self.classes.get
        classify = self.classify

        def new_cell(frame):
            code = frame.f_code
            c = classes_get(code, _MISS)
            if c is _MISS:
                c = classify(code, frame.f_globals.get("__name__", "?"))
            cell = None if c is None else [c[0], c[1], c[2], 0]
            cells[code] = cell
            return cell

        timing, exceptions = self.timing, self.exceptions
        track_exits = timing or exceptions
        starts = {}
        now = time.perf_counter_ns
        returns, yield_op = self.returns, self.yield_op
        agent = self

        def profile(frame, event, arg, _MISS=_MISS):
            if event == "call":
                c = cells_get(frame.f_code, _MISS)
                if c is _MISS:
                    c = new_cell(frame)
                if agent.stopping:
                    # Only when the hook could not be removed from outside (see uninstall).
                    sys.setprofile(None)
                    tc.detached = True
                    if c is not None and not (c[1] and frame.f_lasti != c[2]):
                        c[3] += 1
                    return
                if c is None:
                    return
                if c[1] and frame.f_lasti != c[2]:
                    return  # a generator or coroutine resuming, not a new call
                c[3] += 1
                if track_exits:
                    starts[frame] = (c[0], now())
            elif event == "return" and track_exits:
                s = starts.get(frame)
                if s is None:
                    return
                code = frame.f_code
                lasti = frame.f_lasti
                op = code.co_code[lasti] if 0 <= lasti < len(code.co_code) else -1
                if op == yield_op:
                    return  # suspended; its time runs on until the final return
                del starts[frame]
                k = s[0]
                if op not in returns and exceptions:
                    exc[k] = exc.get(k, 0) + 1
                if timing:
                    d = now() - s[1]
                    ns[k] = ns.get(k, 0) + d
                    b = 0
                    for bound in BOUNDS_NS:
                        if d <= bound:
                            break
                        b += 1
                    hk = (k, b)
                    hist[hk] = hist.get(hk, 0) + 1

        def first_profile(frame, event, arg):
            # New threads get this through threading.setprofile: bind counters to the thread.
            if agent.stopping or not agent.active:
                sys.setprofile(None)
                return
            p = agent.make_profiler()
            sys.setprofile(p)
            p(frame, event, arg)

        self.first_profile = first_profile
        # Kept alive, so their ids keep naming them when other threads' hooks are cleared.
        self.profiler_refs.extend((profile, first_profile))
        profilers.add(id(profile))
        profilers.add(id(first_profile))
        return profile

    def install(self):
        if sys.getprofile() is not None:
            raise RuntimeError("the thread already has a profile hook (%r)" % (sys.getprofile(),))
        mon = getattr(sys, "monitoring", None)
        if mon is not None and self._install_monitoring(mon):
            return "monitoring"
        sys.setprofile(self.make_profiler())
        threading.setprofile(self.first_profile)
        self.hook = "setprofile"
        try:
            self.thread_states = ThreadStates()
            self.thread_states.apply(self.first_profile)
        except Exception:
            self.thread_states = None  # only this thread and the threads started from now on
        return "setprofile"

    def _install_monitoring(self, mon):
        for tool in (mon.PROFILER_ID, 5, 4, 3):
            if mon.get_tool(tool) is None:
                break
        else:
            return False
        mon.use_tool_id(tool, "scalpels-python-calls")
        self.tool = tool
        classes_get = self.classes.get
        classify = self.classify
        per_thread = {}
        DISABLE = mon.DISABLE
        agent = self

        ev = mon.events
        timing, exceptions = self.timing, self.exceptions
        track_exits = timing or exceptions
        now = time.perf_counter_ns
        set_local_events = mon.set_local_events
        exit_events = ev.PY_RETURN

        def thread_state():
            tid = get_ident()
            st = per_thread.get(tid)
            if st is None:
                st = per_thread[tid] = (agent.new_thread_counts(), [])
            return st

        def on_start(code, offset):
            c = classes_get(code, _MISS)
            if c is _MISS:
                f = sys._getframe(1)
                module = f.f_globals.get("__name__", "?") if f.f_code is code else "?"
                c = classify(code, module)
                if c is not None and track_exits and not c[1]:
                    # Exits of this code only; generators and coroutines are counted, not timed.
                    set_local_events(tool, code, exit_events)
                    timed.add(code)
            if c is None:
                return DISABLE
            tc, stack = per_thread.get(get_ident()) or thread_state()
            calls = tc.calls
            k = c[0]
            calls[k] = calls.get(k, 0) + 1
            if track_exits and not c[1]:
                stack.append((code, k, now()))

        def leave(code, raised):
            st = per_thread.get(get_ident())
            if not st or not st[1]:
                return
            tc, stack = st
            # The innermost entry of this code (entries above it missed their exit event).
            for i in range(len(stack) - 1, -1, -1):
                if stack[i][0] is code:
                    break
            else:
                return
            _, k, t0 = stack[i]
            del stack[i:]
            if raised and exceptions:
                tc.exc[k] = tc.exc.get(k, 0) + 1
            if timing:
                d = now() - t0
                tc.ns[k] = tc.ns.get(k, 0) + d
                b = 0
                for bound in BOUNDS_NS:
                    if d <= bound:
                        break
                    b += 1
                hk = (k, b)
                tc.hist[hk] = tc.hist.get(hk, 0) + 1

        def on_return(code, offset, retval):
            leave(code, False)

        def on_unwind(code, offset, exc):
            if code in timed:
                leave(code, True)

        timed = self.timed_codes = set()

        mon.register_callback(tool, ev.PY_START, on_start)
        events = ev.PY_START
        if track_exits:
            mon.register_callback(tool, ev.PY_RETURN, on_return)
            # PY_UNWIND cannot be enabled per code object: it fires for every frame an exception
            # leaves, so it is only on when timing or exceptions are asked for.
            mon.register_callback(tool, ev.PY_UNWIND, on_unwind)
            events |= ev.PY_UNWIND
        mon.set_events(tool, events)
        self.hook = "monitoring"
        return True

    def uninstall(self, wait=True):
        """Removes every hook, in every thread. Without the C API (3.8, or ctypes missing), the
        profile hook of each thread removes itself at its next call instead (counted)."""
        self.stopping = True
        if getattr(os._exit, "__wrapped__", None) is not None and os._exit is self.exit_wrapper:
            os._exit = os._exit.__wrapped__
        if self.hook == "monitoring":
            mon = sys.monitoring
            mon.set_events(self.tool, 0)
            for e in (mon.events.PY_START, mon.events.PY_RETURN, mon.events.PY_UNWIND):
                mon.register_callback(self.tool, e, None)
            # free_tool_id clears the per-code events too (and the DISABLEd locations) on 3.14+;
            # on 3.12/3.13 it only releases the id, so clear the codes we set events on.
            for code in list(self.timed_codes):
                try:
                    mon.set_local_events(self.tool, code, 0)
                except Exception:
                    pass
            mon.free_tool_id(self.tool)
            if wait:
                # A callback preempted between reading and storing its count finishes first.
                sleep(0.05)
            return
        threading.setprofile(None)
        if self.thread_states is not None:
            try:
                # Unhook every thread now (ours only); then let a callback preempted between
                # reading and storing a count finish, so the last snapshot has it.
                self.thread_states.apply(None, self.profiler_ids)
                if sys.getprofile() is not None and id(sys.getprofile()) in self.profiler_ids:
                    sys.setprofile(None)
                if wait:
                    sleep(0.05)
                return
            except Exception:
                pass
        if not wait:
            return
        # Wait a little for hooked threads to see the flag, so their last calls are counted.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            with self.lock:
                pending = [t for t in self.threads if not t.detached and t.ident != get_ident()]
            if not pending:
                break
            sleep(0.005)

    # -- reporting -----------------------------------------------------------------------------

    def snapshot(self, final=False):
        items = []
        with self.lock:
            threads = list(self.threads)
        for tc in threads:
            items.extend(tc.deltas())
        return {"t": "counts", "pid": os.getpid(), "final": final, "items": items}

    def send(self, obj):
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        with self.send_lock:
            self.sock.sendall(data)

    def run(self):
        """Sender and command reader: one thread, so no extra thread needs the GIL in between."""
        self.sock.settimeout(self.interval)
        buf = b""
        next_send = time.monotonic() + self.interval
        try:
            while self.active:
                try:
                    chunk = self.sock.recv(4096)
                    if not chunk:
                        break  # worker gone: detach
                    buf += chunk
                    if b'"stop"' in buf:
                        break
                except _socket.timeout:
                    pass
                if time.monotonic() >= next_send:
                    next_send += self.interval
                    msg = self.snapshot()
                    if msg["items"]:
                        self.send(msg)
        except Exception:
            pass
        self.finish()

    def finish(self, at_exit=False):
        with self.lock:
            if not self.active:
                return
            self.active = False
        try:
            self.uninstall(wait=not at_exit)
        except Exception:
            pass
        try:
            self.send(self.snapshot(final=True))
            self.send({"t": "detached", "pid": os.getpid(), "reason": "exit" if at_exit else "stop"})
        except Exception:
            pass
        try:
            self.sock.close()
        except Exception:
            pass
        sys.modules.pop(MODULE_NAME, None)

    def wrap_exit(self):
        # os._exit skips atexit: fork children (multiprocessing) end that way. Send their last
        # counts first. The original is put back when the agent detaches.
        original = os._exit
        agent = self

        def _exit(status):
            try:
                agent.finish(at_exit=True)
            finally:
                original(status)

        _exit.__wrapped__ = original
        self.exit_wrapper = _exit
        os._exit = _exit

    def after_fork_in_child(self):
        # The child keeps the forking thread's hook: give it fresh counters and its own connection.
        if not self.active:
            return
        try:
            self.sock.close()
        except Exception:
            pass
        try:
            # Locks may have been held by a thread that does not exist in the child.
            self.send_lock = allocate_lock()
            self.lock = allocate_lock()
            with self.lock:
                keep = [t for t in self.threads if t.ident == get_ident()]
                for t in keep:
                    t.reset()
                self.threads = keep
            self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            self.sock.settimeout(5)
            self.sock.connect(self.path)
            self.send(hello(self.hook, forked=True))
            start_thread(self.run, ())
        except Exception:
            self.active = False
            self.uninstall()


class ThreadStates:
    """Sets and clears the profile hook of the process's other threads through the C API (what
    3.12's threading.setprofile_all_threads does): sys.setprofile reaches only the calling thread,
    and a running service's threads exist before the agent does. Needs the calling thread to hold
    a profile hook already (its thread state shows where the hook lives)."""

    def __init__(self):
        import ctypes

        vp = ctypes.c_void_p
        lib = ctypes.PyDLL(None)  # own function objects: ctypes.pythonapi is shared with the program

        def fn(name, restype, *argtypes):
            f = getattr(lib, name)
            f.restype = restype
            f.argtypes = list(argtypes)
            return f

        self.current = fn("PyThreadState_Get", vp)
        self.interp = fn("PyInterpreterState_Get", vp)
        self.head = fn("PyInterpreterState_ThreadHead", vp, vp)
        self.next = fn("PyThreadState_Next", vp, vp)
        self.set = fn("_PyEval_SetProfile", ctypes.c_int, vp, vp, vp)
        self.words = lambda ts: (vp * 64).from_address(ts)
        # In PyThreadState (3.8 to 3.13) the profile object comes two words after the profile
        # function: find our hook object in the calling thread's state to learn both.
        cur = self.current()
        obj = id(sys.getprofile())
        w = self.words(cur)
        for i in range(2, 64):
            if w[i] == obj and w[i - 2]:
                self.obj_index, self.func = i, w[i - 2]
                break
        else:
            raise RuntimeError("profile hook not found in the thread state")

    def others(self):
        cur = self.current()
        out = []
        ts = self.head(self.interp())
        while ts:
            if ts != cur:
                out.append(ts)
            ts = self.next(ts)
        return out

    def apply(self, obj, only_if=None):
        """Hooks every other thread with obj (None: unhooks those whose hook id is in only_if).
        The switch interval is raised meanwhile so no other thread runs, or exits and frees its
        state, between the calls (they all need the GIL we hold)."""
        old = sys.getswitchinterval()
        sys.setswitchinterval(1000.0)
        try:
            n = 0
            for ts in self.others():
                if obj is None:
                    if self.words(ts)[self.obj_index] in only_if:
                        self.set(ts, None, None)
                        n += 1
                else:
                    self.set(ts, self.func, id(obj))
                    n += 1
            return n
        finally:
            sys.setswitchinterval(old)


class ThreadCounts:
    __slots__ = ("name", "ident", "calls", "cells", "ns", "exc", "hist", "sent", "detached")

    def __init__(self, name, ident):
        self.name = name
        self.ident = ident
        self.detached = False
        # Counters only grow; deltas come from copies (a dict copy is atomic under the GIL, so no
        # increment made by the thread while we read is lost).
        # Calls are counted in `calls` (by key) or in `cells` (by code object, see make_profiler).
        self.calls, self.cells, self.ns, self.exc, self.hist = {}, {}, {}, {}, {}
        self.sent = ({}, {}, {}, {})

    def reset(self):
        # In place: the thread's profile function holds these very dicts and cells.
        for d in (self.calls, self.ns, self.exc, self.hist):
            d.clear()
        for cell in self.cells.values():
            if cell is not None:
                cell[3] = 0
        self.sent = ({}, {}, {}, {})

    def deltas(self):
        calls = self.calls.copy()
        for cell in list(self.cells.copy().values()):
            if cell is not None and cell[3]:
                # Each cell is read once; an increment made after the read shows next time.
                calls[cell[0]] = calls.get(cell[0], 0) + cell[3]
        cur = (calls, self.ns.copy(), self.exc.copy(), self.hist.copy())
        prev = self.sent
        self.sent = cur
        out = []
        hist_by_key = {}
        for (k, b), v in cur[3].items():
            d = v - prev[3].get((k, b), 0)
            if d:
                hist_by_key.setdefault(k, {})[b] = d
        for k, v in cur[0].items():
            dc = v - prev[0].get(k, 0)
            dn = cur[1].get(k, 0) - prev[1].get(k, 0)
            de = cur[2].get(k, 0) - prev[2].get(k, 0)
            h = hist_by_key.get(k)
            if dc or dn or de or h:
                item = [self.name, k[0], k[1], k[2], dc, dn, de]
                if h:
                    item.append({str(b): n for b, n in h.items()})
                out.append(item)
        return out


def hello(hook, forked=False):
    return {
        "t": "hello",
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "implementation": sys.implementation.name,
        "executable": sys.executable,
        "hook": hook,
        "forked": forked,
    }


def _start(sock, config):
    existing = sys.modules.get(MODULE_NAME)
    if existing is not None and getattr(existing, "agent", None) is not None and existing.agent.active:
        sock.sendall(b'{"t":"error","message":"already traced by another scalpels python-calls tracer"}\n')
        sock.close()
        return
    mod = type(sys)(MODULE_NAME)
    agent = Agent(sock, config)
    mod.agent = agent
    sys.modules[MODULE_NAME] = mod
    try:
        hook = agent.install()
    except Exception as e:
        sys.modules.pop(MODULE_NAME, None)
        sock.sendall((json.dumps({"t": "error", "message": str(e)}) + "\n").encode())
        sock.close()
        return
    agent.send(hello(hook))
    import atexit

    atexit.register(agent.finish, True)
    agent.wrap_exit()
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=agent.after_fork_in_child)
    # A bare OS thread: not profiled (threading.setprofile applies to threading.Thread only), not
    # listed by threading.enumerate(), never joined at exit.
    start_thread(agent.run, ())


_start(_sock, _config)  # noqa: F821 (given by the bootstrap)
