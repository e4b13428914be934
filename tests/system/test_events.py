"""GET /api/cluster/events: Server-Sent Events of registry, node and
service changes, on the coordinator and on workers."""

import http.client
import json
import socket
import tempfile
import time
import unittest

from harness import Node, wait_for
from test_cluster import coordinator, node_id, worker, CLUSTER_DEADLINE


class SSE:
    """A minimal EventSource: reads events from a streaming response."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLUSTER_DEADLINE)
        self.conn.request("GET", "/api/cluster/events", headers={"Accept": "text/event-stream"})
        self.resp = self.conn.getresponse()
        self.buf = b""

    def next(self, deadline=CLUSTER_DEADLINE):
        """The next (event, data) pair; comments and retry lines skipped."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if b"\n\n" in self.buf:
                block, self.buf = self.buf.split(b"\n\n", 1)
                ev, data = None, None
                for line in block.decode().split("\n"):
                    if line.startswith("event: "):
                        ev = line[7:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                if ev:
                    return ev, data
                continue
            chunk = self.resp.fp.read1(65536)
            if not chunk:
                raise AssertionError("event stream closed")
            self.buf += chunk
        raise AssertionError("no event before the deadline")

    def until(self, pred, deadline=CLUSTER_DEADLINE):
        end = time.monotonic() + deadline
        seen = []
        while time.monotonic() < end:
            ev, data = self.next(end - time.monotonic())
            seen.append((ev, data))
            if pred(ev, data):
                return data
        raise AssertionError(f"no matching event; saw {seen[-5:]}")

    def close(self):
        self.conn.close()


class EventsTest(unittest.TestCase):
    def test_coordinator_events(self):
        node = Node().start()
        try:
            s = SSE(node.port)
            self.assertEqual(s.resp.status, 200)
            self.assertTrue(s.resp.getheader("content-type").startswith("text/event-stream"))
            self.assertEqual(s.resp.getheader("access-control-allow-origin"), "*")
            ev, hello = s.next()
            self.assertEqual(ev, "hello")
            self.assertEqual(hello["role"], "coordinator")
            self.assertEqual(hello["nodeId"], node_id(node))
            node.post("/api/cluster/register", {"id": "sse-1", "url": "http://10.0.0.1:1"})
            d = s.until(lambda e, d: e == "node" and d["id"] == "sse-1")
            self.assertEqual(d["type"], "registered")
            self.assertEqual(d["node"]["url"], "http://10.0.0.1:1")
            s.until(lambda e, d: e == "registry" and d["registryVersion"] > hello["registryVersion"])
            node.post("/api/cluster/heartbeat/sse-1", {"status": "disabled"})
            d = s.until(lambda e, d: e == "node" and d.get("type") == "status")
            self.assertEqual(d["status"], "disabled")
            node.post("/api/cluster/disable-serving")
            d = s.until(lambda e, d: e == "service")
            self.assertEqual(d["mode"], "maintenance")
            self.assertIs(d["enabled"], False)
            node.delete("/api/cluster/nodes/sse-1")
            d = s.until(lambda e, d: e == "node" and d["type"] == "removed")
            self.assertEqual(d["id"], "sse-1")
            # Two streams at once both get events.
            s2 = SSE(node.port)
            self.assertEqual(s2.next()[0], "hello")
            node.post("/api/cluster/register", {"id": "sse-2", "url": "http://10.0.0.2:1"})
            for stream in (s, s2):
                stream.until(lambda e, d: e == "node" and d["id"] == "sse-2")
            s.close()
            s2.close()
            # Closed streams are forgotten; the node keeps serving.
            self.assertEqual(node.get("/api/cluster/nodes").status, 200)
        finally:
            node.save_log("events")
            node.stop()

    def test_worker_events_follow_the_replica(self):
        tmp = tempfile.mkdtemp(prefix="ps-sse-")
        coord = coordinator(tmp).start()
        w = worker(tmp, coord).start()
        try:
            wid = node_id(w)
            wait_for(lambda: any(n["id"] == wid for n in coord.get("/api/cluster/nodes").json()["nodes"]),
                     timeout=CLUSTER_DEADLINE, what="worker registered")
            s = SSE(w.port)
            ev, hello = s.next()
            self.assertEqual((ev, hello["role"]), ("hello", "worker"))
            coord.post("/api/cluster/register", {"id": "via-coord", "url": "http://10.0.0.3:1"})
            cv = coord.get("/api/cluster/nodes").json()["registryVersion"]
            s.until(lambda e, d: e == "registry" and d["registryVersion"] >= cv)
            w.post("/api/cluster/disable-serving")
            self.assertEqual(s.until(lambda e, d: e == "service")["mode"], "maintenance")
            s.close()
        finally:
            for n in (w, coord):
                n.save_log("events-worker")
                n.stop()


if __name__ == "__main__":
    unittest.main()
