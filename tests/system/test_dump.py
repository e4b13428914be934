"""bin/proxystone-dump against a live local cluster (a coordinator and two
workers joined by gossip): the member table, the live datagram stream and
its filters, several followers at once, a reader too slow to keep up, and
--decode of a datagram captured from a real node, of its truncated prefixes
and of random bytes."""

import json
import os
import random
import re
import selectors
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import BIN, DEADLINE, Node, free_port, wait_for
from test_cluster import CLUSTER_DEADLINE, coordinator, node_id, nodes, status_of, worker

DUMP = os.path.join(os.path.dirname(BIN), "proxystone-dump")

# "18:07:01.123 → 127.0.0.1:5402  ping  seq 17  61 B  3f2a1b2c alive 1, ..."
LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) ([→←]) (\S+) +(\S+) +seq (\S+) +(\d+) B(.*)$")
UPDATE = re.compile(r"^[0-9a-f]{8} (alive|suspect|dead|left) \d+$")
DROPPED = re.compile(r"^\(dropped (\d+) events?: reader too slow\)$")


def dump(*args, timeout=DEADLINE, stdin=None):
    return subprocess.run([DUMP, *args], capture_output=True, timeout=timeout, input=stdin)


class Follower:
    """A running `proxystone-dump --follow`, read line by line with deadlines."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([DUMP, "--follow", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.partial = b""
        self.lines = []

    def read_until(self, pred, timeout=DEADLINE):
        """Collects lines until pred(lines) holds; returns all lines so far."""
        end = time.monotonic() + timeout
        while not pred(self.lines):
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"follower: condition not met in {timeout}s; "
                                     f"{len(self.lines)} lines, last {self.lines[-5:]!r}, "
                                     f"exit {self.proc.poll()}")
            if not self.sel.select(timeout=min(left, 0.5)):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"follower ended (exit {self.proc.wait()}): "
                                     f"{self.proc.stderr.read()!r}")
            data = self.partial + chunk
            *whole, self.partial = data.split(b"\n")
            self.lines += [w.decode() for w in whole]
        return self.lines

    def read_for(self, seconds):
        end = time.monotonic() + seconds
        try:
            self.read_until(lambda _: time.monotonic() >= end, timeout=seconds + 1)
        except AssertionError:
            pass
        return self.lines

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
        self.proc.wait(DEADLINE)
        self.sel.close()
        self.proc.stdout.close()
        self.proc.stderr.close()


def parse(lines):
    """Trace lines as dicts; other lines (drop notices) are skipped."""
    out = []
    for line in lines:
        m = LINE.match(line)
        if m:
            rest = m.group(7)
            updates = []
            if rest.strip() and "DROPPED" not in rest and not rest.strip().startswith("for "):
                updates = [u.strip() for u in rest.strip().split(",")]
            out.append({"time": m.group(1), "dir": m.group(2), "peer": m.group(3),
                        "type": m.group(4), "seq": m.group(5), "size": int(m.group(6)),
                        "updates": updates, "dropped": "DROPPED" in rest})
    return out


class DumpClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ps-dump-")
        cls.coord = coordinator(cls.tmp).start()
        cls.workers = [worker(cls.tmp, cls.coord).start() for _ in range(2)]
        cls.coord_id = node_id(cls.coord)
        cls.ids = [node_id(w) for w in cls.workers]
        wait_for(lambda: all(status_of(cls.coord, i) == "active" for i in cls.ids),
                 timeout=CLUSTER_DEADLINE, what="workers registered and active")
        cls.gossip = {n: f"127.0.0.1:{n.settings['gossip_port']}"
                      for n in [cls.coord] + cls.workers}
        cls.worker_addrs = {cls.gossip[w] for w in cls.workers}

        def all_alive():
            r = dump("--config", cls.coord.conf, "--json")
            if r.returncode != 0:
                return False
            t = json.loads(r.stdout)
            return len(t["members"]) == 3 and all(m["status"] == "alive" for m in t["members"])
        wait_for(all_alive, timeout=CLUSTER_DEADLINE, what="three alive gossip members")

    @classmethod
    def tearDownClass(cls):
        for i, n in enumerate([cls.coord] + cls.workers):
            n.save_log(f"dump-{i}")
            n.stop()

    # ---- the member table ------------------------------------------------

    def table(self, node):
        r = dump("--config", node.conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, b"")
        return r.stdout.decode()

    def test_table_lists_every_member_alive(self):
        for node, self_id in [(self.coord, self.coord_id), (self.workers[0], self.ids[0])]:
            text = self.table(node)
            lines = text.splitlines()
            self.assertRegex(lines[0], rf"^node +{self_id} +(coordinator|worker) +http://")
            self.assertRegex(text, rf"(?m)^gossip +{re.escape(self.gossip[node])} +cluster \S+ "
                                   r"+incarnation \d+ +local health \d+")
            self.assertRegex(text, r"(?m)^registry +version \d+$")
            self.assertRegex(text, r"(?m)^members +3: 3 alive$")
            header = next(i for i, l in enumerate(lines) if l.startswith("ID "))
            for col in ["ADDRESS", "ROLE", "STATUS", "INCARNATION", "LAST HEARD", "PROBE RTT"]:
                self.assertIn(col, lines[header])
            rows = {l.split()[0]: l.split() for l in lines[header + 1:] if l.strip()}
            self.assertEqual(set(rows), {self.coord_id, *self.ids})
            for mid, row in rows.items():
                self.assertEqual(row[3], "alive", row)
            self.assertEqual(rows[self.coord_id][2], "coordinator")
            self.assertEqual(rows[self_id][5], "self")
            # Self first, its own gossip address.
            self.assertEqual(lines[header + 1].split()[0], self_id)
            self.assertEqual(rows[self_id][1], self.gossip[node])

    def test_json_table_matches_the_registry(self):
        r = dump("--socket", os.path.join(self.coord.data_dir, "membership.sock"), "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.decode().splitlines()
        self.assertEqual(len(lines), 1)
        t = json.loads(lines[0])
        self.assertEqual(t["self_id"], self.coord_id)
        api_ids = {n["id"] for n in nodes(self.coord)["nodes"]}
        self.assertEqual({m["id"] for m in t["members"]}, api_ids)
        self.assertEqual(t["gossip"]["addr"], self.gossip[self.coord])
        self.assertEqual(t["registry_version"], nodes(self.coord)["registryVersion"])
        self.assertIsInstance(t["gossip"]["local_health"], int)
        by_id = {m["id"]: m for m in t["members"]}
        self.assertEqual([m["id"] for m in t["members"] if m["is_self"]], [self.coord_id])
        for w, wid in zip(self.workers, self.ids):
            m = by_id[wid]
            self.assertEqual(m["status"], "alive")
            self.assertEqual(m["addr"], self.gossip[w])
            self.assertEqual(m["role"], "worker")
            self.assertEqual(m["meta"]["url"], f"http://127.0.0.1:{w.port}")
            self.assertGreaterEqual(m["incarnation"], 0)

    # ---- the stream --------------------------------------------------------

    def follow(self, *args, pred, timeout=CLUSTER_DEADLINE):
        f = Follower("--config", self.coord.conf, *args)
        try:
            return f.read_until(pred, timeout=timeout)
        finally:
            f.stop()

    def test_follow_shows_pings_and_acks_both_ways(self):
        def enough(lines):
            ev = parse(lines)
            seen = {(e["type"], e["dir"]) for e in ev}
            peers = {e["peer"] for e in ev if e["type"] in ("ping", "ack")}
            return ({("ping", "→"), ("ping", "←"), ("ack", "→"), ("ack", "←")} <= seen
                    and self.worker_addrs <= peers)
        lines = self.follow(pred=enough)
        ev = parse(lines)
        for line in lines:
            self.assertTrue(LINE.match(line) or DROPPED.match(line), line)
        for e in ev:
            if not e["dropped"]:
                # Datagrams from the cluster only (tests' junk is "DROPPED").
                self.assertIn(e["peer"], self.worker_addrs, e)
                self.assertRegex(e["seq"], r"^\d+$")
                self.assertGreater(e["size"], 0)
                for u in e["updates"]:
                    self.assertRegex(u, UPDATE)
        # An ack answers a ping with the same seq, in the other direction.
        pings = {(e["peer"], e["seq"]) for e in ev if e["type"] == "ping" and e["dir"] == "→"}
        acks = {(e["peer"], e["seq"]) for e in ev if e["type"] == "ack" and e["dir"] == "←"}
        self.assertTrue(pings & acks, (pings, acks))

    def test_follow_type_filter(self):
        lines = self.follow("--type", "ack", pred=lambda ls: len(parse(ls)) >= 6)
        ev = parse(lines)
        self.assertEqual({e["type"] for e in ev}, {"ack"})
        lines = self.follow("--type", "ping", "--type", "gossip,ack",
                            pred=lambda ls: {"ping", "ack"} <= {e["type"] for e in parse(ls)})
        self.assertLessEqual({e["type"] for e in parse(lines)}, {"ping", "ack", "gossip"})

    def test_follow_peer_filter(self):
        peer = self.gossip[self.workers[0]]
        lines = self.follow("--peer", peer, pred=lambda ls: len(parse(ls)) >= 4)
        self.assertEqual({e["peer"] for e in parse(lines)}, {peer})
        port = peer.split(":")[1]
        lines = self.follow("--peer", f":{port}", "--type", "ping",
                            pred=lambda ls: len(parse(ls)) >= 2)
        self.assertEqual({(e["peer"], e["type"]) for e in parse(lines)}, {(peer, "ping")})

    def test_follow_json(self):
        def enough(lines):
            objs = [json.loads(l) for l in lines]
            return {"ping", "ack"} <= {o.get("type") for o in objs}
        lines = self.follow("--json", pred=enough)
        for line in lines:
            o = json.loads(line)
            if "dropped" in o:
                self.assertGreater(o["dropped"], 0)
                continue
            self.assertIn(o["dir"], ("sent", "received"))
            self.assertRegex(o["peer"], r"^\d+\.\d+\.\d+\.\d+:\d+$")
            self.assertIsInstance(o["time_ms"], int)
            self.assertIsInstance(o["size"], int)
            self.assertIsInstance(o["updates"], list)
            if "error" not in o:
                self.assertIn(o["peer"], self.worker_addrs)
                self.assertIsInstance(o["seq"], int)
                ids = {self.coord_id, *self.ids}
                self.assertIn(o["sender_id"], ids)
                for u in o["updates"]:
                    self.assertIn(u["id"], ids)
                    self.assertIn(u["status"], ("alive", "suspect", "dead", "left"))

    def test_two_followers_both_receive(self):
        a = Follower("--config", self.coord.conf, "--json")
        b = Follower("--config", self.coord.conf, "--json")
        try:
            key = lambda o: (o.get("dir"), o.get("peer"), o.get("type"), o.get("seq"))

            def common(_):
                ka = {key(json.loads(l)) for l in a.lines}
                kb = {key(json.loads(l)) for l in b.lines}
                return len(ka & kb) >= 4
            end = time.monotonic() + CLUSTER_DEADLINE
            while not common(None):
                self.assertLess(time.monotonic(), end, "followers saw no common events")
                a.read_for(0.5)
                b.read_for(0.5)
        finally:
            a.stop()
            b.stop()

    def test_slow_reader_loses_events_and_is_told(self):
        """A stopped follower fills its socket; the node skips it (and keeps
        serving everyone else); once it reads again it hears how many events
        it lost."""
        slow = Follower("--config", self.coord.conf)
        live = Follower("--config", self.coord.conf, "--type", "error")
        port = int(self.coord.settings["gossip_port"])
        try:
            slow.read_until(lambda ls: len(ls) >= 1)
            slow.proc.send_signal(signal.SIGSTOP)
            junk = b"\x08\x01" + b"junk" * 60  # dropped by the node, traced
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for rnd in range(40):
                    for _ in range(2000):
                        s.sendto(junk, ("127.0.0.1", port))
                    time.sleep(0.02)
                    # The node still answers while one follower is stuck.
                    if rnd % 10 == 0:
                        self.assertEqual(self.coord.get("/api/cluster/status", timeout=5).status, 200)
            live.read_until(lambda ls: len(ls) >= 100)
            slow.proc.send_signal(signal.SIGCONT)
            lines = slow.read_until(lambda ls: any(DROPPED.match(l) for l in ls),
                                    timeout=CLUSTER_DEADLINE)
            n = int(next(DROPPED.match(l) for l in lines if DROPPED.match(l)).group(1))
            self.assertGreater(n, 0)
            # Still streaming afterwards.
            count = len(lines)
            slow.read_until(lambda ls: len(ls) > count + 2)
        finally:
            slow.stop()
            live.stop()
        self.assertEqual(status_of(self.coord, self.ids[0]), "active")

    # ---- output etiquette ------------------------------------------------

    def test_closed_stdout_ends_cleanly(self):
        for args in (["--follow"], ["--follow", "--json"], []):
            cmd = " ".join([DUMP, "--config", self.coord.conf, *args])
            r = subprocess.run(["bash", "-c", f"{cmd} | head -3; echo \"status ${{PIPESTATUS[0]}}\""],
                               capture_output=True, timeout=DEADLINE)
            out = r.stdout.decode().splitlines()
            self.assertEqual(len(out), 4, out)
            self.assertEqual(out[-1], "status 0", (args, out, r.stderr))
            self.assertEqual(r.stderr, b"", args)

    def test_errors_are_clear(self):
        missing = os.path.join(self.tmp, "no-such.sock")
        r = dump("--socket", missing)
        self.assertEqual(r.returncode, 2)
        self.assertIn(f"cannot connect to {missing}: No such file or directory "
                      "(is the node running?)", r.stderr.decode())
        self.assertEqual(r.stdout, b"")
        for args, word in [(["--bogus"], "unknown option"),
                           (["--follow", "--type", "pong"], "unknown message type 'pong'"),
                           (["--type", "ping"], "--type and --peer filter --follow"),
                           (["--peer", "1.2.3.4:99999", "--follow"], "port"),
                           (["--decode"], "needs an argument"),
                           (["--config", os.path.join(self.tmp, "none.conf")], "none.conf")]:
            r = dump(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(word, r.stderr.decode(), args)
        r = dump("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"--follow", r.stdout)
        r = dump("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout.decode(), r"^proxystone-dump \d+\.\d+\.\d+\n$")


class DecodeTest(unittest.TestCase):
    """--decode of a datagram a real node sent: it joins through a "seed"
    that is this test's UDP socket, which captures its join ping."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ps-decode-")
        cls.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cls.sock.bind(("127.0.0.1", 0))
        cls.sock.settimeout(CLUSTER_DEADLINE)
        seed = cls.sock.getsockname()[1]
        # cluster_ip names a port nobody serves: this node stays alone.
        cls.node = Node(tmp=cls.tmp, role="worker",
                        extra={"cluster_ip": f"127.0.0.1:{free_port()}",
                               "coordinator_gossip": f"127.0.0.1:{seed}",
                               "cluster_id": "decode-test"}).start()
        cls.node_id = node_id(cls.node)
        cls.datagram, _ = cls.sock.recvfrom(65536)
        cls.path = os.path.join(cls.tmp, "ping.bin")
        with open(cls.path, "wb") as f:
            f.write(cls.datagram)

    @classmethod
    def tearDownClass(cls):
        cls.node.save_log("dump-decode")
        cls.node.stop()
        cls.sock.close()

    def decode_bytes(self, data, *args):
        path = os.path.join(self.tmp, "dgram.bin")
        with open(path, "wb") as f:
            f.write(data)
        r = dump("--decode", path, *args)
        self.assertGreaterEqual(r.returncode, 0, f"killed by signal {-r.returncode}")
        return r

    def test_valid_datagram(self):
        r = dump("--decode", self.path, "--config", self.node.conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        text = r.stdout.decode()
        self.assertRegex(text, rf"^valid ping datagram, {len(self.datagram)} bytes, protocol 1, "
                               r'cluster "decode-test"\n')
        self.assertRegex(text, rf"(?m)^sender +{self.node_id} +127\.0\.0\.1:"
                               rf"{self.node.settings['gossip_port']} +incarnation \d+$")
        r = dump("--decode", self.path, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.decode().splitlines()
        self.assertEqual(len(lines), 1)
        o = json.loads(lines[0])
        self.assertIs(o["valid"], True)
        self.assertEqual(o["type"], "ping")
        self.assertEqual(o["size"], len(self.datagram))
        self.assertEqual(o["cluster"], "decode-test")
        self.assertEqual(o["sender"]["id"], self.node_id)
        self.assertEqual(o["sender"]["addr"], f"127.0.0.1:{self.node.settings['gossip_port']}")
        # Stdin works too.
        r = dump("--decode", "-", stdin=self.datagram)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_other_cluster(self):
        r = dump("--decode", self.path, "--cluster", "prod")
        self.assertEqual(r.returncode, 1)
        self.assertIn('another cluster: the datagram is for "decode-test", expected "prod"',
                      r.stderr.decode())
        r = dump("--decode", self.path, "--cluster", "prod", "--json")
        self.assertEqual(r.returncode, 1)
        o = json.loads(r.stdout)
        self.assertEqual((o["valid"], o["reason"]), (False, "cluster"))

    def test_every_truncated_prefix(self):
        for n in range(len(self.datagram)):
            r = self.decode_bytes(self.datagram[:n])
            err = r.stderr.decode()
            self.assertEqual(r.returncode, 1, (n, err))
            self.assertEqual(r.stdout, b"")
            self.assertIn("empty" if n == 0 else "truncated", err, n)
            self.assertEqual(len(err.splitlines()), 1, err)
        r = self.decode_bytes(self.datagram[:len(self.datagram) // 2], "--json")
        o = json.loads(r.stdout)
        self.assertEqual((o["valid"], o["reason"]), (False, "malformed"))
        self.assertIn("truncated", o["error"])
        self.assertIsInstance(o["offset"], int)

    def test_padding_and_corruption(self):
        r = self.decode_bytes(self.datagram + b"\x08\x01")
        self.assertEqual(r.returncode, 1)
        self.assertIn("2 trailing bytes", r.stderr.decode())
        rng = random.Random(4)
        for _ in range(200):
            data = bytearray(self.datagram)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            r = self.decode_bytes(bytes(data))
            self.assertIn(r.returncode, (0, 1))
            if r.returncode == 1:
                self.assertEqual(len(r.stderr.decode().splitlines()), 1)

    def test_random_bytes(self):
        rng = random.Random(7)
        for i in range(300):
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 1500)))
            r = self.decode_bytes(data, *(["--json"] if i % 2 else []))
            self.assertEqual(r.returncode, 1, data[:32])
            self.assertTrue(r.stderr.strip())
            if i % 2:
                self.assertIs(json.loads(r.stdout)["valid"], False)
        r = self.decode_bytes(b"\0" * 70000)
        self.assertEqual(r.returncode, 1)
        self.assertIn("70000 bytes: longer than any UDP datagram", r.stderr.decode())
        r = dump("--decode", os.path.join(self.tmp, "missing.bin"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot read", r.stderr.decode())


if __name__ == "__main__":
    unittest.main()
