"""Multi-host lab for system tests: N hosts as Linux network namespaces on a
bridge, each running the real bin/proxystone with its own address and the
same ports, plus nftables fault injection. Standard library only.

Layout of one lab (every name carries a per-run prefix, e.g. ``ps4242-a1f3``)::

    <prefix>-sw   "switch" namespace: bridge br0, veth ends vh0, vh1, ...
    <prefix>-h0   host 0 (coordinator) eth0 10.77.0.1/24, lo up
    <prefix>-h1   host 1 (worker1)     eth0 10.77.0.2/24, lo up
    ...

Nothing is created in, or routed through, the root namespace: the lab's
traffic never leaves the namespaces it created.

Usage::

    from netns import Lab, require_netns

    class T(unittest.TestCase):
        def setUp(self):
            require_netns(self)          # fails (or skips if PS_NO_NETNS=1)

        def test_x(self):
            with Lab(hosts=4, name=self._testMethodName) as lab:
                lab.start_all()
                w = lab.workers[0]
                r = w.get("/api/cluster/status", to=lab.coordinator)
                lab.loss(w, 10); lab.partition(lab.workers[1], w); lab.heal()
                rec = lab.record_events()    # coordinator's SSE stream, kept
                rec.node_statuses(node_id)   # [(t, status)] incl. millisecond blips

HTTP requests are made from the test process itself: the socket is created
on a short-lived helper thread that has entered the host's namespace with
setns(2) (via ctypes; Python 3.11 has no os.setns), and is then used from the
calling thread (a socket stays in the namespace it was created in).

Teardown (``Lab.close``: on ``with`` exit, also via atexit and on SIGTERM/
SIGHUP of the runner) stops every process (SIGTERM, then kill -9 of the
whole tree, then SIGKILL of anything still running inside a lab namespace),
saves each host's log to tests/artifacts/multihost-<name>-<host>.log and
deletes every namespace (which deletes the veths and the bridge). If the
runner itself is killed -9, each supervisor gets SIGTERM (PR_SET_PDEATHSIG)
and stops its tree; only the namespaces remain (see --cleanup below).

``python3 tests/system/netns.py --list`` shows labs left by runners that were
killed -9; ``--cleanup`` removes those (namespaces, processes in them, temp
dirs) whose owner process is gone.
"""

import atexit
import ctypes
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from harness import (ARTIFACTS, DEADLINE, Response, alive, descendants, kill_tree, roles_of,
                     sigkill, wait_for)
import harness

# PS_BIN=/path/to/proxystone runs the lab on another build (default: bin/).
BIN = os.environ.get("PS_BIN") or harness.BIN

SUBNET = "10.77.0"
PREFIXLEN = 24
API_PORT = 4401
GOSSIP_PORT = 5401
COORDINATOR_ADDR = f"{SUBNET}.1"
NETNS_DIR = "/var/run/netns"
FAULT_TABLE = "psfault"
LAB_NAME_RE = re.compile(r"^ps(\d+)-([0-9a-f]{4})-(sw|h\d+)$")

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)


def _tool(name):
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}", f"/usr/bin/{name}")
         if os.access(p, os.X_OK)), name)


IP = _tool("ip")
NFT = _tool("nft")


class NetnsUnavailable(RuntimeError):
    """Network namespaces (or a tool the lab needs) cannot be used here."""


def _run(args, check=True, timeout=30, input=None):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): "
                           f"{(r.stderr or r.stdout).strip()}")
    return r


# ---------------------------------------------------------------- namespaces

def in_netns(ns_name, fn):
    """Run fn() on a fresh thread that has joined network namespace ns_name
    (setns(2)); return its result or raise its exception. The calling thread's
    namespace is never changed."""
    box = {}

    def run():
        try:
            fd = os.open(os.path.join(NETNS_DIR, ns_name), os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns_name}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, name=f"netns-{ns_name}", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def netns_socket(ns_name, family=socket.AF_INET, type=socket.SOCK_STREAM):
    """A socket created inside network namespace ns_name."""
    return in_netns(ns_name, lambda: socket.socket(family, type))


class NetnsHTTPConnection(http.client.HTTPConnection):
    """http.client connection whose socket lives in a given namespace."""

    def __init__(self, ns_name, host, port, timeout=10):
        super().__init__(host, port, timeout=timeout)
        self.ns_name = ns_name

    def connect(self):
        s = netns_socket(self.ns_name)
        try:
            s.settimeout(self.timeout)
            s.connect((self.host, self.port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            s.close()
            raise
        self.sock = s


def netns_inode(ns_name):
    try:
        return os.stat(os.path.join(NETNS_DIR, ns_name)).st_ino
    except OSError:
        return None


def pids_in_netns(inodes):
    """Pids (other than ours) whose network namespace inode is in inodes."""
    out = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            link = os.readlink(f"/proc/{d}/ns/net")  # "net:[4026532281]"
        except OSError:
            continue
        m = re.match(r"net:\[(\d+)\]", link)
        if m and int(m.group(1)) in inodes:
            out.append(int(d))
    return out


_checked = None


def check_netns():
    """None if the lab can run here, else a message saying why not."""
    global _checked
    if _checked is not None:
        return _checked or None
    problems = []
    if os.geteuid() != 0:
        problems.append(f"not root (euid {os.geteuid()}); the lab needs root/CAP_SYS_ADMIN")
    for tool, pkg in ((IP, "iproute2"), (NFT, "nftables")):
        if not os.access(tool, os.X_OK):
            problems.append(f"'{os.path.basename(tool)}' not found: apt-get install -y {pkg}")
    if not os.access(BIN, os.X_OK):
        problems.append(f"{BIN} missing: run `make bin/proxystone`")
    if not problems:
        probe = f"ps{os.getpid()}-{secrets.token_hex(2)}-h99"
        try:
            r = _run([IP, "netns", "add", probe], check=False)
            if r.returncode != 0:
                problems.append(f"`ip netns add` failed: {r.stderr.strip()} "
                                "(no CAP_SYS_ADMIN in this container?)")
            else:
                try:
                    in_netns(probe, lambda: socket.socket().close())
                    r = _run([IP, "netns", "exec", probe, NFT, "list", "ruleset"], check=False)
                    if r.returncode != 0:
                        problems.append(f"nft inside a namespace failed: {r.stderr.strip()}")
                except OSError as e:
                    problems.append(f"setns into a namespace failed: {e}")
                finally:
                    _run([IP, "netns", "del", probe], check=False)
        except (OSError, subprocess.SubprocessError) as e:
            problems.append(f"cannot run ip: {e}")
    _checked = "; ".join(problems)
    return _checked or None


def require_netns(testcase):
    """Call from setUp: skip if PS_NO_NETNS=1, else fail loudly when network
    namespaces are unusable (a skipped assertion would hide the gap)."""
    if os.environ.get("PS_NO_NETNS") == "1":
        testcase.skipTest("PS_NO_NETNS=1: multi-host namespace tests disabled")
    why = check_netns()
    if why:
        testcase.fail("multi-host lab unavailable: " + why +
                      " (set PS_NO_NETNS=1 to skip these tests explicitly)")


# ---------------------------------------------------------------- hosts

class Host:
    """One host: a namespace, an address and (when started) one proxystone
    supervisor tree with its own config and data dir."""

    def __init__(self, lab, index, name, role, addr, ns):
        self.lab = lab
        self.index = index
        self.name = name            # "coordinator", "worker1", ...
        self.role = role
        self.addr = addr            # "10.77.0.1"
        self.ns = ns                # namespace name
        self.api_port = API_PORT
        self.gossip_port = GOSSIP_PORT
        self.dir = os.path.join(lab.tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.data_dir = os.path.join(self.dir, "data")
        self.conf = os.path.join(self.dir, "proxystone.conf")
        self.log_path = os.path.join(self.dir, "proxystone.log")
        self.settings = {
            "role": role,
            "cluster_id": lab.cluster_id,
            "api_host": addr,
            "api_port": str(API_PORT),
            "advertise_host": addr,
            "gossip_host": addr,
            "gossip_port": str(GOSSIP_PORT),
            "data_dir": self.data_dir,
            "node_timeout": str(lab.node_timeout),
            "log_level": "debug",
        }
        if role == "worker":
            self.settings["cluster_ip"] = f"{COORDINATOR_ADDR}:{API_PORT}"
        self.settings.update(lab.extra or {})
        self.proc = None
        self.starts = 0

    def __repr__(self):
        return f"<Host {self.name} {self.addr} ns={self.ns}>"

    @property
    def url(self):
        return f"http://{self.addr}:{self.api_port}"

    # -- process control

    def write_conf(self):
        with open(self.conf, "w") as f:
            for k, v in self.settings.items():
                f.write(f"{k} = {v}\n")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return bool(self.proc) and self.proc.poll() is None

    def start(self, wait=True, args=()):
        """Start bin/proxystone in this host's namespace (`ip netns exec`
        execs it, so self.pid is the supervisor's pid)."""
        if self.running():
            raise RuntimeError(f"{self.name} already running (pid {self.pid})")
        self.write_conf()
        self.starts += 1
        with open(self.log_path, "ab") as logf:
            logf.write(f"\n==== netns lab: start #{self.starts} of {self.name} "
                       f"({self.addr}, ns {self.ns}) at {time.strftime('%H:%M:%S')}\n"
                       .encode())
            logf.flush()
            self.proc = subprocess.Popen(
                [IP, "netns", "exec", self.ns, BIN, "--config", self.conf, *args],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_pdeathsig_hook())
        self.lab.note(f"started {self.name} pid {self.proc.pid}")
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=DEADLINE):
        """Poll until GET /api/cluster/status answers 200; on failure say why
        (last answer, and the warnings/errors of the host's log)."""
        last = []

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}; "
                                     f"log tail:\n{self.log()[-2000:]}")
            r = self.get("/api/cluster/status", timeout=2)
            last[:] = [r]
            return r.status == 200
        try:
            wait_for(ready, timeout=timeout, interval=0.1, what=f"{self.name} API to serve")
        except AssertionError as e:
            problems = [l for l in self.log().splitlines()
                        if " warn:" in l or " error:" in l or "fatal" in l]
            raise AssertionError(
                f"{self.name} ({self.addr}) not serving within {timeout}s; last answer "
                f"{last[0] if last else None!r}; log warnings ({len(problems)}):\n  "
                + "\n  ".join(problems[:12]) + f"\n({e})") from None
        return self

    def tree(self):
        """The supervisor and all its descendants."""
        if not self.running():
            return []
        return [self.proc.pid] + descendants(self.proc.pid)

    def children(self):
        """{role: pid} of the supervisor's children, from their command lines."""
        return roles_of(self.proc.pid) if self.running() else {}

    def stop(self, timeout=DEADLINE):
        """Graceful: SIGTERM to the supervisor, wait; kill -9 the tree if it
        does not exit in time. Returns the exit status (None if not started)."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            tree = self.tree()
            self.lab.note(f"SIGTERM {self.name} pid {self.proc.pid}")
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.lab.note(f"{self.name} ignored SIGTERM for {timeout}s: kill -9")
                self.kill9()
                return self.proc.returncode
            try:
                wait_for(lambda: not any(alive(p) for p in tree), timeout=timeout,
                         what=f"{self.name}'s children to exit after SIGTERM")
            except AssertionError:
                sigkill(tree)
                raise
        return self.proc.returncode

    def kill9(self):
        """kill -9 of the whole process tree. The supervisor is stopped first
        (SIGSTOP) so it cannot fork a replacement between the listing and the
        kill; then every process of the tree gets SIGKILL."""
        if not self.proc:
            return
        if self.proc.poll() is None:
            tree = kill_tree(self.proc.pid)
            self.lab.note(f"kill -9 {self.name} tree {tree}")
            self.proc.wait()
            wait_for(lambda: not any(alive(p) for p in tree),
                     what=f"{self.name}'s tree to die")

    def restart(self, wait=True, graceful=True):
        """Stop (SIGTERM, or kill -9 if graceful=False) and start again with
        the same config and data dir."""
        if graceful:
            self.stop()
        else:
            self.kill9()
        return self.start(wait=wait)

    # -- HTTP

    def request(self, method, path, body=None, headers=None, timeout=10, to=None):
        """HTTP request made from this host's namespace to host `to` (default:
        this host), or to an address string / (addr, port) tuple."""
        if to is None:
            to = self
        if isinstance(to, Host):
            addr, port = to.addr, to.api_port
        elif isinstance(to, tuple):
            addr, port = to
        else:
            addr, port = to, API_PORT
        conn = NetnsHTTPConnection(self.ns, addr, port, timeout=timeout)
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

    def status(self, **kw):
        """This host's GET /api/cluster/status body (raises unless 200)."""
        r = self.get("/api/cluster/status", **kw)
        if r.status != 200:
            raise ValueError(f"{self.name} /api/cluster/status: {r!r}")
        return r.json()

    def node_id(self):
        return self.status()["status"]["id"]

    def nodes(self, **kw):
        """This host's GET /api/cluster/nodes list (raises unless 200)."""
        r = self.get("/api/cluster/nodes", **kw)
        if r.status != 200:
            raise ValueError(f"{self.name} /api/cluster/nodes: {r!r}")
        return r.json()["nodes"]

    # -- misc

    def exec(self, *cmd, check=True, timeout=30):
        """Run a command inside this host's namespace."""
        return _run([IP, "netns", "exec", self.ns, *cmd], check=check, timeout=timeout)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""



def _pdeathsig_hook():
    """If the runner dies (even by kill -9) the supervisor gets SIGTERM and
    stops its tree. Only set from the main thread: PDEATHSIG follows the
    creating *thread*."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def hook():
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    return hook


# ---------------------------------------------------------------- events

class EventRecorder:
    """Follows a host's GET /api/cluster/events (Server-Sent Events) on a
    background thread and keeps every event, so a status that lasted a few
    milliseconds between two polls is still seen. Reconnects by itself when
    the stream drops (the host restarting); gaps are recorded.

    events: list of (seconds since start, event name, data dict or text).
    """

    MAX_EVENTS = 200000      # bound on what one recorder keeps
    MAX_RECONNECTS = 10000   # bound on reconnection attempts

    def __init__(self, host, to=None, path="/api/cluster/events"):
        self.host = host
        self.to = to or host
        self.path = path
        self.events = []
        self.gaps = []           # (seconds, reason) of every disconnection
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._sock = None
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"events-{host.name}")

    def start(self, wait=True, timeout=DEADLINE):
        self._thread.start()
        if wait and not self.connected.wait(timeout):
            raise AssertionError(f"event stream of {self.to.name} not open within {timeout}s "
                                 f"(gaps: {self.gaps[-3:]})")
        return self

    def _run(self):
        attempts = 0
        while not self._stop.is_set() and attempts < self.MAX_RECONNECTS:
            attempts += 1
            try:
                self._follow()
                reason = "stream ended"
            except Exception as e:  # recorded; reconnect
                reason = repr(e)
            self.connected.clear()
            if not self._stop.is_set():
                self.gaps.append((round(time.monotonic() - self._t0, 3), reason))
                self._stop.wait(0.2)

    def _follow(self):
        conn = NetnsHTTPConnection(self.host.ns, self.to.addr, self.to.api_port, timeout=10)
        try:
            conn.connect()
            with self._lock:
                if self._stop.is_set():
                    return
                self._sock = conn.sock      # http.client may drop conn.sock later
            conn.request("GET", self.path, headers={"Accept": "text/event-stream"})
            r = conn.getresponse()
            if r.status != 200:
                raise ValueError(f"events: HTTP {r.status}")
            self._sock.settimeout(None)     # pings keep it alive; stop() shuts it
            self.connected.set()
            name, data = "message", []
            while not self._stop.is_set():
                line = r.readline()
                if not line:
                    return
                line = line.decode(errors="replace").rstrip("\r\n")
                if line == "":
                    if data:
                        self._add(name, "\n".join(data))
                    name, data = "message", []
                elif line.startswith(":"):
                    continue
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
        finally:
            with self._lock:
                sock, self._sock = self._sock, None
            conn.close()
            if sock is not None:
                sock.close()

    def _add(self, name, text):
        try:
            data = json.loads(text)
        except ValueError:
            data = text
        if len(self.events) < self.MAX_EVENTS:
            self.events.append((round(time.monotonic() - self._t0, 3), name, data))

    def now(self):
        """Current time on this recorder's clock (to mark windows)."""
        return round(time.monotonic() - self._t0, 3)

    def node_statuses(self, node_id, since=0.0, until=None):
        """[(t, status)] of every `node` event about node_id in the window."""
        out = []
        for t, name, d in list(self.events):
            if name == "node" and isinstance(d, dict) and d.get("id") == node_id \
                    and t >= since and (until is None or t <= until) and "status" in d:
                out.append((t, d["status"]))
        return out

    def stop(self):
        self._stop.set()
        with self._lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(10)


# ---------------------------------------------------------------- the lab

_live_labs = []
_prev_handlers = {}


def _close_all_labs():
    for lab in list(_live_labs):
        try:
            lab.close()
        except Exception as e:  # keep closing the others
            print(f"netns lab cleanup: {e}", file=sys.stderr)


atexit.register(_close_all_labs)


def _on_fatal_signal(signum, frame):
    # Unwind through every try/finally and `with Lab()` (KeyboardInterrupt is
    # not swallowed by unittest); atexit closes what is left.
    raise KeyboardInterrupt(f"signal {signum}")


def _install_signal_handlers():
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if sig in _prev_handlers:
            continue
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            _prev_handlers[sig] = signal.signal(sig, _on_fatal_signal)


class Lab:
    """N hosts on one bridge. hosts[0] is the coordinator (10.77.0.1), the
    others workers (10.77.0.2, ...). Use as a context manager."""

    def __init__(self, hosts=4, name="lab", cluster_id="multihost", node_timeout=30,
                 extra=None):
        if hosts < 1 or hosts > 200:
            raise ValueError("hosts must be 1..200")
        self.n = hosts
        self.name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self.cluster_id = cluster_id
        self.node_timeout = node_timeout
        self.extra = extra
        self.prefix = f"ps{os.getpid()}-{secrets.token_hex(2)}"
        self.switch_ns = f"{self.prefix}-sw"
        self.tmp = tempfile.mkdtemp(prefix=f"ps-lab-{os.getpid()}-{self.name[:40]}-")
        self.hosts = []
        self.namespaces = []        # every namespace we created, in order
        self.events = []            # (time, text) of what the lab did
        self.recorders = []
        self.closed = False
        self._t0 = time.monotonic()

    # -- lifecycle

    def __enter__(self):
        return self.setup()

    def __exit__(self, *exc):
        self.close()
        return False

    def note(self, text):
        """Add a line to the lab's event list (saved with the coordinator's log)."""
        self.events.append((round(time.monotonic() - self._t0, 3), text))

    def _add_ns(self, name):
        _run([IP, "netns", "add", name])
        self.namespaces.append(name)
        _run([IP, "-n", name, "link", "set", "lo", "up"])

    def setup(self):
        why = check_netns()
        if why:
            raise NetnsUnavailable(why)
        _install_signal_handlers()
        _live_labs.append(self)
        try:
            self._add_ns(self.switch_ns)
            _run([IP, "-n", self.switch_ns, "link", "add", "br0", "type", "bridge",
                  "stp_state", "0", "forward_delay", "0"])
            _run([IP, "-n", self.switch_ns, "link", "set", "br0", "up"])
            for i in range(self.n):
                ns = f"{self.prefix}-h{i}"
                addr = f"{SUBNET}.{i + 1}"
                role = "coordinator" if i == 0 else "worker"
                hname = "coordinator" if i == 0 else f"worker{i}"
                self._add_ns(ns)
                port = f"vh{i}"
                _run([IP, "-n", self.switch_ns, "link", "add", port, "type", "veth",
                      "peer", "name", "eth0", "netns", ns])
                _run([IP, "-n", self.switch_ns, "link", "set", port, "master", "br0"])
                _run([IP, "-n", self.switch_ns, "link", "set", port, "up"])
                _run([IP, "-n", ns, "addr", "add", f"{addr}/{PREFIXLEN}", "dev", "eth0"])
                _run([IP, "-n", ns, "link", "set", "eth0", "up"])
                self.hosts.append(Host(self, i, hname, role, addr, ns))
            self.note(f"lab {self.prefix}: {self.n} hosts, tmp {self.tmp}")
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        """Stop every process, save logs, delete every namespace. Idempotent;
        never raises for a cleanup step that fails (it reports and goes on)."""
        if self.closed:
            return
        self.closed = True
        errors = []
        for rec in self.recorders:
            try:
                rec.stop()
            except Exception as e:
                errors.append(f"stop event recorder: {e}")
        for h in self.hosts:
            try:
                if h.running():
                    h.stop(timeout=10)
            except Exception as e:
                errors.append(f"stop {h.name}: {e}")
                try:
                    h.kill9()
                except Exception as e2:
                    errors.append(f"kill9 {h.name}: {e2}")
        # Anything still running inside our namespaces (orphans included).
        inodes = {i for i in (netns_inode(ns) for ns in self.namespaces) if i}
        for _ in range(50):
            left = pids_in_netns(inodes) if inodes else []
            if not left:
                break
            sigkill(left)
            time.sleep(0.1)
        else:
            errors.append(f"processes still in lab namespaces: {left}")
        for h in self.hosts:
            if h.proc:
                try:
                    h.proc.wait(5)
                except subprocess.TimeoutExpired:
                    errors.append(f"{h.name} pid {h.proc.pid} did not exit")
        self.save_logs()
        sanitizer = self.sanitizer_reports()
        for ns in reversed(self.namespaces):   # hosts, then the switch
            r = _run([IP, "netns", "del", ns], check=False)
            if r.returncode != 0 and os.path.exists(os.path.join(NETNS_DIR, ns)):
                errors.append(f"ip netns del {ns}: {r.stderr.strip()}")
        if self in _live_labs:
            _live_labs.remove(self)
        if not errors:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print(f"netns lab {self.prefix} cleanup problems (tmp kept at {self.tmp}): "
                  + "; ".join(errors), file=sys.stderr)
        if sanitizer:
            raise AssertionError("sanitizer report in the lab's logs:\n" + sanitizer)

    def sanitizer_reports(self):
        """Under `make sanitize` (harness.SANITIZE): the first sanitizer report
        found in a host's log, else ''."""
        if not getattr(harness, "SANITIZE", False):
            return ""
        for h in self.hosts:
            text = h.log()
            for mark in getattr(harness, "SANITIZER_MARKS", ()):
                if mark in text:
                    at = text.index(mark)
                    return f"{h.name}: " + text[max(0, at - 200):at + 3000]
        return ""

    def save_logs(self):
        """Copy each host's log to tests/artifacts/multihost-<name>-<host>.log
        (the lab's own event list is appended to the coordinator's copy)."""
        os.makedirs(ARTIFACTS, exist_ok=True)
        for h in self.hosts:
            dst = os.path.join(ARTIFACTS, f"multihost-{self.name}-{h.name}.log")
            try:
                with open(dst, "w") as f:
                    f.write(h.log())
                    if h.index == 0:
                        f.write("\n==== netns lab events (seconds since lab start)\n")
                        for t, text in self.events:
                            f.write(f"{t:9.3f} {text}\n")
            except OSError:
                pass

    # -- hosts

    def __getitem__(self, i):
        return self.hosts[i]

    def __iter__(self):
        return iter(self.hosts)

    @property
    def coordinator(self):
        return self.hosts[0]

    @property
    def workers(self):
        return self.hosts[1:]

    def host(self, name_or_addr):
        for h in self.hosts:
            if name_or_addr in (h.name, h.addr, h.ns):
                return h
        raise KeyError(name_or_addr)

    def record_events(self, host=None, to=None):
        """Start an EventRecorder following `to`'s event stream (default: the
        coordinator), connecting from `host`'s namespace (default: the same
        host, over its loopback, so injected faults do not touch it)."""
        to = to or host or self.coordinator
        rec = EventRecorder(host or to, to=to).start()
        self.recorders.append(rec)
        return rec

    def start_all(self, wait=True):
        """Coordinator first (waits for its API), then the workers."""
        self.coordinator.start(wait=wait)
        for w in self.workers:
            w.start(wait=False)
        if wait:
            for w in self.workers:
                w.wait_ready()
        return self

    def stop_all(self):
        for h in reversed(self.hosts):
            h.stop()

    # -- fault injection (nftables inside the hosts' namespaces)
    #
    # Drops are made on the *receiving* host's input hook by default, so a
    # sender sees what a lossy wire looks like; an output-hook drop makes the
    # sender's own sendto()/connect() fail with EPERM, which real loss never
    # does. ARP is untouched (family inet), loopback is untouched.

    def _ensure_table(self, host):
        ruleset = (f"table inet {FAULT_TABLE} {{\n"
                   f"  chain input {{ type filter hook input priority -10; policy accept; }}\n"
                   f"  chain output {{ type filter hook output priority -10; policy accept; }}\n"
                   f"}}\n")
        r = _run([IP, "netns", "exec", host.ns, NFT, "-f", "-"], input=ruleset)
        return r

    def _nft(self, host, *rule):
        self._ensure_table(host)
        _run([IP, "netns", "exec", host.ns, NFT, *rule])

    def loss(self, host, percent, direction="input"):
        """Drop `percent`% of the packets on host's eth0, at random
        (numgen random mod 100 < percent). direction: input, output or both.
        Rules add up: call heal(host) to change the rate."""
        percent = int(percent)
        if not 0 <= percent <= 100:
            raise ValueError("percent must be 0..100")
        if direction not in ("input", "output", "both"):
            raise ValueError("direction must be input, output or both")
        if direction in ("input", "both"):
            self._nft(host, "add", "rule", "inet", FAULT_TABLE, "input",
                      "iifname", "eth0", "numgen", "random", "mod", "100", "<", str(percent),
                      "counter", "drop")
        if direction in ("output", "both"):
            self._nft(host, "add", "rule", "inet", FAULT_TABLE, "output",
                      "oifname", "eth0", "numgen", "random", "mod", "100", "<", str(percent),
                      "counter", "drop")
        self.note(f"loss {percent}% ({direction}) on {host.name}")

    def block_oneway(self, src, dst):
        """Packets from src to dst are dropped (on dst's input); dst to src
        still flows."""
        self._nft(dst, "add", "rule", "inet", FAULT_TABLE, "input",
                  "ip", "saddr", src.addr, "counter", "drop")
        self.note(f"block {src.name} -> {dst.name}")

    def partition(self, a, b):
        """Two-way: nothing between a and b in either direction."""
        self.block_oneway(a, b)
        self.block_oneway(b, a)

    def isolate(self, host):
        """Two-way partition of host from every other host of the lab."""
        for other in self.hosts:
            if other is not host:
                self.partition(host, other)

    def heal(self, *hosts):
        """Remove every injected fault of the given hosts (all if none)."""
        for h in (hosts or self.hosts):
            r = _run([IP, "netns", "exec", h.ns, NFT, "flush", "table", "inet", FAULT_TABLE],
                     check=False)
            if r.returncode != 0 and "No such file" not in r.stderr:
                raise RuntimeError(f"heal {h.name}: {r.stderr.strip()}")
            self.note(f"heal {h.name}")

    def dropped(self, host):
        """Packets dropped so far by host's fault rules (from their counters)."""
        r = _run([IP, "netns", "exec", host.ns, NFT, "-j", "list", "table", "inet",
                  FAULT_TABLE], check=False)
        if r.returncode != 0:
            return 0
        total = 0
        for item in json.loads(r.stdout).get("nftables", []):
            for expr in item.get("rule", {}).get("expr", []):
                if isinstance(expr, dict) and "counter" in expr:
                    total += expr["counter"].get("packets", 0)
        return total

    def rules(self, host):
        return _run([IP, "netns", "exec", host.ns, NFT, "list", "ruleset"], check=False).stdout


# ---------------------------------------------------------------- leftovers

def leftover_labs():
    """{prefix: (owner_pid, owner_alive, [namespaces])} of labs on this machine."""
    out = {}
    try:
        names = os.listdir(NETNS_DIR)
    except OSError:
        return out
    for n in names:
        m = LAB_NAME_RE.match(n)
        if m:
            prefix = f"ps{m.group(1)}-{m.group(2)}"
            pid = int(m.group(1))
            out.setdefault(prefix, (pid, os.path.exists(f"/proc/{pid}"), []))[2].append(n)
    return out


def _main(argv):
    if len(argv) != 2 or argv[1] not in ("--list", "--cleanup"):
        print("usage: netns.py --list | --cleanup", file=sys.stderr)
        return 2
    labs = leftover_labs()
    for prefix, (pid, owner_alive, names) in sorted(labs.items()):
        print(f"{prefix}: owner pid {pid} {'alive' if owner_alive else 'gone'}: "
              f"{' '.join(sorted(names))}")
        if argv[1] == "--cleanup" and not owner_alive:
            inodes = {i for i in (netns_inode(n) for n in names) if i}
            sigkill(pids_in_netns(inodes))
            time.sleep(0.2)
            for n in sorted(names, key=lambda s: s.endswith("-sw")):
                _run([IP, "netns", "del", n], check=False)
            print("  removed")
    if argv[1] == "--cleanup":
        tmp = tempfile.gettempdir()
        for d in sorted(os.listdir(tmp)):
            m = re.match(r"^ps-lab-(\d+)-", d)
            if m and not os.path.exists(f"/proc/{m.group(1)}"):
                shutil.rmtree(os.path.join(tmp, d), ignore_errors=True)
                print(f"removed {os.path.join(tmp, d)}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
