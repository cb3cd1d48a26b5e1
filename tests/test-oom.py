#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""iothreadd and iothreadctl out of memory: never a crash, never a hang.

Runs the daemon under oom-shim.so with the Nth allocation failing (once,
then from N on), for N across a QMP session (start-up, commands, quit),
and checks each run:
  - the daemon is never killed by a signal (SIGSEGV, SIGABRT) and exits
    0, or 1 with one "iothreadd: " line if it could not start;
  - the client gets each reply in order or the connection closes (a
    reply the daemon could not build drops its client), and, with one
    allocation failing, the session never hangs: every step is
    time-boxed.  With every allocation failing from N on, a daemon that
    stops answering (it cannot even grow its fd array to watch a new
    client; it waits for memory) counts as "stalled", not as a fault;
  - a daemon that answered the quit exits; with one allocation failing,
    one whose client was dropped serves the next client's whole session
    (and exits at its quit); with every allocation failing from N on, it
    exits 0 on SIGTERM (or stalls).

Then iothreadctl: each of its commands against a daemon that has memory,
with the Nth allocation (its own or json-c's) failing: it exits 0, or 1
with one "iothreadctl: " line, and is never killed by a signal.

  IOTHREADD=... IOTHREADCTL=... OOM_SHIM=... tests/test-oom.py [SCALE]
  (1: 260 cases)

Without the variables the files are looked for next to this script in a
build directory (../daemon/iothreadd, ../tools/iothreadctl, ./oom-shim.so).  Prints TAP and
ends with "# N passed, N failed".  Skipped in sanitizer builds, whose
runtimes replace malloc before any shim.
"""
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DAEMON = os.environ.get("IOTHREADD", os.path.join(HERE, "..", "daemon", "iothreadd"))
SHIM = os.environ.get("OOM_SHIM", os.path.join(HERE, "oom-shim.so"))
CTL = os.environ.get("IOTHREADCTL", os.path.join(HERE, "..", "tools", "iothreadctl"))
STEP_LIMIT = 5.0  # seconds for any one step

SESSION = [
    {"execute": "qmp_capabilities"},
    {"execute": "object-add", "arguments": {"qom-type": "iothread", "id": "io2", "poll-max-ns": 1000}},
    {"execute": "query-iothreads"},
    {"execute": "qom-set", "arguments": {"path": "/objects/io2", "property": "poll-grow", "value": 2}},
    {"execute": "qom-get", "arguments": {"path": "/objects/io2", "property": "poll-grow"}},
    {"execute": "qom-list", "arguments": {"path": "/objects"}},
    {"execute": "query-iothread-stats"},
    {"execute": "object-del", "arguments": {"id": "io2"}},
    {"execute": "nope", "id": [1, {"a": "b"}]},
    {"execute": "query-version", "id": 7},
    {"execute": "quit"},
]


class Lines:
    """Reads CRLF-terminated lines from a socket, each read time-boxed."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        """A line, or None at EOF.  Raises TimeoutError."""
        deadline = time.monotonic() + STEP_LIMIT
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise TimeoutError("no reply within %.0f s" % STEP_LIMIT)
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line


def connect(path, proc):
    """Waits for the socket (or the daemon's end); None if it ended."""
    deadline = time.monotonic() + STEP_LIMIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            return s
        except OSError:
            s.close()
            time.sleep(0.005)  # the daemon is starting: poll its socket
    raise TimeoutError("the socket never accepted")


def session(path, proc):
    """Runs SESSION; returns how it ended (a string), raises on a fault."""
    s = connect(path, proc)
    if s is None:
        return "no start"
    with s:
        rd = Lines(s)
        greeting = rd.line()
        if greeting is None:
            return "dropped at greeting"
        if "QMP" not in json.loads(greeting):
            raise AssertionError("bad greeting %r" % greeting)
        for i, cmd in enumerate(SESSION):
            try:
                s.sendall((json.dumps(cmd) + "\n").encode())
            except OSError:
                return "dropped before command %d" % i
            while True:
                try:
                    line = rd.line()
                except ConnectionResetError:
                    return "dropped at command %d" % i
                if line is None:
                    return "dropped at command %d" % i
                reply = json.loads(line)  # malformed JSON fails the run
                if "event" in reply:
                    continue
                break
            if "id" in cmd and reply.get("id") != cmd["id"]:
                raise AssertionError("reply %r to %r" % (reply, cmd))
            if "return" not in reply and "error" not in reply:
                raise AssertionError("reply %r to %r" % (reply, cmd))
        return "complete"


def run(n, fail_all, tmp, count=None, jsonc=False):
    path = os.path.join(tmp, "q%d-%d.sock" % (n, fail_all))
    env = dict(os.environ, LD_PRELOAD=SHIM, OOM_FAIL_AT=str(n), OOM_FAIL_ALL="1" if fail_all else "0",
               OOM_JSONC="1" if jsonc else "0")
    if count:
        env["OOM_COUNT"] = count
    proc = subprocess.Popen([DAEMON, "--qmp", path, "--object", "iothread,id=io0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        try:
            how = session(path, proc)
        except TimeoutError:
            if not fail_all:
                raise
            how = "stalled"
        # With one allocation failing, once: the client it cost was
        # dropped, and the next client is served in full (its quit ends
        # the daemon), unless the lost reply was the quit's and the quit
        # ran (if the failure was in reading it, it did not).
        served = None
        if not fail_all and how not in ("complete", "no start") and proc.poll() is None:
            quit_dropped = how == "dropped at command %d" % (len(SESSION) - 1)
            try:
                again = session(path, proc)
            except ConnectionError:
                again = "reset"
            if again == "complete":
                served = how + ", then another client served"
            elif quit_dropped and again in ("no start", "reset", "dropped at greeting"):
                served = how + " (the quit ran)"
            else:
                raise AssertionError("%s, then another client: %s" % (how, again))
            how = "complete"
        if how == "complete":
            try:
                proc.wait(timeout=STEP_LIMIT)
            except subprocess.TimeoutExpired:
                raise AssertionError("answered quit but did not exit")
        elif proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the quit never came
            try:
                proc.wait(timeout=STEP_LIMIT if how != "stalled" else 1)
            except subprocess.TimeoutExpired:
                if how != "stalled":
                    raise AssertionError("%s, and SIGTERM did not end it" % how)
                proc.kill()  # it waits for memory that never comes
                proc.wait()
                return how
        err = proc.stderr.read().decode(errors="replace")
        rc = proc.returncode
        if rc < 0:
            raise AssertionError("killed by signal %d (%s); stderr: %s" % (-rc, how, err))
        if rc == 1 and not err.startswith("iothreadd: "):
            raise AssertionError("exit 1 without a message (%s)" % how)
        if rc not in (0, 1):
            raise AssertionError("exit %d (%s); stderr: %s" % (rc, how, err))
        return served or how
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


CTL_COMMANDS = [
    ["add", "c{n}", "poll-max-ns=1000", "poll-grow=2"],
    ["set", "io0", "poll-shrink", "3"],
    ["--json", "get", "io0", "poll-max-ns"],
    ["--json", "list"],
    ["--json", "stats"],
]


def run_ctl(args, env_extra):
    env = dict(os.environ, LD_PRELOAD=SHIM, OOM_JSONC="1", **env_extra)
    try:
        proc = subprocess.run([CTL] + args, capture_output=True, env=env, timeout=STEP_LIMIT)
    except subprocess.TimeoutExpired:
        raise AssertionError("iothreadctl %s hung" % " ".join(args))
    err = proc.stderr.decode(errors="replace")
    if proc.returncode < 0:
        raise AssertionError("killed by signal %d; stderr: %s" % (-proc.returncode, err))
    if proc.returncode == 1 and not err.startswith("iothreadctl: "):
        raise AssertionError("exit 1 without a message: %r" % err)
    if proc.returncode not in (0, 1):
        raise AssertionError("exit %d; stderr: %s" % (proc.returncode, err))
    return "ok" if proc.returncode == 0 else "refused"


def ctl_cases(n_case, runs):
    """Each iothreadctl command, its allocations failing in turn."""
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ctl.sock")
        daemon = subprocess.Popen([DAEMON, "--qmp", path, "--object", "iothread,id=io0"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            s = connect(path, daemon)
            assert s is not None, "the daemon ended before it served"
            s.close()
            for k, cmd in enumerate(CTL_COMMANDS):
                args = ["--socket", path] + [a.format(n="%d-count" % k) for a in cmd]
                count = os.path.join(tmp, "count")
                assert run_ctl(args, {"OOM_FAIL_AT": "0", "OOM_COUNT": count}) == "ok"
                with open(count) as f:
                    total = int(f.read())
                print("# iothreadctl %s: %d allocations (ours and json-c's)" % (cmd[1] if cmd[0] == "--json" else cmd[0], total))
                for i in range(runs):
                    n = 1 + i * total // runs
                    n_case += 1
                    args = ["--socket", path] + [a.format(n="%d-%d" % (k, i)) for a in cmd]
                    name = "iothreadctl %s, alloc %d fails" % (" ".join(cmd), n)
                    try:
                        how = run_ctl(args, {"OOM_FAIL_AT": str(n), "OOM_FAIL_ALL": "0"})
                        passed += 1
                        print("ok %d %s: %s" % (n_case, name, how))
                    except Exception as e:  # any fault is this case's failure
                        failed += 1
                        print("not ok %d %s" % (n_case, name))
                        print("#   %s" % str(e).replace("\n", "\n#   "))
        finally:
            daemon.terminate()
            daemon.wait()
    return n_case, passed, failed


def main():
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    print("TAP version 13")
    ldd = subprocess.run(["ldd", DAEMON], capture_output=True, text=True).stdout
    if "libasan" in ldd or "libtsan" in ldd:
        print("1..1")
        print("ok 1 out of memory # SKIP a sanitizer replaces malloc")
        print("# 1 passed, 0 failed")
        return 0
    passed = failed = 0
    n_case = 0
    # Our code's allocations, then json-c's too (once each: json-c failing
    # for good ends in its tokener, not ours to judge).
    # (json-c's too?, modes, runs per mode): a fixed number of cases.
    for jsonc, modes, runs in ((False, (False, True), 50), (True, (False,), 120)):
        runs = max(1, int(runs * scale))
        with tempfile.TemporaryDirectory() as tmp:
            count = os.path.join(tmp, "count")
            how = run(0, False, tmp, count, jsonc)
            assert how == "complete", how
            with open(count) as f:
                total = int(f.read())
        who = "ours and json-c's" if jsonc else "ours"
        # @runs points spread over the session (all of them if fewer).
        points = sorted(set(1 + i * total // runs for i in range(runs)))
        print("# %d allocations (%s) in a session: %d of them fail in turn" % (total, who, len(points)))
        with tempfile.TemporaryDirectory() as tmp:
            for fail_all in modes:
                ends = {}
                for n in points:
                    n_case += 1
                    name = "alloc %d (%s) fails%s" % (n, who, " and all after" if fail_all else "")
                    try:
                        how = run(n, fail_all, tmp, None, jsonc)
                        ends[how] = ends.get(how, 0) + 1
                        passed += 1
                    except Exception as e:  # any fault is this case's failure
                        failed += 1
                        print("not ok %d %s" % (n_case, name))
                        print("#   %s" % str(e).replace("\n", "\n#   "))
                        continue
                    print("ok %d %s: %s" % (n_case, name, how))
                print("# %s: %s" % ("from N on" if fail_all else "once",
                                    ", ".join("%s %d" % kv for kv in sorted(ends.items()))))
    n_case, p, f = ctl_cases(n_case, max(1, int(8 * scale)))
    passed += p
    failed += f
    print("1..%d" % n_case)
    print("# %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
