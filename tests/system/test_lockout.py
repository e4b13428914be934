"""One client must not lock everyone out (issue 12, item 6).

Two hosts of a netns.Lab besides the coordinator: an attacker host holds
ATTACK_CONNS idle connections to the coordinator's API and reopens each one
the server closes, while a normal host makes NORMAL_REQUESTS requests. With
only a global connection limit the attacker's idle connections took every
slot and the normal requests got 503 TOO_MANY_CONNECTIONS; with the
per-client limit (max_connections_per_client) the attacker is refused past
its share and the normal client is served.

Loads are bounded (a fixed number of connections, a capped reopen rate and
an ATTACK_MAX_SECONDS ceiling); waits poll with generous deadlines; latency
is printed, never asserted. Needs root (network namespaces); PS_NO_NETNS=1
skips.
"""

import errno
import resource
import selectors
import socket
import statistics
import sys
import threading
import time
import unittest

from harness import wait_for
from netns import API_PORT, Lab, in_netns, require_netns

# Connections the attacker holds: the default max_connections.
ATTACK_CONNS = 1024
# Reopens per second at most: 30 times what the idle timeout alone forces
# (1,024 connections / 30 s = 34/s), without turning the test into a
# CPU-bound flood of two shared cores.
REOPEN_RATE = 1000.0
# The attack ends after this however the rest goes (bounded test).
ATTACK_MAX_SECONDS = 120.0
# Normal requests made during the attack, and how long each may take: a
# refused SYN (full accept queue) is retried by the kernel after 1, 3, 7 s.
NORMAL_REQUESTS = 30
NORMAL_TIMEOUT = 30.0
NORMAL_PATHS = ("/api/cluster/status", "/api/cluster/nodes", "/api/cluster/health")
# File descriptors the test process needs: the attacker's sockets plus
# those being closed and reopened, plus the lab's own.
FDS_NEEDED = ATTACK_CONNS * 2 + 256


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FDS_NEEDED if hard == resource.RLIM_INFINITY else min(hard, FDS_NEEDED)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Attacker:
    """Holds `n` connections from inside namespace `ns`, sends nothing on
    them, and reopens each one the server closes (at most REOPEN_RATE a
    second). Runs on its own thread until stop() or ATTACK_MAX_SECONDS."""

    def __init__(self, ns, addr, port, n):
        self.ns, self.addr, self.port, self.n = ns, addr, port, n
        self.stop_ev = threading.Event()
        self.opened = 0        # connect() calls
        self.closed_by_server = 0
        self.refused_503 = 0   # closed connections that got a 503 first
        self.open_now = 0
        self.error = None
        self.thread = threading.Thread(target=self._thread, name="attacker", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_ev.set()
        self.thread.join(ATTACK_MAX_SECONDS)

    def _thread(self):
        try:
            in_netns(self.ns, self._run)
        except BaseException as e:  # reported by the test
            self.error = e

    def _open(self, sel):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex((self.addr, self.port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            return False
        sel.register(s, selectors.EVENT_READ, bytearray())
        self.opened += 1
        return True

    def _run(self):
        sel = selectors.DefaultSelector()
        end = time.monotonic() + ATTACK_MAX_SECONDS
        owed = 0                       # connections to reopen
        budget, last = 0.0, time.monotonic()
        for _ in range(self.n):
            if not self._open(sel):
                owed += 1
        try:
            while not self.stop_ev.is_set() and time.monotonic() < end:
                for key, _ in sel.select(timeout=0.05):
                    s, got = key.fileobj, key.data
                    try:
                        data = s.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:    # reset or refused
                        data = b""
                    if data:
                        got += data
                        continue
                    if got.startswith(b"HTTP/1.1 503"):
                        self.refused_503 += 1
                    self.closed_by_server += 1
                    sel.unregister(s)
                    s.close()
                    owed += 1
                now = time.monotonic()
                budget = min(budget + (now - last) * REOPEN_RATE, REOPEN_RATE * 0.1)
                last = now
                while owed and budget >= 1:
                    budget -= 1
                    if self._open(sel):
                        owed -= 1
                    else:
                        break
                self.open_now = len(sel.get_map())
        finally:
            for key in list(sel.get_map().values()):
                key.fileobj.close()
            sel.close()


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


class LockoutTest(unittest.TestCase):
    def setUp(self):
        require_netns(self)
        fds = raise_fd_limit()
        if fds < FDS_NEEDED:
            self.fail(f"RLIMIT_NOFILE is {fds}; the attacker needs {FDS_NEEDED} descriptors")
        # coordinator (serving), attacker, normal client: the last two only
        # lend their namespaces and addresses.
        self.lab = Lab(hosts=3, name=self._testMethodName)
        self.addCleanup(self.lab.close)
        self.lab.setup()
        self.coord, self.evil, self.good = self.lab.hosts

    def test_one_client_cannot_lock_everyone_out(self):
        self.coord.start()
        attacker = Attacker(self.evil.ns, self.coord.addr, API_PORT, ATTACK_CONNS).start()
        self.addCleanup(attacker.stop)
        wait_for(lambda: attacker.error or attacker.opened >= ATTACK_CONNS,
                 what="the attacker's connections opened")
        self.assertIsNone(attacker.error)
        time.sleep(1.0)  # let the server take them all in
        self.lab.note(f"attack on: {attacker.opened} opened, {attacker.open_now} open")

        results = []  # (status, seconds, path)
        for i in range(NORMAL_REQUESTS):
            path = NORMAL_PATHS[i % len(NORMAL_PATHS)]
            t0 = time.monotonic()
            try:
                r = self.good.get(path, to=self.coord, timeout=NORMAL_TIMEOUT)
                status = r.status
                if status == 503:
                    status = f"503 {r.body[:120]!r}"
            except OSError as e:
                status = f"error: {e!r}"
            results.append((status, time.monotonic() - t0, path))
            time.sleep(0.1)

        r = self.good.get("/metrics", to=self.coord, timeout=NORMAL_TIMEOUT)
        metrics = r.body.decode() if r.status == 200 else ""
        attacker.stop()
        self.assertIsNone(attacker.error)

        lat = sorted(t for _, t, _ in results)
        print(f"\n  attacker: {attacker.opened} connections opened, "
              f"{attacker.closed_by_server} closed by the server "
              f"({attacker.refused_503} with a 503), {attacker.open_now} open at the end",
              file=sys.stderr)
        print(f"  normal client: {len(results)} requests; latency min "
              f"{lat[0] * 1000:.1f} ms, median {statistics.median(lat) * 1000:.1f} ms, "
              f"p90 {lat[int(len(lat) * 0.9)] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms",
              file=sys.stderr)
        bad = [(s, round(t, 3), p) for s, t, p in results
               if not (isinstance(s, int) and 200 <= s < 300)]
        self.assertEqual(len(bad), 0, f"{len(bad)} of {len(results)} normal requests "
                                      f"failed under the attack: {bad[:3]}")
        self.assertEqual(r.status, 200, f"/metrics: {r!r}")
        limited = metric(metrics, 'proxystone_http_rejected_total{reason="client_limit"}')
        self.assertIsNotNone(limited, "no client_limit counter in /metrics")
        self.assertGreater(limited, 0)


if __name__ == "__main__":
    unittest.main()
