"""A real local cluster: a coordinator and workers on loopback, joined by
UDP gossip (SWIM + Lifeguard), the coordinator authoritative."""

import os
import signal
import socket
import tempfile
import unittest

from harness import Node, wait_for

# Long enough for a failure to be detected and disseminated at default
# settings many times over; tests poll and never assert on speed.
CLUSTER_DEADLINE = 60.0


def coordinator(tmp, **extra):
    return Node(tmp=tmp, extra=extra)


def worker(tmp, coord, **extra):
    settings = {"cluster_ip": f"127.0.0.1:{coord.port}",
                "coordinator_gossip": f"127.0.0.1:{coord.settings['gossip_port']}",
                "heartbeat_interval": "1"}
    settings.update(extra)
    return Node(tmp=tmp, role="worker", extra=settings)


def nodes(node, query=""):
    r = node.get("/api/cluster/nodes" + query)
    assert r.status == 200, r
    return r.json()


def status_of(node, node_id):
    for n in nodes(node)["nodes"]:
        if n["id"] == node_id:
            return n["status"]
    return None


def node_id(node):
    return node.get("/api/cluster/status").json()["status"]["id"]


class ClusterTest(unittest.TestCase):
    """One cluster for the read-mostly cases."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ps-cluster-")
        cls.coord = coordinator(cls.tmp).start()
        cls.workers = [worker(cls.tmp, cls.coord).start() for _ in range(2)]
        cls.ids = [node_id(w) for w in cls.workers]
        wait_for(lambda: all(status_of(cls.coord, i) == "active" for i in cls.ids),
                 timeout=CLUSTER_DEADLINE, what="workers registered and active")

    @classmethod
    def tearDownClass(cls):
        for i, n in enumerate([cls.coord] + cls.workers):
            n.save_log(f"cluster-{i}")
            n.stop()

    def test_cluster_forms(self):
        body = nodes(self.coord)
        self.assertEqual(body["total"], 3)
        roles = sorted(n["role"] for n in body["nodes"])
        self.assertEqual(roles, ["coordinator", "worker", "worker"])
        for w, wid in zip(self.workers, self.ids):
            n = self.coord.get(f"/api/cluster/nodes/{wid}").json()["node"]
            self.assertEqual(n["url"], f"http://127.0.0.1:{w.port}")
            self.assertEqual(n["role"], "worker")
            self.assertEqual(n["status"], "active")
            md = n["metadata"]
            self.assertIs(md["autoRegistered"], True)
            self.assertEqual(md["platform"], "linux")
            self.assertRegex(md["nodeVersion"], r"^\d+\.\d+\.\d+$")
            self.assertRegex(md["startTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

    def test_workers_serve_the_replica(self):
        cv = nodes(self.coord)["registryVersion"]
        for w in self.workers:
            wait_for(lambda: nodes(w)["registryVersion"] >= cv,
                     timeout=CLUSTER_DEADLINE, what="replica caught up")
            body = nodes(w)
            self.assertEqual(sorted(n["id"] for n in body["nodes"]),
                             sorted(n["id"] for n in nodes(self.coord)["nodes"]))
            one = w.get(f"/api/cluster/nodes/{self.ids[0]}")
            self.assertEqual(one.status, 200, one)

    def test_worker_status_and_health(self):
        for w in self.workers:
            st = w.get("/api/cluster/status").json()
            self.assertEqual(st["status"]["role"], "worker")
            self.assertEqual(st["config"]["coordinatorUrl"], f"http://127.0.0.1:{self.coord.port}")
            wait_for(lambda: w.get("/api/cluster/health").json()["health"]["coordinatorHealthy"],
                     timeout=CLUSTER_DEADLINE, what="coordinatorHealthy on a worker")

    def test_response_times_from_probes(self):
        def measured():
            h = self.coord.get("/api/cluster/health").json()["health"]
            rts = {n["id"]: n["responseTime"] for n in h["nodes"]}
            return all(isinstance(rts.get(i), (int, float)) and rts[i] >= 0 for i in self.ids)
        wait_for(measured, timeout=CLUSTER_DEADLINE, what="probe RTTs in /health")

    def test_writes_on_a_worker_name_the_coordinator(self):
        w = self.workers[0]
        for method, path, body in [("POST", "/api/cluster/register", {"url": "http://x:1"}),
                                   ("POST", f"/api/cluster/heartbeat/{self.ids[1]}", {}),
                                   ("DELETE", f"/api/cluster/nodes/{self.ids[1]}", None)]:
            r = w.request(method, path, body=body)
            self.assertEqual(r.status, 409, r)
            b = r.json()
            self.assertEqual(b["code"], "NOT_COORDINATOR")
            self.assertEqual(b["details"]["coordinatorUrl"], f"http://127.0.0.1:{self.coord.port}")
            self.assertIn(f"127.0.0.1:{self.coord.port}", b["message"])
        # Nothing was applied anywhere.
        self.assertEqual(status_of(self.coord, self.ids[1]), "active")

    def test_maintenance_on_a_worker_reaches_the_coordinator(self):
        w, wid = self.workers[1], self.ids[1]
        try:
            self.assertEqual(w.post("/api/cluster/disable-serving").status, 200)
            wait_for(lambda: status_of(self.coord, wid) == "disabled",
                     timeout=CLUSTER_DEADLINE, what="disabled on the coordinator")
        finally:
            self.assertEqual(w.post("/api/cluster/enable-serving").status, 200)
        wait_for(lambda: status_of(self.coord, wid) == "active",
                 timeout=CLUSTER_DEADLINE, what="active again on the coordinator")

    def test_gossip_metrics_and_bad_datagrams(self):
        port = int(self.coord.settings["gossip_port"])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for payload in [b"", b"\x00", b"garbage" * 10, os.urandom(1200), os.urandom(1400)]:
                s.sendto(payload, ("127.0.0.1", port))

        def dropped():
            m = self.coord.get("/metrics").body.decode()
            for line in m.splitlines():
                if line.startswith('proxystone_gossip_dropped_total{reason="malformed"}'):
                    return float(line.split()[-1]) >= 3
            return False
        wait_for(dropped, what="malformed datagrams counted")
        m = self.coord.get("/metrics").body.decode()
        self.assertRegex(m, r'proxystone_gossip_packets_total\{dir="received"\} [1-9]')
        self.assertRegex(m, r'proxystone_gossip_members\{status="alive"\} [1-9]')
        # Still healthy.
        self.assertEqual(status_of(self.coord, self.ids[0]), "active")


class LifecycleTest(unittest.TestCase):
    """Failures and restarts, each on its own cluster."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ps-life-")
        self.all = []

    def tearDown(self):
        for i, n in enumerate(self.all):
            n.save_log(f"life-{self._testMethodName}-{i}")
            n.stop()

    def start(self, node):
        self.all.append(node)
        return node.start()

    def form(self, n_workers=2):
        coord = self.start(coordinator(self.tmp))
        ws = [self.start(worker(self.tmp, coord)) for _ in range(n_workers)]
        ids = [node_id(w) for w in ws]
        wait_for(lambda: all(status_of(coord, i) == "active" for i in ids),
                 timeout=CLUSTER_DEADLINE, what="cluster formed")
        return coord, ws, ids

    def test_sigterm_gives_left(self):
        coord, ws, ids = self.form()
        self.assertEqual(ws[0].stop(), 0)
        wait_for(lambda: status_of(coord, ids[0]) == "left",
                 timeout=CLUSTER_DEADLINE, what="left after SIGTERM")
        self.assertEqual(status_of(coord, ids[1]), "active")

    def test_kill9_detected_and_restart_keeps_identity(self):
        coord, ws, ids = self.form()
        ws[0].kill9()
        wait_for(lambda: status_of(coord, ids[0]) == "inactive",
                 timeout=CLUSTER_DEADLINE, what="killed worker inactive")
        self.assertEqual(status_of(coord, ids[1]), "active")
        # The other worker learns it too, from its replica.
        wait_for(lambda: status_of(ws[1], ids[0]) == "inactive",
                 timeout=CLUSTER_DEADLINE, what="worker replica shows inactive")
        ws[0].start()
        self.assertEqual(node_id(ws[0]), ids[0])
        wait_for(lambda: status_of(coord, ids[0]) == "active",
                 timeout=CLUSTER_DEADLINE, what="restarted worker active")
        self.assertEqual(nodes(coord)["total"], 3)

    def test_worker_before_coordinator(self):
        coord = coordinator(self.tmp)
        w = self.start(worker(self.tmp, coord))
        wid = node_id(w)
        self.start(coord)
        wait_for(lambda: status_of(coord, wid) == "active",
                 timeout=CLUSTER_DEADLINE, what="late coordinator sees the worker")

    def test_coordinator_restart_keeps_registry(self):
        coord, ws, ids = self.form()
        r = coord.post("/api/cluster/register", {"id": "http-only", "url": "http://10.0.0.9:1"})
        self.assertEqual(r.status, 200)
        coord.kill9()
        coord.start()
        body = nodes(coord)
        self.assertTrue({"http-only", *ids} <= {n["id"] for n in body["nodes"]})
        wait_for(lambda: all(status_of(coord, i) == "active" for i in ids),
                 timeout=CLUSTER_DEADLINE, what="workers active after coordinator restart")
        self.assertEqual(nodes(coord)["total"], 4)


class TokenClusterTest(unittest.TestCase):
    def test_replica_with_protected_reads(self):
        tmp = tempfile.mkdtemp(prefix="ps-tok-")
        tok = {"api_token": "cluster-token-0123456789", "api_token_reads": "true"}
        auth = {"Authorization": "Bearer " + tok["api_token"]}
        coord = coordinator(tmp, **tok).start(wait=False)
        w = worker(tmp, coord, **tok).start(wait=False)
        try:
            def replica_size():
                r = w.get("/api/cluster/nodes", headers=auth)
                return r.status == 200 and r.json()["total"] == 2
            wait_for(replica_size, timeout=CLUSTER_DEADLINE,
                     what="worker replica fetched with the token")
            self.assertEqual(w.get("/api/cluster/nodes").status, 401)
        finally:
            for n in (w, coord):
                n.save_log("token-cluster")
                n.stop()


def metric(node, name, labels=""):
    want = f"{name}{{{labels}}}" if labels else name
    for line in node.get("/metrics").body.decode().splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return None


class EncryptionTest(unittest.TestCase):
    K1 = "11" * 32
    K2 = "22" * 32

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ps-key-")
        self.nodes = []

    def tearDown(self):
        for i, n in enumerate(self.nodes):
            n.save_log(f"key-{self._testMethodName}-{i}")
            n.stop()

    def start(self, node):
        self.nodes.append(node)
        return node.start()

    def test_shared_key_forms_and_strangers_are_dropped(self):
        coord = self.start(coordinator(self.tmp, gossip_key=self.K1))
        w = self.start(worker(self.tmp, coord, gossip_key=self.K1))
        wid = node_id(w)
        wait_for(lambda: status_of(coord, wid) == "active", timeout=CLUSTER_DEADLINE,
                 what="encrypted worker joined")
        self.assertIn("encrypted", coord.log())
        wrong = self.start(worker(self.tmp, coord, gossip_key=self.K2))
        plain = self.start(worker(self.tmp, coord))
        wait_for(lambda: (metric(coord, "proxystone_gossip_dropped_total",
                                 'reason="auth"') or 0) >= 4,
                 what="unauthenticated datagrams counted")
        ids = {n["id"] for n in nodes(coord)["nodes"]}
        self.assertNotIn(node_id(wrong), ids)
        self.assertNotIn(node_id(plain), ids)
        self.assertEqual(status_of(coord, wid), "active")

    def test_rotation_with_a_keyring(self):
        # Mid-rotation: the coordinator already sends with K2, the worker
        # still with K1; each accepts both.
        coord = self.start(coordinator(self.tmp, gossip_key=f"{self.K2},{self.K1}"))
        w = self.start(worker(self.tmp, coord, gossip_key=f"{self.K1},{self.K2}"))
        wid = node_id(w)
        wait_for(lambda: status_of(coord, wid) == "active", timeout=CLUSTER_DEADLINE,
                 what="worker joined across a key rotation")
        self.assertEqual(metric(coord, "proxystone_gossip_dropped_total", 'reason="auth"'), 0)


class ClusterIdTest(unittest.TestCase):
    def test_other_cluster_is_dropped_and_counted(self):
        tmp = tempfile.mkdtemp(prefix="ps-cid-")
        coord = coordinator(tmp).start()
        stranger = worker(tmp, coord, cluster_id="other-cluster").start()
        try:
            def counted():
                m = coord.get("/metrics").body.decode()
                for line in m.splitlines():
                    if line.startswith('proxystone_gossip_dropped_total{reason="bad_cluster"}'):
                        return float(line.split()[-1]) >= 1
                return False
            wait_for(counted, what="other cluster's datagrams counted")
            self.assertEqual(nodes(coord)["total"], 1)
        finally:
            stranger.stop()
            coord.save_log("cid")
            coord.stop()


if __name__ == "__main__":
    unittest.main()
