# Scalpels python-calls in-process agent.
#
# Loaded into the traced interpreter by a small bootstrap (see src/inject.ts) that connected to the
# worker's unix socket and received this source: it runs with `_sock` (the connected socket) and
# `_config` (a dict) in its globals. It counts calls of the functions the filter selects, per
# thread, and streams cumulative-delta counts to the worker. It never raises into the traced
# program: every failure ends the agent and leaves the program as it was.
#
# Two techniques, chosen per run from the rules (see Agent.plan):
# - instrument: when every rule names functions or modules, the matching functions are found in the
#   loaded modules (and in modules imported later, through an import hook) and only they are
#   instrumented: each function's __code__ is replaced by a small trampoline that counts and calls
#   the original code (so every reference to the function counts, and nothing else costs anything);
#   async generators, which no trampoline can stand in for, get sys.monitoring events on their code
#   objects only (3.12+).
# - hook: otherwise (a bare file glob, or no rule) a global hook sees every call: sys.monitoring on
#   3.12+ (unmatched code objects are disabled after their first call), sys.setprofile before.

import _socket
import bisect
import fnmatch
import gc
import itertools
import json
import os
import sys
import threading
import time
import types
import warnings

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
        self.key = config.get("key", "")
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
        self.threads_label = bool(config.get("threads"))
        self.via = config.get("via")
        self.instr = None
        self.local_codes = None

    # -- classification ------------------------------------------------------------------------

    def plan(self):
        """Per rule: [rule, technique, why] (what doctor explains, sent in hello)."""
        if not self.rules:
            return [[{}, "hook", "no rule: every call is counted, so a hook must see every call"]]
        out = []
        every = all(rule_resolvable(r) for r in self.rules)
        for r in self.rules:
            if rule_resolvable(r):
                if every:
                    out.append([r, "instrument", "names functions or modules: only the matching functions are instrumented"])
                else:
                    out.append([r, "hook", "another rule needs the hook, which then counts this one too"])
            else:
                out.append([r, "hook", "a bare file glob names no function to resolve: a hook sees every call"])
        return out

    def classify(self, code, module):
        """Key of a code object when the filter selects it, else None (cached per code object)."""
        name = code.co_name
        qual = getattr(code, "co_qualname", name)
        fname = code.co_filename
        if module == MODULE_NAME or fname == AGENT_FILE:
            result = None  # never count the agent itself
        elif self.rules and not any(rule_matches(r, module, fname, name, qual) for r in self.rules):
            result = None
        else:
            key = (function_key(module, qual), fname, code.co_firstlineno)
            gen = bool(code.co_flags & CO_GENERATOR_LIKE)
            result = (key, gen, self._first_offset(code) if gen else -1)
        self.classes[code] = result
        return result

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
        if self.rules and all(rule_resolvable(r) for r in self.rules):
            return self._install_instrument()
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

    def _install_instrument(self):
        mon = getattr(sys, "monitoring", None)
        self.instr = Instrumenter(self, self.rules)
        pending = None
        try:
            # A new interpreter has not run its script yet; a running one may be attached while
            # still at its first lines: the script's functions may not exist yet.
            pending = self.instr.main_pending()
        except Exception:
            pending = None
        # A counting trampoline as __code__ on every version: on 3.12 and 3.13, sys.monitoring
        # local events cost about three times as much per counted call (bench/
        # python-calls-overhead.mjs, in-process figures). They serve only what no trampoline
        # keeps: async generators (skipped when no tool id is free).
        if mon is not None and self._install_local_monitoring(mon, False):
            self.instr.monitoring = True
        self.hook = "instrument"
        self.instr.scan_loaded()
        self.instr.install_import_hook()
        if pending is not None:
            defined = {(c.co_firstlineno, c.co_name) for _, c, _ in self.instr.done.values() if c.co_filename in pending[0]}
            pending[1].difference_update(defined)
            if pending[1]:
                self.instr.install_pending(pending)
        return self.hook

    def _install_local_monitoring(self, mon, with_global_start):
        """3.12+: PY_START (and PY_RETURN for timing) enabled on the matching code objects only.
        with_global_start (a script started by scalpels run, whose functions do not exist yet):
        PY_START everywhere too, each code object disabled after its first call unless it matches."""
        for tool in (mon.PROFILER_ID, 5, 4, 3):
            if mon.get_tool(tool) is None:
                break
        else:
            return False
        mon.use_tool_id(tool, "scalpels-python-calls")
        self.tool = tool
        ev = mon.events
        DISABLE = mon.DISABLE
        timing, exceptions = self.timing, self.exceptions
        track_exits = timing or exceptions
        now = time.perf_counter_ns
        codes = self.local_codes = {}
        codes_get = codes.get
        stacks = {}
        agent = self
        threads_label = self.threads_label

        def watch_code(code, stat):
            if code in codes:
                return
            codes[code] = stat
            events = ev.PY_START
            if track_exits and not stat.gen:
                events |= ev.PY_RETURN
            mon.set_local_events(tool, code, events)

        self.watch_code = watch_code

        def on_start(code, offset):
            stat = codes_get(code)
            if stat is None:
                if not with_global_start:
                    return DISABLE
                f = sys._getframe(1)
                module = f.f_globals.get("__name__", "?") if f.f_code is code else "?"
                c = agent.classify(code, module)
                if c is None or module == MODULE_NAME:
                    return DISABLE
                stat = agent.instr.stats.get(c[0])
                if stat is None:
                    stat = agent.instr.stats[c[0]] = Stat(c[0], c[1])
                watch_code(code, stat)
            if threads_label:
                n = sys.modules.get("threading", threading).current_thread().name
                c = stat.by_thread.get(n)
                if c is None:
                    c = stat.by_thread.setdefault(n, itertools.count())
                next(c)
            next(stat.calls)
            if track_exits and not stat.gen:
                tid = get_ident()
                st = stacks.get(tid)
                if st is None:
                    st = stacks[tid] = []
                st.append((code, stat, now()))

        def leave(code, raised):
            st = stacks.get(get_ident())
            if not st:
                return
            for i in range(len(st) - 1, -1, -1):
                if st[i][0] is code:
                    break
            else:
                return
            _, stat, t0 = st[i]
            del st[i:]
            if raised and exceptions:
                next(stat.exc)
            if timing:
                d = now() - t0
                stat.ns[0] += d
                stat.hist[bisect.bisect_left(BOUNDS_NS, d)] += 1

        def on_return(code, offset, retval):
            leave(code, False)

        def on_unwind(code, offset, exc):
            if code in codes:
                leave(code, True)

        mon.register_callback(tool, ev.PY_START, on_start)
        events = ev.PY_START if with_global_start else 0
        if track_exits:
            mon.register_callback(tool, ev.PY_RETURN, on_return)
            # PY_UNWIND cannot be enabled per code object: it fires for every frame an exception
            # leaves, so it is only on when timing or exceptions are asked for.
            mon.register_callback(tool, ev.PY_UNWIND, on_unwind)
            events |= ev.PY_UNWIND
        mon.set_events(tool, events)
        return True

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
        if self.instr is not None:
            self.instr.uninstall()
            if self.tool is not None:
                mon = sys.monitoring
                mon.set_events(self.tool, 0)
                for code in list(self.local_codes or ()):
                    try:
                        mon.set_local_events(self.tool, code, 0)
                    except Exception:
                        pass
                for e in (mon.events.PY_START, mon.events.PY_RETURN, mon.events.PY_UNWIND):
                    mon.register_callback(self.tool, e, None)
                mon.free_tool_id(self.tool)
            if wait:
                sleep(0.05)  # a call between its counter and its timer finishes first
            return
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
        if self.instr is not None:
            items = self.instr.deltas(self.threads_label)
            return {"t": "counts", "pid": os.getpid(), "final": final, "items": items}
        with self.lock:
            threads = list(self.threads)
        for tc in threads:
            items.extend(tc.deltas())
        if not self.threads_label:
            items = merge_threads(items)
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
            if self.instr is not None:
                self.instr.reset()
            with self.lock:
                keep = [t for t in self.threads if t.ident == get_ident()]
                for t in keep:
                    t.reset()
                self.threads = keep
            self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            self.sock.settimeout(5)
            self.sock.connect(self.path)
            # A new connection is accepted only with the worker's key in its first message.
            first = hello(self.hook, forked=True)
            first["key"] = self.key
            self.send(first)
            start_thread(self.run, ())
        except Exception:
            self.active = False
            self.uninstall()


def function_key(module, qualname):
    """The one `module:qualname` key of a function, whichever technique saw it. module is the
    interpreter's own name for the function's module (the `__name__` of its globals)."""
    return "%s:%s" % (module or "?", qualname)


def rule_resolvable(rule):
    """A rule that names functions or modules can be resolved to function objects; a bare file
    glob (or no rule) needs a hook that sees every call."""
    return bool(rule.get("functions") or rule.get("modules"))


def rule_matches(rule, module, fname, name, qual):
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


CO_OPTIMIZED, CO_NEWLOCALS, CO_VARARGS, CO_VARKEYWORDS = 0x1, 0x2, 0x4, 0x8
CO_GENERATOR, CO_COROUTINE, CO_ITERABLE_COROUTINE, CO_ASYNC_GENERATOR = 0x20, 0x80, 0x100, 0x200


class Stat:
    """Counters of one function key, shared by every thread and green thread: the calls counter is
    an itertools.count, whose next() is one C call (atomic under the GIL, no lost increment)."""

    __slots__ = ("key", "calls", "exc", "ns", "hist", "by_thread", "sent", "gen")

    def __init__(self, key, gen):
        self.key = key
        self.gen = gen
        self.calls = itertools.count()
        self.exc = itertools.count()
        self.ns = [0]
        self.hist = [0] * (len(BOUNDS_NS) + 1)
        self.by_thread = {}  # thread name -> itertools.count, with the thread label
        self.sent = None

    @staticmethod
    def read(counter):
        return int(repr(counter)[6:-1])  # "count(N)"; no pickling API (deprecated on 3.12+)

    def current(self):
        per = {n: self.read(c) for n, c in list(self.by_thread.items())}
        return (self.read(self.calls), self.read(self.exc), self.ns[0], tuple(self.hist), per)

    def deltas(self, threads):
        cur = self.current()
        prev = self.sent or (0, 0, 0, (0,) * len(self.hist), {})
        self.sent = cur
        dn, de = cur[2] - prev[2], cur[1] - prev[1]
        h = {str(b): v - prev[3][b] for b, v in enumerate(cur[3]) if v - prev[3][b]}
        out = []
        if threads:
            # Time, exceptions and buckets are per function; they go with the first thread's row.
            rows = [(n, v - prev[4].get(n, 0)) for n, v in cur[4].items() if v - prev[4].get(n, 0)]
            if not rows and (dn or de or h):
                rows = [("", 0)]
            for i, (n, dc) in enumerate(rows):
                item = [n, self.key[0], self.key[1], self.key[2], dc, dn if i == 0 else 0, de if i == 0 else 0]
                if h and i == 0:
                    item.append(h)
                out.append(item)
            return out
        dc = cur[0] - prev[0]
        if dc or dn or de or h:
            item = ["", self.key[0], self.key[1], self.key[2], dc, dn, de]
            if h:
                item.append(h)
            out.append(item)
        return out


_TEMPLATES = {
    # The counter runs first, then the original code (a copy of the function: same globals and
    # closure cells) with the arguments as received.
    "count": "{C}()\n        return {O}({fwd})",
    "exc": "{C}()\n        try:\n            return {O}({fwd})\n        except BaseException:\n            {E}()\n            raise",
    "time": "{C}()\n        _scalpels_t0 = {T}()\n        try:\n            _scalpels_r = {O}({fwd})\n"
    "        except BaseException:\n            {X}(_scalpels_t0)\n            raise\n        {D}(_scalpels_t0)\n        return _scalpels_r",
    # Generators and coroutines count when they first run (like the hook technique), not timed.
    "gen": "{C}()\n        return (yield from {O}({fwd}))",
    "coro": "{C}()\n        return await {O}({fwd})",
}
_HOLES = ("C", "O", "E", "T", "X", "D")


def _hole(name):
    return "__scalpels_%s__" % name


class Instrumenter:
    """Finds the functions the rules select and instruments them (see the module comment)."""

    def __init__(self, agent, rules):
        self.agent = agent
        self.rules = rules
        self.monitoring = agent.tool is not None
        self.stats = {}  # key tuple -> Stat
        self.done = {}  # id(function) -> (function, original code, trampoline code)
        self.codes = {}  # code object -> Stat (3.12+: the code objects with local events)
        self.ours = set()  # ids of trampoline code objects
        self.templates = {}
        self.finder = None
        self.pending = None  # identities of __main__ functions not defined yet (start only)
        self.pending_seen = None
        self.pending_frames = {}
        self.pending_hook = None
        self.skipped = 0
        self.lock = allocate_lock()

    # -- finding ---------------------------------------------------------------------------------

    def module_may_match(self, name, file):
        for r in self.rules:
            mods = r.get("modules")
            if mods and not any(fnmatch.fnmatchcase(name, g) for g in mods):
                continue
            files = r.get("files")
            if files and isinstance(file, str) and not any(fnmatch.fnmatchcase(file, g) for g in files):
                if not file.endswith(".pyc"):
                    continue
            return True
        return False

    def scan_loaded(self):
        for mod in list(sys.modules.values()):
            try:
                self.scan_module(mod)
            except Exception:
                pass

    def scan_module(self, mod):
        d = getattr(mod, "__dict__", None)
        if type(d) is not dict:
            return
        name = d.get("__name__")
        if not isinstance(name, str) or name == MODULE_NAME or not self.module_may_match(name, d.get("__file__")):
            return
        seen = set()
        stack = list(d.values())
        while stack:
            o = stack.pop()
            if id(o) in seen:
                continue
            seen.add(id(o))
            try:
                t = type(o)
                if t is types.FunctionType:
                    if o.__globals__ is d:
                        self.consider(o, name)
                    w = o.__dict__.get("__wrapped__")
                    if w is not None:
                        stack.append(w)
                    # Decorators without functools.wraps keep the decorated function in a cell.
                    for cell in o.__closure__ or ():
                        try:
                            v = cell.cell_contents
                        except ValueError:
                            continue
                        if type(v) in (types.FunctionType, staticmethod, classmethod):
                            stack.append(v)
                elif isinstance(o, type):
                    if type.__dict__["__module__"].__get__(o) == name:
                        stack.extend(type.__dict__["__dict__"].__get__(o).values())
                elif t is staticmethod or t is classmethod or t is types.MethodType:
                    stack.append(o.__func__)
                elif t is property:
                    stack.extend(x for x in (o.fget, o.fset, o.fdel) if x is not None)
            except Exception:
                pass

    def consider(self, func, module):
        if id(func) in self.done:
            return
        code = func.__code__
        if id(code) in self.ours or code.co_name.startswith("<") and code.co_name != "<lambda>":
            return
        qual = getattr(code, "co_qualname", None) or func.__qualname__
        if not any(rule_matches(r, module, code.co_filename, code.co_name, qual) for r in self.rules):
            return
        key = (function_key(module, qual), code.co_filename, code.co_firstlineno)
        flags = code.co_flags
        stat = self.stats.get(key)
        if stat is None:
            stat = self.stats[key] = Stat(key, bool(flags & CO_GENERATOR_LIKE))
        if flags & CO_ASYNC_GENERATOR:
            # No trampoline keeps an async generator's protocol: sys.monitoring events on its
            # code (3.12+), else it is skipped.
            if self.monitoring:
                self.agent.watch_code(code, stat)
                self.done[id(func)] = (func, code, None)
            else:
                self.skipped += 1
            return
        tramp = self.trampoline(func, code, stat)
        func.__code__ = tramp
        self.done[id(func)] = (func, code, tramp)

    # -- trampolines ---------------------------------------------------------------------------

    def trampoline(self, func, code, stat):
        flags = code.co_flags
        if flags & (CO_COROUTINE):
            kind = "coro"
        elif flags & CO_GENERATOR:
            kind = "gen"
        elif self.agent.timing:
            kind = "time"
        elif self.agent.exceptions:
            kind = "exc"
        else:
            kind = "count"
        template = self.template(code, kind)
        orig = types.FunctionType(code, func.__globals__, func.__name__, None, func.__closure__)
        agent = self.agent
        fills = {_hole("C"): self.counter(stat), _hole("O"): orig}
        if kind in ("exc", "time"):
            fills[_hole("E")] = stat.exc.__next__
        if kind == "time":
            now = time.perf_counter_ns
            ns, hist, exc_next, exceptions = stat.ns, stat.hist, stat.exc.__next__, agent.exceptions
            where = bisect.bisect_left

            def done(t0):
                d = now() - t0
                ns[0] += d
                hist[where(BOUNDS_NS, d)] += 1

            def failed(t0):
                done(t0)
                if exceptions:
                    exc_next()

            fills[_hole("T")] = now
            fills[_hole("D")] = done
            fills[_hole("X")] = failed
        consts = tuple(fills.get(c, c) if type(c) is str else c for c in template.co_consts)
        changes = {
            "co_consts": consts,
            "co_name": code.co_name,
            "co_filename": code.co_filename,
            "co_firstlineno": code.co_firstlineno,
        }
        if hasattr(code, "co_qualname"):
            changes["co_qualname"] = code.co_qualname
        if kind == "gen" and flags & CO_ITERABLE_COROUTINE:
            changes["co_flags"] = template.co_flags | CO_ITERABLE_COROUTINE
        tramp = template.replace(**changes)
        self.ours.add(id(tramp))
        return tramp

    def counter(self, stat):
        if not self.agent.threads_label:
            return stat.calls.__next__
        by_thread = stat.by_thread
        current = sys.modules.get("threading", threading)

        def count_in_thread():
            # Looked up at each call: eventlet's monkey_patch replaces current_thread with one
            # that knows green threads.
            n = current.current_thread().name
            c = by_thread.get(n)
            if c is None:
                c = by_thread.setdefault(n, itertools.count())
            next(c)
            stat.calls.__next__()

        return count_in_thread

    def template(self, code, kind):
        """A compiled trampoline with the function's own parameters (names, kinds, order), and
        as many free variables as the function has closure cells (so it may be its __code__)."""
        argc = code.co_argcount
        posonly = getattr(code, "co_posonlyargcount", 0)
        kwonly = code.co_kwonlyargcount
        names = code.co_varnames
        flags = code.co_flags
        i = argc + kwonly
        varargs = names[i] if flags & CO_VARARGS else None
        if varargs:
            i += 1
        varkw = names[i] if flags & CO_VARKEYWORDS else None
        ident = (names[: argc + kwonly], posonly, argc, varargs, varkw, len(code.co_freevars), kind)
        t = self.templates.get(ident)
        if t is not None:
            return t
        params, fwd = [], []
        for j, n in enumerate(names[:argc]):
            params.append(n)
            if posonly and j == posonly - 1:
                params.append("/")
            fwd.append(n)
        if varargs:
            params.append("*" + varargs)
            fwd.append("*" + varargs)
        elif kwonly:
            params.append("*")
        for n in names[argc : argc + kwonly]:
            params.append(n)
            fwd.append("%s=%s" % (n, n))
        if varkw:
            params.append("**" + varkw)
            fwd.append("**" + varkw)
        free = ["_scalpels_free%d" % j for j in range(len(code.co_freevars))]
        body = _TEMPLATES[kind].format(fwd=", ".join(fwd), **{h: repr(_hole(h)) for h in _HOLES})
        src = "def _scalpels_outer():\n"
        if free:
            src += "    %s = None\n" % " = ".join(free)
        src += "    %sdef _scalpels_t(%s):\n" % ("async " if kind == "coro" else "", ", ".join(params))
        if free:
            src += "        if 0:\n            %s\n" % ", ".join(free)
        src += "        %s\n" % body
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # calling a str constant (a hole) is a SyntaxWarning
            outer = compile(src, AGENT_FILE, "exec").co_consts
        outer = next(c for c in outer if isinstance(c, types.CodeType))
        t = next(c for c in outer.co_consts if isinstance(c, types.CodeType))
        self.templates[ident] = t
        return t

    # -- modules imported later ------------------------------------------------------------------

    def install_import_hook(self):
        inst = self

        class Loader:
            """Runs the real loader, then instruments the new module. The module and its spec
            get the real loader back before its code runs."""

            def __init__(self, real, spec):
                self._real = real
                self._spec = spec

            def __getattr__(self, name):
                return getattr(self._real, name)

            def create_module(self, spec):
                create = getattr(self._real, "create_module", None)
                return create(spec) if create is not None else None

            def exec_module(self, module):
                self._spec.loader = self._real
                try:
                    if getattr(module, "__loader__", None) is self:
                        module.__loader__ = self._real
                except Exception:
                    pass
                self._real.exec_module(module)
                if inst.finder is not None:
                    try:
                        inst.scan_module(module)
                    except Exception:
                        pass

        class Finder:
            def __init__(self):
                self.busy = set()

            def find_spec(self, name, path=None, target=None):
                if inst.finder is not self or name in self.busy:
                    return None
                if not any(not r.get("modules") or any(fnmatch.fnmatchcase(name, g) for g in r["modules"]) for r in inst.rules):
                    return None
                self.busy.add(name)
                try:
                    for f in list(sys.meta_path):
                        if f is self:
                            continue
                        fs = getattr(f, "find_spec", None)
                        if fs is None:
                            return None  # a legacy finder: let the import system ask it
                        spec = fs(name, path, target)
                        if spec is not None:
                            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                                spec.loader = Loader(spec.loader, spec)
                            return spec
                    return None
                finally:
                    self.busy.discard(name)

        self.finder = Finder()
        sys.meta_path.insert(0, self.finder)

    # -- __main__ of a command started by scalpels run -------------------------------------------

    def main_pending(self):
        """Functions of the main script that match and are defined at its top level or in its
        classes, identified by (first line, name), with the script line after which all of them
        have been defined (or skipped): they may not exist yet when the agent starts (the script
        has not run, or is at its first lines). Each is instrumented at its first call, seen by a
        temporary hook, or once the script's top-level code has gone past them; then the hook
        leaves."""
        import dis

        main = sys.modules.get("__main__")
        path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv else "")
        if not isinstance(path, str) or not path or path.startswith("-") or not os.path.isfile(path):
            return None
        with open(path, "rb") as fh:
            top = compile(fh.read(), path, "exec", dont_inherit=True)
        paths = {path, os.path.abspath(path)}
        if sys.argv and sys.argv[0]:
            paths.add(sys.argv[0])

        def last_line(code):
            lines = [ln for _, ln in dis.findlinestarts(code) if ln]
            lines.append(code.co_firstlineno)
            lines.extend(last_line(k) for k in code.co_consts if isinstance(k, types.CodeType))
            return max(lines)

        found = set()
        done_after = 0
        # (code, its top-level statement's code): functions, and class bodies, not nested in a function.
        stack = [(k, k) for k in top.co_consts if isinstance(k, types.CodeType)]
        while stack:
            c, outer = stack.pop()
            if not c.co_flags & CO_NEWLOCALS:
                stack.extend((k, outer) for k in c.co_consts if isinstance(k, types.CodeType))
                continue  # a class body: its methods are defined with it
            if c.co_name.startswith("<") and c.co_name != "<lambda>":
                continue
            qual = getattr(c, "co_qualname", None) or c.co_name
            if any(rule_matches(r, "__main__", path, c.co_name, qual) for r in self.rules):
                found.add((c.co_firstlineno, c.co_name))
                done_after = max(done_after, last_line(outer))
        return (paths, found, done_after) if found else None

    def install_pending(self, pending):
        paths, idents, done_after = pending
        self.pending = idents
        seen = self.pending_seen = set()
        frames = self.pending_frames
        now = time.perf_counter_ns
        inst = self
        agent = self.agent
        returns = agent.returns
        # The script's top-level frame: found now when it runs already, else at its start.
        module_frame = [None]
        for f in list(sys._current_frames().values()) + [sys._getframe()]:
            while f is not None:
                if f.f_code.co_name == "<module>" and f.f_code.co_filename in paths:
                    module_frame[0] = f
                f = f.f_back

        def settle():
            # Past the last definition: what the script defined is in its namespace now.
            try:
                inst.scan_module(sys.modules["__main__"])
            except Exception:
                pass
            inst.pending.clear()

        def hook(frame, event, arg):
            if inst.pending is None:
                sys.setprofile(None)
                return
            if event == "call":
                code = frame.f_code
                if code not in seen:
                    seen.add(code)
                    ident = (code.co_firstlineno, code.co_name)
                    if code.co_filename in paths and ident in inst.pending:
                        funcs = [r for r in gc.get_referrers(code) if type(r) is types.FunctionType and r.__code__ is code]
                        for fn in funcs:
                            inst.consider(fn, "__main__")
                        inst.pending.discard(ident)
                        qual = getattr(code, "co_qualname", None) or (funcs[0].__qualname__ if funcs else code.co_name)
                        stat = inst.stats.get((function_key("__main__", qual), code.co_filename, code.co_firstlineno))
                        if stat is not None:
                            # This call runs the original code: count it here, time it at its return.
                            inst.counter(stat)()
                            if (agent.timing or agent.exceptions) and not stat.gen:
                                frames[frame] = (stat, now())
            elif event == "return":
                s = frames.pop(frame, None)
                if s is not None:
                    stat, t0 = s
                    code = frame.f_code
                    lasti = frame.f_lasti
                    op = code.co_code[lasti] if 0 <= lasti < len(code.co_code) else -1
                    if agent.exceptions and op not in returns:
                        next(stat.exc)
                    if agent.timing:
                        d = now() - t0
                        stat.ns[0] += d
                        stat.hist[bisect.bisect_left(BOUNDS_NS, d)] += 1
            # After this event's own call is counted (it may be the first call of a pending one).
            mf = module_frame[0]
            if mf is None:
                if event == "call" and frame.f_code.co_name == "<module>" and frame.f_code.co_filename in paths:
                    module_frame[0] = frame
            elif inst.pending and mf.f_lineno > done_after:
                settle()
            if not inst.pending and not frames:
                inst.pending = None
                threading.setprofile(None)
                sys.setprofile(None)

        self.pending_hook = hook
        sys.setprofile(hook)
        threading.setprofile(hook)

    # -- leaving ---------------------------------------------------------------------------------

    def uninstall(self):
        finder, self.finder = self.finder, None
        try:
            sys.meta_path.remove(finder)
        except ValueError:
            pass
        if self.pending is not None:
            self.pending = None  # each thread's temporary hook removes itself at its next event
            threading.setprofile(None)
            if sys.getprofile() is self.pending_hook:
                sys.setprofile(None)
        for func, code, tramp in list(self.done.values()):
            if tramp is not None and func.__code__ is tramp:
                func.__code__ = code
        self.done.clear()

    def deltas(self, threads):
        out = []
        for stat in list(self.stats.values()):
            out.extend(stat.deltas(threads))
        return out

    def reset(self):
        for stat in list(self.stats.values()):
            stat.sent = stat.current()


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


def merge_threads(items):
    """One row per function: the per-thread rows of the hook technique without the thread label."""
    merged = {}
    for it in items:
        k = (it[1], it[2], it[3])
        m = merged.get(k)
        if m is None:
            merged[k] = ["", it[1], it[2], it[3], it[4], it[5], it[6]] + ([dict(it[7])] if len(it) > 7 else [])
            continue
        m[4] += it[4]
        m[5] += it[5]
        m[6] += it[6]
        if len(it) > 7:
            if len(m) == 7:
                m.append({})
            for b, n in it[7].items():
                m[7][b] = m[7].get(b, 0) + n
    return list(merged.values())


def hello(hook, forked=False, plan=None):
    return {
        "t": "hello",
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "implementation": sys.implementation.name,
        "executable": sys.executable,
        "hook": hook,
        "forked": forked,
        "plan": plan,
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
    try:
        hook = agent.install()
    except Exception as e:
        try:
            agent.uninstall(wait=False)
        except Exception:
            pass
        sock.sendall((json.dumps({"t": "error", "message": str(e)}) + "\n").encode())
        sock.close()
        return
    # Listed once counting has begun (what "is it traced?" checks look for).
    sys.modules[MODULE_NAME] = mod
    agent.send(hello(hook, plan=agent.plan()))
    import atexit

    atexit.register(agent.finish, True)
    agent.wrap_exit()
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=agent.after_fork_in_child)
    # A bare OS thread: not profiled (threading.setprofile applies to threading.Thread only), not
    # listed by threading.enumerate(), never joined at exit.
    start_thread(agent.run, ())


_start(_sock, _config)  # noqa: F821 (given by the bootstrap)
