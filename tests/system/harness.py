"""System-test harness: starts the real bin/proxystone on free ports and
drives it over real sockets. Standard library only (no PyPI here)."""

import atexit
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("PS_BIN") or os.path.join(ROOT, "bin", "proxystone")
# Set by `make sanitize`: any sanitizer report in a node's log fails the test.
SANITIZE = bool(os.environ.get("PS_SANITIZE"))
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "SUMMARY: UndefinedBehaviorSanitizer")
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")

# Deadlines are generous: tests poll until something happens; they never
# assert on how fast it happened (that is `make bench`'s job).
DEADLINE = 20.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=DEADLINE, interval=0.05, what="condition"):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = pred()
            if last:
                return last
        except (OSError, http.client.HTTPException, ValueError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def children_of(pid):
    """Pids whose parent is pid, from /proc."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return out


def descendants(pid):
    """pid's children, grandchildren, ... (from /proc), depth first."""
    out, todo = [], [pid]
    while todo:
        for c in children_of(todo.pop()):
            if c not in out:
                out.append(c)
                todo.append(c)
    return out


def roles_of(supervisor):
    """{role: pid} of a supervisor's children, from their command lines."""
    roles = {}
    for pid in children_of(supervisor):
        cl = cmdline(pid)
        for role in ("membership", "api", "ui"):
            if f": {role}" in cl:
                roles[role] = pid
    return roles


def sigkill(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def kill_tree(root):
    """kill -9 of root and all its descendants. root is stopped first
    (SIGSTOP) so it cannot fork a replacement between the listing and the
    kill. Returns the pids killed; the caller reaps root."""
    try:
        os.kill(root, signal.SIGSTOP)
    except ProcessLookupError:
        pass
    pids = [root] + descendants(root)
    sigkill(pids)
    return pids


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:200]!r}>"


_started = []


@atexit.register
def _kill_leftovers():
    """A test that failed half-way must not leave processes behind."""
    for node in _started:
        if node.proc and node.proc.poll() is None:
            node.kill9()


class Node:
    """One supervisor tree with its own config, data dir and ports."""

    def __init__(self, tmp=None, role="coordinator", extra=None, port=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="ps-test-")
        self.port = port or free_port()
        self.data_dir = os.path.join(self.tmp, f"data-{self.port}")
        self.conf = os.path.join(self.tmp, f"node-{self.port}.conf")
        self.log_path = os.path.join(self.tmp, f"node-{self.port}.log")
        self.settings = {
            "role": role,
            "api_port": str(self.port),
            "gossip_port": str(free_port()),
            "data_dir": self.data_dir,
            "log_level": "debug",
        }
        if extra:
            self.settings.update(extra)
        self.proc = None
        self.write_conf()

    def write_conf(self):
        with open(self.conf, "w") as f:
            for k, v in self.settings.items():
                f.write(f"{k} = {v}\n")

    def start(self, wait=True, args=()):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([BIN, "--config", self.conf, *args],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        _started.append(self)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self):
        wait_for(lambda: self.get("/api/cluster/status").status == 200,
                 what=f"node on {self.port} to serve")

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def request(self, method, path, body=None, headers=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if body is not None and not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            hdrs = {"Content-Type": "application/json"} if body is not None else {}
            hdrs.update(headers or {})
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def supervisor(self):
        """The supervisor's pid (self.proc may be a wrapper around it)."""
        return self.proc.pid

    def children(self):
        """{role: pid} from the supervisor's children's command lines."""
        sup = self.supervisor()
        return roles_of(sup) if sup else {}

    def tree(self):
        """The process started and all its descendants."""
        return [self.proc.pid] + descendants(self.proc.pid)

    def stop(self, timeout=DEADLINE):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.check_sanitizers()
        return self.proc.returncode if self.proc else None

    def check_sanitizers(self):
        if not SANITIZE or not os.path.exists(self.log_path):
            return
        text = self.log()
        for mark in SANITIZER_MARKS:
            if mark in text:
                self.save_log(f"sanitizer-{self.port}")
                at = text.index(mark)
                raise AssertionError(f"sanitizer report in node {self.port}'s log:\n"
                                     + text[max(0, at - 200):at + 3000])

    def kill9(self):
        """kill -9 of the whole tree, all at once."""
        if not self.proc:
            return
        pids = kill_tree(self.proc.pid)
        self.proc.wait()
        wait_for(lambda: not any(alive(p) for p in pids), what="tree to die")

    def save_log(self, name):
        os.makedirs(ARTIFACTS, exist_ok=True)
        try:
            with open(self.log_path, "rb") as src, \
                    open(os.path.join(ARTIFACTS, f"{name}.log"), "wb") as dst:
                dst.write(src.read())
        except OSError:
            pass
