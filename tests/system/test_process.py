"""The process shape: supervisor, restarts, ordered stop, persistence across
kill -9 of each child and of the whole tree."""

import os
import signal
import subprocess
import threading
import time
import unittest

from harness import BIN, Node, alive, cmdline, wait_for


def register(node, i, prefix="p"):
    return node.post("/api/cluster/register",
                     {"id": f"{prefix}-{i}", "url": f"http://10.9.{i // 250}.{i % 250}:80"})


class SupervisorTest(unittest.TestCase):
    def setUp(self):
        self.node = Node().start()

    def tearDown(self):
        self.node.save_log(f"process-{self._testMethodName}")
        self.node.stop()

    def test_ps_shows_roles(self):
        kids = wait_for(lambda: len(self.node.children()) == 2 and self.node.children(),
                        what="two children")
        self.assertEqual(set(kids), {"membership", "api"})
        for role, pid in kids.items():
            self.assertIn(f"proxystone: {role}", cmdline(pid))
        self.assertIn("ready", self.node.log())

    def test_kill9_membership_recovers_without_loss(self):
        for i in range(20):
            self.assertEqual(register(self.node, i).status, 200)
        me = self.node.get("/api/cluster/status").json()["status"]["id"]
        old = self.node.children()["membership"]
        os.kill(old, signal.SIGKILL)
        # While it is down the api answers fast with 503 or, once back, 200.
        r = self.node.get("/api/cluster/nodes", timeout=5)
        self.assertIn(r.status, (200, 503), r)
        if r.status == 503:
            self.assertEqual(r.json()["code"], "MEMBERSHIP_UNAVAILABLE")
        wait_for(lambda: self.node.children().get("membership") not in (None, old),
                 what="membership restarted")
        wait_for(lambda: self.node.get("/api/cluster/nodes").status == 200,
                 what="api serving again")
        ids = {n["id"] for n in self.node.get("/api/cluster/nodes").json()["nodes"]}
        for i in range(20):
            self.assertIn(f"p-{i}", ids)
        self.assertEqual(self.node.get("/api/cluster/status").json()["status"]["id"], me)
        self.assertIn("membership killed by signal 9", self.node.log())
        m = self.node.get("/metrics").body.decode()
        self.assertRegex(m, r'proxystone_child_restarts_total\{role="membership"\} [1-9]')

    def test_kill9_api_restarts(self):
        old = self.node.children()["api"]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: self.node.children().get("api") not in (None, old),
                 what="api restarted")
        wait_for(lambda: self.node.get("/api/cluster/nodes").status == 200,
                 what="api serving again")
        self.assertIn("api killed by signal 9", self.node.log())

    def test_sigterm_leaves_nothing(self):
        tree = self.node.tree()
        self.assertEqual(len(tree), 3)
        rc = self.node.stop()
        self.assertEqual(rc, 0)
        wait_for(lambda: not any(alive(p) for p in tree), what="every process gone")
        self.assertFalse(os.path.exists(os.path.join(self.node.data_dir, "membership.sock")))


class PersistenceTest(unittest.TestCase):
    def test_kill9_whole_tree_keeps_everything(self):
        node = Node().start()
        try:
            for i in range(30):
                self.assertEqual(register(node, i, "t").status, 200)
            node.post("/api/cluster/disable-serving")
            me = node.get("/api/cluster/status").json()["status"]["id"]
            node.kill9()
            node.start()
            body = node.get("/api/cluster/nodes").json()
            ids = {n["id"] for n in body["nodes"]}
            for i in range(30):
                self.assertIn(f"t-{i}", ids)
            self.assertEqual(node.get("/api/cluster/status").json()["status"]["id"], me)
            self.assertEqual(sum(1 for n in body["nodes"] if n["role"] == "coordinator"), 1)
            ss = node.get("/api/cluster/service-status").json()
            self.assertEqual(ss["status"]["mode"], "maintenance")
            self.assertEqual(ss["nodeStatus"]["status"], "disabled")
        finally:
            node.save_log("persist-tree")
            node.stop()

    def test_acknowledged_registrations_survive_kills_under_load(self):
        """Clients register concurrently while membership, then the whole
        tree, are killed -9: every registration answered 200 is there."""
        node = Node().start()
        acked = set()
        lock = threading.Lock()
        stop = threading.Event()

        def client(k):
            i = 0
            while not stop.is_set() and i < 2000:  # bounded load loop
                try:
                    r = register(node, i, f"c{k}")
                    if r.status == 200:
                        with lock:
                            acked.add(f"c{k}-{i}")
                except OSError:
                    time.sleep(0.01)
                i += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        try:
            for t in threads:
                t.start()
            wait_for(lambda: len(acked) > 50, what="some registrations")
            os.kill(node.children()["membership"], signal.SIGKILL)
            wait_for(lambda: len(acked) > 150, what="registrations after restart")
            node.kill9()
            stop.set()
            for t in threads:
                t.join()
            node.start()
            ids = {n["id"] for n in node.get("/api/cluster/nodes").json()["nodes"]}
            missing = acked - ids
            self.assertFalse(missing, f"{len(missing)} acknowledged registrations lost")
        finally:
            stop.set()
            node.save_log("persist-load")
            node.stop()

    def test_damaged_snapshot_is_detected(self):
        node = Node().start()
        try:
            self.assertEqual(register(node, 1, "d").status, 200)
            self.assertEqual(register(node, 2, "d").status, 200)
            node.stop()
            snap = os.path.join(node.data_dir, "registry.snap")
            with open(snap, "r+b") as f:
                f.seek(40)
                b = f.read(1)
                f.seek(40)
                f.write(bytes([b[0] ^ 0xFF]))
            node.start()
            self.assertIn("damaged snapshot", node.log())
            # The previous good snapshot is used; it holds at least d-1.
            ids = {n["id"] for n in node.get("/api/cluster/nodes").json()["nodes"]}
            self.assertIn("d-1", ids)
            self.assertTrue(any(f.startswith("registry.snap.damaged-")
                                for f in os.listdir(node.data_dir)))
        finally:
            node.save_log("damaged")
            node.stop()


class CommandLineTest(unittest.TestCase):
    def run_bin(self, *args):
        return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=20)

    def test_help_and_version(self):
        r = self.run_bin("--help")
        self.assertEqual(r.returncode, 0)
        for flag in ("--config", "--port", "--cluster-ip", "--data-dir"):
            self.assertIn(flag, r.stdout)
        r = self.run_bin("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^proxystone \d+\.\d+\.\d+")

    def test_bad_flag(self):
        r = self.run_bin("--bogus")
        self.assertEqual(r.returncode, 2)
        self.assertIn("bogus", r.stderr)

    def test_config_errors_name_file_line_key(self):
        node = Node()
        with open(node.conf, "a") as f:
            f.write("\n# comment\nfrobnicate = 3\n")
        r = self.run_bin("--config", node.conf)
        self.assertEqual(r.returncode, 2)
        lines = open(node.conf).read().splitlines()
        self.assertIn(f"{node.conf}:{len(lines)}: frobnicate", r.stderr)
        node.settings["api_port"] = "99999"
        node.write_conf()
        r = self.run_bin("--config", node.conf)
        self.assertEqual(r.returncode, 2)
        self.assertIn(f"{node.conf}:2: api_port", r.stderr)

    def test_flags_override_file(self):
        node = Node()
        other = Node()
        node.start(wait=False, args=("--port", str(other.port)))
        try:
            wait_for(lambda: other.get("/api/cluster/status").status == 200,
                     what="node on the flag's port")
        finally:
            node.stop()


if __name__ == "__main__":
    unittest.main()


class UnavailableTest(unittest.TestCase):
    def test_stalled_membership_gives_503_not_a_hang(self):
        node = Node(extra={"ipc_timeout": "0.5"}).start()
        try:
            pid = node.children()["membership"]
            os.kill(pid, signal.SIGSTOP)
            try:
                r = node.get("/api/cluster/nodes", timeout=10)
                self.assertEqual(r.status, 503, r)
                self.assertEqual(r.json()["code"], "MEMBERSHIP_UNAVAILABLE")
                self.assertEqual(r.headers.get("retry-after"), "1")
                r = node.post("/api/cluster/register", {"url": "http://x:1"}, timeout=10)
                self.assertEqual(r.status, 503, r)
            finally:
                os.kill(pid, signal.SIGCONT)
            wait_for(lambda: node.get("/api/cluster/nodes").status == 200,
                     what="membership answering again")
            m = node.get("/metrics").body.decode()
            self.assertRegex(m, r'proxystone_ipc_errors_total\{reason="timeout"\} [1-9]')
        finally:
            node.save_log("stalled")
            node.stop()


class NotifyTest(unittest.TestCase):
    def test_systemd_notify_ready(self):
        import socket as so
        import tempfile
        path = os.path.join(tempfile.mkdtemp(prefix="ps-notify-"), "notify.sock")
        s = so.socket(so.AF_UNIX, so.SOCK_DGRAM)
        s.bind(path)
        s.settimeout(20)
        node = Node()
        env = dict(os.environ, NOTIFY_SOCKET=path)
        node.logf = open(node.log_path, "ab")
        node.proc = subprocess.Popen([BIN, "--config", node.conf], env=env,
                                     stdout=node.logf, stderr=subprocess.STDOUT)
        try:
            msgs = []
            end = time.monotonic() + 20
            while not any(b"READY=1" in m for m in msgs) and time.monotonic() < end:
                msgs.append(s.recv(4096))
            self.assertTrue(any(b"READY=1" in m for m in msgs), msgs)
            # Ready means serving.
            self.assertEqual(node.get("/api/cluster/status").status, 200)
            node.proc.send_signal(signal.SIGTERM)
            msgs = []
            while not any(b"STOPPING=1" in m for m in msgs) and time.monotonic() < end:
                msgs.append(s.recv(4096))
            self.assertTrue(any(b"STOPPING=1" in m for m in msgs), msgs)
            self.assertEqual(node.proc.wait(20), 0)
        finally:
            node.stop()
            s.close()
