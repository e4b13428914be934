"""Every endpoint of spec/CLUSTER_API.md and every error case, against the
real bin/proxystone over real HTTP."""

import json
import re
import socket
import time
import unittest

from harness import Node, wait_for

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

SPEC_REGISTER = {
    "id": "a51c132e-4b71-409c-bf6d-98b5bbc2d2a9",
    "url": "http://127.0.0.1:4402",
    "clusterId": "default-cluster",
    "role": "worker",
    "capabilities": {},
    "tags": [],
    "metadata": {
        "autoRegistered": True,
        "nodeVersion": "v18.17.0",
        "platform": "linux",
        "startTime": "2024-01-15T10:30:00.000Z",
    },
}


class ApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node(extra={"node_timeout": "60", "max_body_bytes": "4096",
                               "max_metadata_bytes": "1024"}).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.save_log("api")
        cls.assert_rc = cls.node.stop()

    def assertError(self, r, status, code):
        self.assertEqual(r.status, status, r)
        body = r.json()
        self.assertEqual(set(body), {"success", "error", "message", "code", "details"}, body)
        self.assertIs(body["success"], False)
        self.assertEqual(body["code"], code, body)
        self.assertIsInstance(body["message"], str)
        self.assertTrue(body["message"])
        self.assertIsInstance(body["error"], str)
        self.assertIsInstance(body["details"], dict)
        self.assertEqual(r.headers.get("content-type"), "application/json")
        return body

    def register(self, **over):
        body = dict(SPEC_REGISTER)
        body.update(over)
        r = self.node.post("/api/cluster/register", body)
        self.assertEqual(r.status, 200, r)
        return r.json()["node"]

    def nodes(self, query=""):
        r = self.node.get("/api/cluster/nodes" + query)
        self.assertEqual(r.status, 200, r)
        return r.json()

    # --- the spec's endpoints -------------------------------------------

    def test_coordinator_registers_itself(self):
        body = self.nodes()
        coords = [n for n in body["nodes"] if n["role"] == "coordinator"]
        self.assertEqual(len(coords), 1)
        c = coords[0]
        self.assertTrue(UUID.match(c["id"]), c)
        self.assertEqual(c["url"], f"http://127.0.0.1:{self.node.port}")
        self.assertEqual(c["clusterId"], "default-cluster")
        self.assertEqual(c["status"], "active")
        self.assertTrue(ISO.match(c["lastSeen"]) and ISO.match(c["createdAt"]))
        self.assertEqual(body["total"], len(body["nodes"]))

    def test_register_spec_example(self):
        n = self.register()
        for k in ("id", "url", "clusterId", "status", "role", "lastSeen", "createdAt"):
            self.assertIn(k, n)
        self.assertEqual(n["id"], SPEC_REGISTER["id"])
        self.assertEqual(n["url"], "http://127.0.0.1:4402")
        self.assertEqual(n["status"], "active")
        self.assertEqual(n["role"], "worker")
        self.assertEqual(n["metadata"], SPEC_REGISTER["metadata"])
        self.assertTrue(ISO.match(n["lastSeen"]))

    def test_register_generates_uuid_and_keeps_fields(self):
        meta = {"nested": {"a": [1, 2.5, None, True, "x\"y\\z\u00e9"]}, "n": -3e-7}
        r = self.node.post("/api/cluster/register", {
            "url": "https://worker.example:8443/base", "tags": ["eu", "ssd"],
            "capabilities": {"proxy": True, "cache": False}, "metadata": meta})
        self.assertEqual(r.status, 200, r)
        n = r.json()["node"]
        self.assertTrue(UUID.match(n["id"]), n["id"])
        self.assertEqual(n["role"], "worker")
        self.assertEqual(n["clusterId"], "default-cluster")
        self.assertEqual(n["tags"], ["eu", "ssd"])
        self.assertEqual(n["capabilities"], {"proxy": True, "cache": False})
        self.assertEqual(n["metadata"], meta)
        got = self.node.get(f"/api/cluster/nodes/{n['id']}")
        self.assertEqual(got.status, 200, got)
        self.assertEqual(got.json()["node"], n | {"lastSeen": got.json()["node"]["lastSeen"]})

    def test_reregister_updates_without_duplicate(self):
        self.register(id="re-reg-1", url="http://10.0.0.1:1")
        first = self.node.get("/api/cluster/nodes/re-reg-1").json()["node"]
        time.sleep(0.01)
        n = self.register(id="re-reg-1", url="http://10.0.0.2:2", tags=["new"])
        self.assertEqual(n["url"], "http://10.0.0.2:2")
        self.assertEqual(n["tags"], ["new"])
        self.assertEqual(n["createdAt"], first["createdAt"])
        ids = [x["id"] for x in self.nodes()["nodes"]]
        self.assertEqual(ids.count("re-reg-1"), 1)

    def test_heartbeat(self):
        self.register(id="hb-1", metadata={"keep": 1, "load": 0.1})
        before = self.node.get("/api/cluster/nodes/hb-1").json()["node"]
        time.sleep(0.01)
        r = self.node.post("/api/cluster/heartbeat/hb-1",
                           {"status": "active", "metadata": {"load": 0.45, "memory": 0.68,
                                                             "connections": 142}})
        self.assertEqual(r.status, 200, r)
        body = r.json()
        self.assertEqual(body["success"], True)
        self.assertEqual(body["acknowledged"], True)
        self.assertTrue(ISO.match(body["timestamp"]))
        after = self.node.get("/api/cluster/nodes/hb-1").json()["node"]
        self.assertGreater(after["lastSeen"], before["lastSeen"])
        self.assertEqual(after["metadata"], {"keep": 1, "load": 0.45, "memory": 0.68,
                                             "connections": 142})
        r = self.node.post("/api/cluster/heartbeat/hb-1", {"status": "disabled"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.node.get("/api/cluster/nodes/hb-1").json()["node"]["status"],
                         "disabled")
        # An empty body is a plain "I am alive".
        r = self.node.post("/api/cluster/heartbeat/hb-1")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.node.get("/api/cluster/nodes/hb-1").json()["node"]["status"],
                         "active")

    def test_heartbeat_unknown_node(self):
        self.assertError(self.node.post("/api/cluster/heartbeat/nobody", {"status": "active"}),
                         404, "NODE_NOT_FOUND")

    def test_heartbeat_bad_input(self):
        self.register(id="hb-bad")
        self.assertError(self.node.post("/api/cluster/heartbeat/hb-bad", {"status": "sleepy"}),
                         400, "VALIDATION_ERROR")
        self.assertError(self.node.post("/api/cluster/heartbeat/hb-bad", {"status": 1}),
                         400, "VALIDATION_ERROR")
        self.assertError(self.node.post("/api/cluster/heartbeat/hb-bad", {"metadata": [1]}),
                         400, "VALIDATION_ERROR")
        self.assertError(self.node.post("/api/cluster/heartbeat/hb-bad", "{nope"),
                         400, "INVALID_JSON")

    def test_get_and_delete_node(self):
        self.register(id="del-1")
        self.assertEqual(self.node.get("/api/cluster/nodes/del-1").status, 200)
        r = self.node.delete("/api/cluster/nodes/del-1")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json()["success"])
        self.assertError(self.node.get("/api/cluster/nodes/del-1"), 404, "NODE_NOT_FOUND")
        self.assertError(self.node.delete("/api/cluster/nodes/del-1"), 404, "NODE_NOT_FOUND")
        self.assertNotIn("del-1", [n["id"] for n in self.nodes()["nodes"]])

    def test_coordinator_cannot_delete_itself(self):
        me = self.node.get("/api/cluster/status").json()["status"]["id"]
        self.assertError(self.node.delete(f"/api/cluster/nodes/{me}"), 409, "CONFLICT")

    def test_filters(self):
        self.register(id="f-a", clusterId="blue", role="worker")
        self.register(id="f-b", clusterId="blue", role="worker")
        self.node.post("/api/cluster/heartbeat/f-b", {"status": "disabled"})
        blue = self.nodes("?clusterId=blue")["nodes"]
        self.assertEqual(sorted(n["id"] for n in blue), ["f-a", "f-b"])
        dis = self.nodes("?clusterId=blue&status=disabled")
        self.assertEqual([n["id"] for n in dis["nodes"]], ["f-b"])
        self.assertEqual(dis["total"], 1)
        coord = self.nodes("?role=coordinator")["nodes"]
        self.assertEqual([n["role"] for n in coord], ["coordinator"])
        self.assertError(self.node.get("/api/cluster/nodes?status=bogus"), 400,
                         "VALIDATION_ERROR")

    def test_status(self):
        r = self.node.get("/api/cluster/status")
        self.assertEqual(r.status, 200, r)
        b = r.json()
        self.assertIs(b["success"], True)
        st = b["status"]
        self.assertEqual(st["role"], "coordinator")
        self.assertEqual(st["url"], f"http://127.0.0.1:{self.node.port}")
        self.assertIn(st["status"], ("active", "disabled"))
        self.assertTrue(ISO.match(st["lastSeen"]))
        self.assertEqual(b["config"], {"enabled": True, "clusterId": "default-cluster",
                                       "coordinatorUrl": None, "heartbeatInterval": 30,
                                       "nodeTimeout": 60})
        self.assertIn(b["serviceStatus"]["mode"], ("serving", "maintenance"))
        self.assertTrue(ISO.match(b["serviceStatus"]["startTime"]))

    def test_health(self):
        r = self.node.get("/api/cluster/health")
        self.assertEqual(r.status, 200, r)
        h = r.json()["health"]
        nodes = self.nodes()["nodes"]
        self.assertEqual(h["totalNodes"], len(nodes))
        self.assertEqual(h["activeNodes"], sum(1 for n in nodes if n["status"] == "active"))
        self.assertEqual(h["inactiveNodes"], sum(1 for n in nodes if n["status"] == "inactive"))
        self.assertIs(h["coordinatorHealthy"], True)
        self.assertTrue(ISO.match(h["lastUpdate"]))
        me = [n for n in h["nodes"] if n["role"] == "coordinator"][0]
        self.assertIsInstance(me["responseTime"], (int, float))
        self.assertGreaterEqual(me["responseTime"], 0)
        for n in h["nodes"]:
            self.assertEqual(set(n), {"id", "status", "role", "responseTime"})

    def test_serving_modes(self):
        try:
            r = self.node.post("/api/cluster/disable-serving")
            self.assertEqual(r.status, 200, r)
            b = r.json()
            self.assertEqual(b["message"], "Cluster serving disabled (maintenance mode)")
            self.assertEqual(b["status"]["mode"], "maintenance")
            self.assertIs(b["status"]["enabled"], False)
            self.assertTrue(ISO.match(b["status"]["changedAt"]))
            ss = self.node.get("/api/cluster/service-status").json()
            self.assertEqual(ss["status"]["mode"], "maintenance")
            self.assertIs(ss["status"]["enabled"], False)
            self.assertEqual(ss["nodeStatus"]["status"], "disabled")
            self.assertEqual(ss["nodeStatus"]["role"], "coordinator")
            me = [n for n in self.nodes()["nodes"] if n["role"] == "coordinator"][0]
            self.assertEqual(me["status"], "disabled")
        finally:
            r = self.node.post("/api/cluster/enable-serving")
        self.assertEqual(r.status, 200, r)
        b = r.json()
        self.assertEqual(b["message"], "Cluster serving enabled")
        self.assertEqual(b["status"], {"mode": "serving", "enabled": True,
                                       "changedAt": b["status"]["changedAt"]})
        ss = self.node.get("/api/cluster/service-status").json()
        self.assertEqual(ss["status"]["mode"], "serving")
        self.assertTrue(ISO.match(ss["status"]["startTime"]))
        self.assertEqual(ss["nodeStatus"]["status"], "active")
        self.assertEqual(set(ss["nodeStatus"]), {"id", "status", "role", "lastSeen"})

    # --- errors ------------------------------------------------------------

    def test_register_validation(self):
        cases = [
            ({}, "url"),
            ({"url": 5}, "url"),
            ({"url": "ftp://x"}, "url"),
            ({"url": "http://"}, "url"),
            ({"url": "http://a", "id": 7}, "id"),
            ({"url": "http://a", "id": "has space"}, "id"),
            ({"url": "http://a", "id": "x" * 65}, "id"),
            ({"url": "http://a", "tags": "eu"}, "tags"),
            ({"url": "http://a", "tags": [1]}, "tags"),
            ({"url": "http://a", "capabilities": {"x": "yes"}}, "capabilities"),
            ({"url": "http://a", "capabilities": []}, "capabilities"),
            ({"url": "http://a", "metadata": "m"}, "metadata"),
            ({"url": "http://a", "metadata": {"big": "x" * 2000}}, "metadata"),
            ({"url": "http://a", "role": "king"}, "role"),
        ]
        before = self.nodes()["total"]
        for body, field in cases:
            with self.subTest(body=body):
                b = self.assertError(self.node.post("/api/cluster/register", body), 400,
                                     "VALIDATION_ERROR")
                self.assertEqual(b["details"].get("field"), field, b)
        self.assertEqual(self.nodes()["total"], before)

    def test_bad_json(self):
        for raw in ["{", "nope", "{\"url\": \"http://a\",}", "[1]", "\"str\"", "{\"a\":1}{}"]:
            with self.subTest(raw=raw):
                r = self.node.post("/api/cluster/register", raw)
                self.assertEqual(r.status, 400, r)
                self.assertIn(r.json()["code"], ("INVALID_JSON", "VALIDATION_ERROR"))
        self.assertError(self.node.post("/api/cluster/register", ""), 400, "VALIDATION_ERROR")

    def test_unknown_route_and_method(self):
        self.assertError(self.node.get("/api/cluster/nope"), 404, "NOT_FOUND")
        self.assertError(self.node.get("/"), 404, "NOT_FOUND")
        r = self.node.get("/api/cluster/register")
        self.assertError(r, 405, "METHOD_NOT_ALLOWED")
        self.assertIn("POST", r.headers["allow"])
        self.assertError(self.node.request("PUT", "/api/cluster/nodes"), 405,
                         "METHOD_NOT_ALLOWED")
        self.assertError(self.node.post("/api/cluster/status"), 405, "METHOD_NOT_ALLOWED")

    def test_body_too_large(self):
        r = self.node.post("/api/cluster/register", {"url": "http://a", "pad": "x" * 5000})
        self.assertError(r, 413, "PAYLOAD_TOO_LARGE")
        # The node is still fine.
        self.assertEqual(self.node.get("/api/cluster/nodes").status, 200)

    def test_cors(self):
        r = self.node.request("OPTIONS", "/api/cluster/register",
                              headers={"Origin": "http://localhost:4400",
                                       "Access-Control-Request-Method": "POST"})
        self.assertIn(r.status, (200, 204))
        self.assertEqual(r.headers.get("access-control-allow-origin"), "*")
        self.assertIn("POST", r.headers.get("access-control-allow-methods", ""))
        r = self.node.get("/api/cluster/nodes", headers={"Origin": "http://localhost:4400"})
        self.assertEqual(r.headers.get("access-control-allow-origin"), "*")

    def test_keepalive_and_pipelining(self):
        s = socket.create_connection(("127.0.0.1", self.node.port), timeout=10)
        try:
            reqs = b"".join(
                f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                for p in ["/api/cluster/status", "/api/cluster/nope", "/api/cluster/health"])
            s.sendall(reqs)
            data = b""
            end = time.monotonic() + 10
            while data.count(b"HTTP/1.1 ") < 3 and time.monotonic() < end:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            statuses = re.findall(rb"HTTP/1\.1 (\d{3})", data)
            self.assertEqual(statuses, [b"200", b"404", b"200"], data[:300])
            # Same connection still usable.
            s.sendall(b"GET /api/cluster/status HTTP/1.1\r\nHost: x\r\n\r\n")
            more = s.recv(65536)
            self.assertTrue(more.startswith(b"HTTP/1.1 200"), more[:100])
        finally:
            s.close()

    def test_output_stays_valid_json(self):
        hostile = "q\"uo\\te\n\t\u0001ctl\u2028</script>"
        self.register(id="hostile", metadata={hostile: hostile}, tags=[hostile])
        r = self.node.get("/api/cluster/nodes/hostile")
        n = json.loads(r.body)["node"]
        self.assertEqual(n["tags"], [hostile])
        self.assertEqual(n["metadata"], {hostile: hostile})

    def test_metrics(self):
        self.node.get("/api/cluster/nodes")
        self.node.get("/api/cluster/nope")
        r = self.node.get("/metrics")
        self.assertEqual(r.status, 200, r)
        text = r.body.decode()
        self.assertIn("text/plain", r.headers["content-type"])
        self.assertRegex(text, r'proxystone_http_requests_total\{route="/api/cluster/nodes",status="200"\} [1-9]')
        self.assertRegex(text, r'proxystone_http_requests_total\{route="unknown",status="404"\} [1-9]')
        self.assertRegex(text, r'proxystone_child_restarts_total\{role="membership"\} \d+')
        self.assertRegex(text, r'proxystone_ipc_errors_total\{reason="timeout"\} \d+')
        self.assertRegex(text, r'proxystone_registry_nodes [1-9]')
        self.assertIn("proxystone_membership_up 1", text)
        for line in text.splitlines():
            if line and not line.startswith("#"):
                self.assertRegex(line, r'^[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? -?[0-9.e+-]+$')


class ReadCacheTest(unittest.TestCase):
    """The api caches and shares identical reads; a change is never hidden."""

    def metric(self, node, result):
        for line in node.get("/metrics").body.decode().splitlines():
            if line.startswith(f'proxystone_http_cache_total{{result="{result}"}}'):
                return float(line.split()[-1])
        return 0.0

    def test_cache_never_hides_a_change(self):
        node = Node().start()
        try:
            for i in range(40):
                self.assertEqual(node.get("/api/cluster/nodes").status, 200)
                r = node.post("/api/cluster/register", {"id": f"rc-{i}", "url": f"http://10.2.0.{i}:1"})
                self.assertEqual(r.status, 200)
                ids = {n["id"] for n in node.get("/api/cluster/nodes").json()["nodes"]}
                self.assertIn(f"rc-{i}", ids)
                node.post("/api/cluster/heartbeat/rc-0", {"status": "disabled" if i % 2 else "active"})
                st = node.get("/api/cluster/nodes/rc-0").json()["node"]["status"]
                self.assertEqual(st, "disabled" if i % 2 else "active")
            for _ in range(5):
                node.get("/api/cluster/health")
            self.assertGreater(self.metric(node, "hit"), 0)
        finally:
            node.stop()

    def counter(self, node, name):
        for line in node.get("/metrics").body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        self.fail(f"{name} not in /metrics")

    def test_stale_copy_is_served_while_refreshed_and_bounded(self):
        """Past its 0.1 s TTL a cached read is still served (no client waits
        for membership) while one request renders the next copy; a copy
        older than 0.5 s is never served."""
        from datetime import datetime
        node = Node().start()
        try:
            seen = []
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                asked = time.time()
                r = node.get("/api/cluster/status")
                self.assertEqual(r.status, 200)
                last = r.json()["status"]["lastSeen"]
                seen.append((asked, datetime.fromisoformat(last.replace("Z", "+00:00"))
                             .timestamp()))
                time.sleep(0.01)
            # Rendered at most 0.5 s (API_CACHE_STALE_MAX) before it was
            # asked for; lastSeen has millisecond resolution.
            worst = max(asked - rendered for asked, rendered in seen)
            self.assertLess(worst, 0.5 + 0.002, f"a copy {worst:.3f} s old was served")
            # The copies moved on: 2 s of reads saw fresh renders.
            self.assertGreater(len({rendered for _, rendered in seen}), 3)
            self.assertGreater(self.counter(node, "proxystone_http_cache_refreshes_total"), 0)
            self.assertGreater(self.metric(node, "hit"), 0)
        finally:
            node.stop()

    def test_identical_concurrent_reads_agree(self):
        import threading
        node = Node().start()
        try:
            for i in range(200):
                node.post("/api/cluster/register", {"id": f"cc-{i}", "url": f"http://10.3.0.{i % 250}:1"})
            results, errors = [], []

            def reader():
                try:
                    for _ in range(20):
                        r = node.get("/api/cluster/nodes")
                        results.append((r.status, len(r.json()["nodes"])))
                except Exception as e:  # reported below
                    errors.append(e)
            threads = [threading.Thread(target=reader) for _ in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertFalse(errors, errors[:3])
            self.assertEqual(set(results), {(200, 201)})
            self.assertGreater(self.metric(node, "hit") + self.metric(node, "shared"), 0)
        finally:
            node.stop()


class TimeoutTest(unittest.TestCase):
    def test_node_goes_inactive_and_comes_back(self):
        node = Node(extra={"node_timeout": "1"}).start()
        try:
            r = node.post("/api/cluster/register", {"id": "sleepy", "url": "http://10.1.1.1:1"})
            self.assertEqual(r.status, 200, r)
            wait_for(lambda: node.get("/api/cluster/nodes/sleepy").json()["node"]["status"]
                     == "inactive", what="sleepy to become inactive")
            h = node.get("/api/cluster/health").json()["health"]
            self.assertGreaterEqual(h["inactiveNodes"], 1)
            # The coordinator itself never times out.
            me = node.get("/api/cluster/status").json()["status"]
            self.assertEqual(me["status"], "active")
            node.post("/api/cluster/heartbeat/sleepy", {"status": "active"})
            self.assertEqual(node.get("/api/cluster/nodes/sleepy").json()["node"]["status"],
                             "active")
        finally:
            node.save_log("timeout")
            node.stop()


class DisabledClusterTest(unittest.TestCase):
    def test_cluster_disabled_answers_503(self):
        node = Node(extra={"cluster_enabled": "false"}).start()
        try:
            r = node.get("/api/cluster/nodes")
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json()["code"], "CLUSTER_DISABLED")
            st = node.get("/api/cluster/status").json()
            self.assertIs(st["config"]["enabled"], False)
        finally:
            node.stop()


if __name__ == "__main__":
    unittest.main()


class TokenTest(unittest.TestCase):
    TOKEN = "s3cret-token-0123456789"

    def test_writes_need_the_token(self):
        node = Node(extra={"api_token": self.TOKEN}).start()
        try:
            r = node.post("/api/cluster/register", {"url": "http://a:1"})
            self.assertEqual(r.status, 401, r)
            b = r.json()
            self.assertEqual(b["code"], "UNAUTHORIZED")
            self.assertEqual(set(b), {"success", "error", "message", "code", "details"})
            self.assertIn("Bearer", r.headers.get("www-authenticate", ""))
            for bad in ["Bearer wrong", "Bearer " + self.TOKEN[:-1], "Bearer " + self.TOKEN + "x",
                        "Basic " + self.TOKEN, self.TOKEN]:
                r = node.post("/api/cluster/register", {"url": "http://a:1"},
                              headers={"Authorization": bad})
                self.assertEqual(r.status, 401, bad)
            r = node.post("/api/cluster/register", {"id": "tok", "url": "http://a:1"},
                          headers={"Authorization": "Bearer " + self.TOKEN})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(node.delete("/api/cluster/nodes/tok").status, 401)
            # Reads stay open unless api_token_reads is set.
            self.assertEqual(node.get("/api/cluster/nodes").status, 200)
            # CORS preflight never needs the token.
            r = node.request("OPTIONS", "/api/cluster/register")
            self.assertIn(r.status, (200, 204))
            m = node.get("/metrics").body.decode()
            self.assertRegex(m, r"proxystone_http_unauthorized_total [1-9]")
        finally:
            node.stop()

    def test_reads_can_need_it_too(self):
        node = Node(extra={"api_token": self.TOKEN, "api_token_reads": "true"}).start(wait=False)
        try:
            auth = {"Authorization": "Bearer " + self.TOKEN}
            wait_for(lambda: node.get("/api/cluster/status", headers=auth).status == 200,
                     what="node serving")
            self.assertEqual(node.get("/api/cluster/nodes").status, 401)
            self.assertEqual(node.get("/api/cluster/nodes", headers=auth).status, 200)
        finally:
            node.stop()
