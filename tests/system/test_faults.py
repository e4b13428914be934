"""Faults (issue 7): kill -9 of each process under concurrent registrations,
a full or read-only data directory, damaged snapshots and logs, and clocks
that jump or sit far apart.

Every registration a client saw answered 200 must be there after recovery,
and every deletion answered 200 must stay deleted. Loads are bounded, waits
are polling loops with generous deadlines, and nothing asserts on speed.

Needs root for the tmpfs and bind mounts (data directory full or read-only)
and for time namespaces, and a C compiler for the wall-clock shim; the tests
that need them skip with the reason when they are not available. Mounts are
always undone, and the machine's clock is never touched.
"""

import calendar
import http.client
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from harness import BIN, DEADLINE, SANITIZE, Node, _started, alive, children_of, wait_for

RECOVERY = 60.0  # generous: a restart, a reconnect, a retry of the disk


def node_ids(node):
    r = node.get("/api/cluster/nodes")
    assert r.status == 200, r
    body = r.json()
    ids = [n["id"] for n in body["nodes"]]
    assert len(ids) == len(set(ids)), f"duplicate ids in the registry: {ids}"
    return {n["id"]: n for n in body["nodes"]}


def self_id(node):
    return node.get("/api/cluster/status").json()["status"]["id"]


def metric(node, key):
    for line in node.get("/metrics").body.decode().splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return None


def assert_spec_error(tc, r, status, codes):
    tc.assertEqual(r.status, status, r)
    body = json.loads(r.body)
    tc.assertEqual(set(body), {"success", "error", "message", "code", "details"}, body)
    tc.assertIs(body["success"], False)
    tc.assertIn(body["code"], codes, body)
    return body


# ---- (1) kill -9 under concurrent registrations -------------------------------------

class Load:
    """Four client threads registering (and now and then deleting one of
    their own acknowledged nodes) until stopped; bounded per thread."""

    THREADS = 4
    PER_THREAD = 4000

    def __init__(self, node, tag):
        self.node, self.tag = node, tag
        self.acked = set()     # registered, answered 200
        self.deleted = set()   # deleted, answered 200
        self.lost = []         # a DELETE of an acknowledged node answered 404
        self.unexpected = []   # answers outside the spec's contract
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(k,), daemon=True)
                        for k in range(self.THREADS)]

    def count(self):
        with self.lock:
            return len(self.acked)

    def check_refusal(self, r):
        """A non-200 while processes die is a 503 in the spec's format."""
        try:
            body = json.loads(r.body)
            ok = (r.status == 503 and body.get("success") is False
                  and body.get("code") in ("MEMBERSHIP_UNAVAILABLE",))
        except ValueError:
            ok = False
        if not ok:
            with self.lock:
                self.unexpected.append((r.status, r.body[:200]))

    def client(self, k):
        mine = []
        for i in range(self.PER_THREAD):
            if self.stop_ev.is_set():
                return
            nid = f"{self.tag}{k}-{i}"
            try:
                r = self.node.post("/api/cluster/register",
                                   {"id": nid, "url": f"http://10.{k}.{i // 250}.{i % 250 + 1}:80",
                                    "metadata": {"k": k, "i": i}}, timeout=10)
                if r.status == 200:
                    with self.lock:
                        self.acked.add(nid)
                    mine.append(nid)
                else:
                    self.check_refusal(r)
                    time.sleep(0.02)  # membership down: 503 at once; do not burn the budget
            except (OSError, http.client.HTTPException):
                time.sleep(0.01)  # api down: connection refused or reset
            if i % 7 == 6 and len(mine) > 3:
                victim = mine.pop(random.randrange(len(mine) - 2))
                try:
                    r = self.node.delete(f"/api/cluster/nodes/{victim}", timeout=10)
                except (OSError, http.client.HTTPException):
                    r = None
                with self.lock:
                    self.acked.discard(victim)  # from here on its fate may be either
                    if r is not None and r.status == 200:
                        self.deleted.add(victim)
                    elif r is not None and r.status == 404:
                        self.lost.append(victim)
                if r is not None and r.status not in (200, 404):
                    self.check_refusal(r)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        for t in self.threads:
            t.join(60)

    def wait_more(self, n, what):
        target = self.count() + n
        wait_for(lambda: self.count() >= target, timeout=RECOVERY,
                 what=f"{n} more acknowledged registrations {what}")

    def verify(self, tc, node):
        tc.assertFalse(self.lost, f"DELETE of acknowledged nodes answered 404: {self.lost[:10]}")
        tc.assertFalse(self.unexpected, f"answers outside the contract: {self.unexpected[:5]}")
        present = node_ids(node)
        missing = sorted(self.acked - set(present))
        tc.assertFalse(missing, f"{len(missing)} of {len(self.acked)} acknowledged "
                                f"registrations lost, e.g. {missing[:10]}")
        back = sorted(self.deleted & set(present))
        tc.assertFalse(back, f"acknowledged deletions undone: {back[:10]}")
        for nid in list(self.acked)[:200]:
            k, i = nid[len(self.tag):].split("-")
            tc.assertEqual(present[nid]["metadata"], {"k": int(k), "i": int(i)}, nid)


class KillUnderLoadTest(unittest.TestCase):
    def setUp(self):
        self.node = Node().start()
        self.me = self_id(self.node)

    def tearDown(self):
        self.node.save_log(f"faults-{self._testMethodName}")
        self.node.stop()

    def finish(self, load):
        """Recovered node: everything acknowledged, same identity; then the
        same after a clean restart."""
        wait_for(lambda: self.node.get("/api/cluster/nodes").status == 200,
                 timeout=RECOVERY, what="serving after the kills")
        load.verify(self, self.node)
        self.assertEqual(self_id(self.node), self.me)
        self.assertEqual(self.node.stop(), 0)
        self.node.start()
        load.verify(self, self.node)
        self.assertEqual(self_id(self.node), self.me)

    def kill_child(self, role):
        old = wait_for(lambda: self.node.children().get(role), what=f"{role} running")
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: self.node.children().get(role) not in (None, old),
                 timeout=RECOVERY, what=f"{role} restarted")

    def kill_three_times_under_load(self, role):
        with Load(self.node, role[0]) as load:
            load.wait_more(50, "before the first kill")
            for round_ in range(3):
                self.kill_child(role)
                load.wait_more(100, f"after {role} kill {round_ + 1}")
        self.assertIn(f"{role} killed by signal 9", self.node.log())
        self.finish(load)

    def test_kill9_membership_under_load(self):
        self.kill_three_times_under_load("membership")

    def test_kill9_api_under_load(self):
        self.kill_three_times_under_load("api")

    def test_kill9_supervisor_alone_takes_the_tree_down(self):
        """kill -9 of the supervisor only: its children follow it
        (PR_SET_PDEATHSIG), nothing is left holding the ports or the
        data directory, and a new supervisor recovers everything."""
        with Load(self.node, "s") as load:
            load.wait_more(50, "before the first kill")
            for round_ in range(2):
                tree = self.node.tree()
                self.assertEqual(len(tree), 3, tree)
                os.kill(self.node.proc.pid, signal.SIGKILL)
                self.node.proc.wait()
                wait_for(lambda: not any(alive(p) for p in tree), timeout=RECOVERY,
                         what="the supervisor's children gone with it")
                self.node.start()
                load.wait_more(100, f"after supervisor kill {round_ + 1}")
        self.finish(load)

    def test_kill9_whole_tree_under_load(self):
        with Load(self.node, "t") as load:
            load.wait_more(50, "before the first kill")
            for round_ in range(3):
                self.node.kill9()
                self.node.start()
                load.wait_more(100, f"after tree kill {round_ + 1}")
        self.finish(load)


# ---- (2) the data directory fills up ------------------------------------------------

def _can_mount():
    return os.geteuid() == 0 and shutil.which("mount") and shutil.which("umount")


class TmpfsDataDir:
    """A small tmpfs as the data directory; always unmounted."""

    def __init__(self, size="1m"):
        self.tmp = tempfile.mkdtemp(prefix="ps-full-")
        self.mnt = os.path.join(self.tmp, "mnt")
        os.makedirs(self.mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                            self.mnt], capture_output=True, text=True)
        if r.returncode:
            raise unittest.SkipTest(f"cannot mount a tmpfs: {r.stderr.strip()}")
        self.data_dir = os.path.join(self.mnt, "data")

    def resize(self, size):
        subprocess.run(["mount", "-o", f"remount,size={size}", self.mnt], check=True)

    def free_kib(self):
        st = os.statvfs(self.mnt)
        return st.f_bavail * st.f_frsize // 1024

    def umount(self):
        r = subprocess.run(["umount", self.mnt], capture_output=True, text=True)
        if r.returncode:
            subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


@unittest.skipUnless(_can_mount(), "needs root and mount(8) for a tmpfs data directory")
class DiskFullTest(unittest.TestCase):
    PAD = "x" * 8000  # a registration of ~8 KB: a 1 MiB tmpfs fills in ~128

    def setUp(self):
        self.fs = TmpfsDataDir("1m")
        self.addCleanup(self.fs.umount)
        self.node = Node(extra={"data_dir": self.fs.data_dir})
        self.addCleanup(self.node.stop)  # runs before the umount (LIFO)
        self.node.start()
        self.acked = set()

    def tearDown(self):
        self.node.save_log(f"faults-{self._testMethodName}")

    def register(self, nid, pad=True, timeout=30):
        r = self.node.post("/api/cluster/register",
                           {"id": nid, "url": "http://10.3.0.1:1",
                            "metadata": {"pad": self.PAD} if pad else {}}, timeout=timeout)
        if r.status == 200:
            self.acked.add(nid)
        return r

    def fill(self):
        """Registers until the disk is full; returns the refusal."""
        for i in range(2000):  # bounded: 1 MiB holds far fewer
            r = self.register(f"fill-{i}")
            if r.status != 200:
                return r
        self.fail("the data directory never filled up")

    def assert_all_there(self, what):
        present = node_ids(self.node)
        missing = sorted(self.acked - set(present))
        self.assertFalse(missing, f"{len(missing)} acknowledged registrations lost {what}: "
                                  f"{missing[:10]}")

    def test_full_disk_refuses_writes_keeps_reads_and_recovers(self):
        me = self_id(self.node)
        r = self.fill()
        # 503 in the spec's format (not 500, not a hang: the request has a timeout).
        assert_spec_error(self, r, 503, ("STORAGE_UNAVAILABLE",))
        self.assertGreater(len(self.acked), 10)
        self.assertLess(self.fs.free_kib(), 64)
        # Every kind of write is refused the same way while the disk is full...
        for attempt in [lambda: self.register("while-full", pad=False),
                        lambda: self.node.delete("/api/cluster/nodes/fill-0"),
                        lambda: self.node.post("/api/cluster/disable-serving")]:
            assert_spec_error(self, attempt(), 503, ("STORAGE_UNAVAILABLE",))
        self.assertEqual(self.node.get("/api/cluster/service-status").json()["status"]["mode"],
                         "serving")
        # ... while reads keep working.
        for path in ["/api/cluster/nodes", "/api/cluster/nodes/fill-0", "/api/cluster/health",
                     "/api/cluster/status", "/api/cluster/service-status", "/metrics"]:
            self.assertEqual(self.node.get(path, timeout=10).status, 200, path)
        self.assert_all_there("while the disk is full")
        self.assertEqual(metric(self.node, "proxystone_storage_available"), 0)
        self.assertIn("No space left on device", self.node.log())
        # Space comes back: writes work again by themselves.
        self.fs.resize("16m")
        wait_for(lambda: self.register("after-1", pad=False).status == 200, timeout=RECOVERY,
                 what="writes accepted again once the disk has room")
        for i in range(20):
            self.assertEqual(self.register(f"after-more-{i}").status, 200)
        self.assertEqual(self.node.delete("/api/cluster/nodes/fill-0").status, 200)
        self.acked.discard("fill-0")
        self.assertEqual(metric(self.node, "proxystone_storage_available"), 1)
        self.assert_all_there("after the disk recovered")
        # Durable: a clean restart and a kill -9 both keep everything.
        self.assertEqual(self.node.stop(), 0)
        self.node.start()
        self.assert_all_there("after a restart")
        self.assertNotIn("fill-0", node_ids(self.node))
        self.assertEqual(self.register("after-restart").status, 200)
        self.node.kill9()
        self.node.start()
        self.assert_all_there("after kill -9")
        self.assertEqual(self_id(self.node), me)

    def test_full_disk_recovers_after_a_filler_file_is_deleted(self):
        # Most of the space goes to a file we own; registrations take the rest.
        filler = os.path.join(self.fs.mnt, "filler")
        with open(filler, "wb") as f:
            f.write(b"\0" * (self.fs.free_kib() - 200) * 1024)
        r = self.fill()
        assert_spec_error(self, r, 503, ("STORAGE_UNAVAILABLE",))
        self.assertEqual(self.node.get("/api/cluster/nodes").status, 200)
        os.unlink(filler)
        wait_for(lambda: self.register("after-filler", pad=False).status == 200,
                 timeout=RECOVERY, what="writes accepted again once the filler is gone")
        self.assert_all_there("after the filler was removed")
        self.node.stop()
        self.node.start()
        self.assert_all_there("after a restart")

    def test_restart_while_the_disk_is_full(self):
        """Stopping (whose final snapshot cannot be written) and starting
        again on a full disk: the node comes up, serves what it had, refuses
        writes with 503 and recovers when space returns."""
        me = self_id(self.node)
        self.fill()
        self.assertEqual(self.node.stop(), 0)
        self.node.start(wait=False)
        wait_for(lambda: self.node.get("/api/cluster/status").status == 200,
                 timeout=RECOVERY, what="start-up on a full disk")
        self.assert_all_there("after a restart on a full disk")
        self.assertEqual(self_id(self.node), me)
        r = self.register("on-full-start", pad=False)
        if r.status != 200:  # a few bytes may have been free for the log
            assert_spec_error(self, r, 503, ("STORAGE_UNAVAILABLE",))
        self.node.kill9()
        self.node.start(wait=False)
        wait_for(lambda: self.node.get("/api/cluster/status").status == 200,
                 timeout=RECOVERY, what="start-up on a full disk after kill -9")
        self.assert_all_there("after kill -9 on a full disk")
        self.fs.resize("16m")
        wait_for(lambda: self.register("after-full-start", pad=False).status == 200,
                 timeout=RECOVERY, what="writes accepted again")
        self.node.stop()
        self.node.start()
        self.assert_all_there("after the final restart")
        self.assertEqual(self_id(self.node), me)


@unittest.skipUnless(_can_mount(), "needs root and mount(8) for a read-only bind mount")
class ReadOnlyDataDirTest(unittest.TestCase):
    """The other way a data directory stops taking writes: read-only. As
    root, chmod does not stop writes, and a mount cannot be made read-only
    while the log is open for writing (EBUSY), so the directory is
    read-only from start-up: a read-only bind mount of itself."""

    def test_read_only_data_directory_at_start(self):
        # The Unix socket must be creatable, so it lives outside the data
        # directory here (README: socket_path for read-only data).
        tmp = tempfile.mkdtemp(prefix="ps-ro-sock-")
        node = Node(extra={"socket_path": os.path.join(tmp, "m.sock")})
        self.addCleanup(node.stop)
        node.start()
        acked = set()
        for i in range(10):
            r = node.post("/api/cluster/register", {"id": f"ro-{i}", "url": "http://10.7.0.1:1"})
            self.assertEqual(r.status, 200, r)
            acked.add(f"ro-{i}")
        me = self_id(node)
        self.assertEqual(node.stop(), 0)
        d = node.data_dir
        subprocess.run(["mount", "--bind", d, d], check=True)
        self.addCleanup(lambda: subprocess.run(["umount", d], capture_output=True)
                        .returncode == 0 or subprocess.run(["umount", "-l", d]))
        subprocess.run(["mount", "-o", "remount,bind,ro", d], check=True)
        self.addCleanup(node.stop)  # LIFO: stopped before the umount
        node.start(wait=False)
        try:
            # Reads keep working: the state is readable, only writes fail.
            wait_for(lambda: node.get("/api/cluster/nodes").status == 200,
                     what="reads served from a read-only data directory")
            present = node_ids(node)
            self.assertFalse(acked - set(present), "registrations missing")
            assert_spec_error(self, node.post("/api/cluster/register",
                                              {"id": "ro-x", "url": "http://10.7.0.1:1"}),
                              503, ("STORAGE_UNAVAILABLE",))
        finally:
            node.save_log("faults-read-only")
            subprocess.run(["mount", "-o", "remount,bind,rw", d], check=True)
        # Writable again: writes work by themselves.
        def writes_back():
            r = node.post("/api/cluster/register", {"id": "ro-after", "url": "http://10.7.0.1:1"})
            return r.status == 200
        wait_for(writes_back, timeout=RECOVERY, what="writes accepted once writable")
        acked.add("ro-after")
        self.assertEqual(node.stop(), 0)
        node.start()
        self.assertFalse(acked - set(node_ids(node)), "registrations missing after a restart")
        self.assertEqual(self_id(node), me)


# ---- (3) damaged snapshots and logs --------------------------------------------------

DAMAGE_BATCH = 8
DAMAGE_ORDER = [f"{b}-{i}" for b in "abc" for i in range(DAMAGE_BATCH)]


class DamageTest(unittest.TestCase):
    """One history, built once: batch a, clean stop; batch b, clean stop;
    batch c, kill -9. Each case damages a copy of the data directory and
    starts a node on it. Registrations happened in order, so any state the
    node ever had is a prefix of ORDER: what is served must be one (never a
    partial list), every node in it whole, and where the README promises
    that nothing is lost (a damaged snapshot with a good previous one), it
    must be all of ORDER."""

    N = DAMAGE_BATCH
    ORDER = DAMAGE_ORDER

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ps-damage-")
        node = Node(tmp=cls.tmp)
        try:
            node.start()
            cls.me = self_id(node)
            cls.history = {}
            for batch, end in (("a", "stop"), ("b", "stop"), ("c", "kill")):
                for i in range(cls.N):
                    r = node.post("/api/cluster/register",
                                  {"id": f"{batch}-{i}", "url": f"http://10.4.0.{i + 1}:1",
                                   "tags": [batch], "metadata": {"b": batch, "i": i}})
                    assert r.status == 200, r
                if end == "stop":
                    assert node.stop() == 0
                    snap = os.path.join(cls.tmp, f"after-{batch}")
                    shutil.copytree(node.data_dir, snap)
                    cls.history[batch] = snap
                    node.start()
                else:
                    node.kill9()
        finally:
            node.save_log("faults-damage-history")
            node.stop()
        cls.base = node.data_dir  # after c and the kill: snap, snap.prev, wal (c)
        cls.clean = cls.history["b"]  # after the clean stop of b: wal.prev holds b

    def run_on(self, mutate, base=None, name=None):
        """Copies base, damages it, starts a node on it; returns
        (ids served, node) or (None, node) if it refused to start."""
        name = name or f"case-{random.getrandbits(32):08x}"
        d = os.path.join(self.tmp, name)
        shutil.copytree(base or self.base, d, ignore=shutil.ignore_patterns("*.sock"))
        mutate(d)
        node = Node(tmp=self.tmp, extra={"data_dir": d})
        self.addCleanup(node.stop)
        node.start(wait=False)
        try:
            wait_for(lambda: node.get("/api/cluster/status").status == 200, timeout=20,
                     what="node on the damaged data directory")
        except AssertionError:
            node.save_log(f"faults-{name}")
            return None, node
        return node_ids(node), node

    def want(self, base):
        """Everything acknowledged in the history of base."""
        return self.ORDER if base in (None, self.base) else self.ORDER[:2 * self.N]

    def assert_consistent(self, served, full=None, what=""):
        """served is a prefix of ORDER (or all of `full`), each node whole."""
        got = [x for x in self.ORDER if x in served]
        if got != self.ORDER[:len(got)]:
            self.fail(f"{what}: a partial list, not any state the node ever had: "
                      f"serves {got} (registered in the order {self.ORDER})")
        if full:
            self.assertEqual(got, full, f"{what}: acknowledged registrations lost")
        for nid in got:
            b, i = nid.split("-")
            n = served[nid]
            self.assertEqual((n["metadata"], n["tags"], n["url"]),
                             ({"b": b, "i": int(i)}, [b], f"http://10.4.0.{int(i) + 1}:1"), nid)

    @staticmethod
    def flip(name, offset, mask=0xFF):
        def f(d):
            p = os.path.join(d, name)
            b = bytearray(open(p, "rb").read())
            b[offset % len(b)] ^= mask
            open(p, "wb").write(bytes(b))
        return f

    @staticmethod
    def cut(name, keep):
        def f(d):
            p = os.path.join(d, name)
            b = open(p, "rb").read()
            n = keep if keep >= 0 else len(b) + keep
            open(p, "wb").write(b[:max(0, n)])
        return f

    @staticmethod
    def replace(name, fn):
        def f(d):
            p = os.path.join(d, name)
            b = open(p, "rb").read()
            open(p, "wb").write(fn(b))
        return f

    @staticmethod
    def both(*fs):
        def f(d):
            for g in fs:
                g(d)
        return f

    def snap_size(self, base=None):
        return os.path.getsize(os.path.join(base or self.base, "registry.snap"))

    def expect_full_recovery(self, mutate, what, base=None):
        served, node = self.run_on(mutate, base)
        self.assertIsNotNone(served, f"{what}: the node did not start:\n{node.log()[-2000:]}")
        log = node.log()
        self.assertIn("damaged snapshot", log)
        self.assertIn("loaded the previous snapshot", log)
        self.assertTrue(any(f.startswith("registry.snap.damaged-")
                            for f in os.listdir(node.settings["data_dir"])),
                        "the damaged snapshot was not kept aside")
        self.assert_consistent(served, full=self.want(base), what=what)
        self.assertEqual(self_id(node), self.me, f"{what}: identity changed")
        self.assertEqual(metric(node, "proxystone_snapshot_damaged_total"), 1)
        node.stop()

    def test_flipped_bytes_anywhere_in_the_snapshot(self):
        size = self.snap_size()
        # magic, format, length, CRC, first payload byte, middle, last byte
        for off in [0, 3, 5, 9, 13, 16, 17, size // 2, size - 1]:
            for base in (self.base, self.clean):
                with self.subTest(offset=off, after="kill" if base == self.base else "stop"):
                    self.expect_full_recovery(self.flip("registry.snap", off),
                                              f"byte {off} flipped", base)

    def test_truncated_snapshot(self):
        size = self.snap_size()
        for keep in [0, 1, 4, 15, 16, 17, size // 3, size // 2, size - 4, size - 1]:
            with self.subTest(keep=keep):
                self.expect_full_recovery(self.cut("registry.snap", keep), f"cut to {keep} bytes")

    def test_replaced_or_extended_snapshot(self):
        for what, fn in [("zeros", lambda b: b"\0" * len(b)),
                         ("random", lambda b: random.Random(5).randbytes(len(b))),
                         ("header kept, payload random",
                          lambda b: b[:16] + random.Random(6).randbytes(len(b) - 16)),
                         ("garbage appended", lambda b: b + b"\x08\x01garbage"),
                         ("doubled", lambda b: b + b)]:
            with self.subTest(what=what):
                self.expect_full_recovery(self.replace("registry.snap", fn), what)

    def test_damaged_snapshot_after_a_clean_stop_uses_the_previous_log(self):
        """After the clean stop of b: registry.snap holds a+b, .prev holds a,
        registry.wal.prev logs b. Damage to the snapshot must lose nothing."""
        self.expect_full_recovery(self.flip("registry.snap", 40), "clean history", self.clean)
        served, _ = self.run_on(self.flip("registry.snap", 40), self.clean)
        self.assertEqual([x for x in self.ORDER if x in served], self.ORDER[:2 * self.N])

    def test_previous_snapshot_damaged_alone(self):
        for base in (self.base, self.clean):
            served, node = self.run_on(self.flip("registry.snap.prev", 30), base)
            self.assertIsNotNone(served)
            self.assertEqual([x for x in self.ORDER if x in served], self.want(base))
            self.assertEqual(self_id(node), self.me)
            node.stop()

    def test_snapshot_and_previous_log_damaged(self):
        """.snap damaged and .wal.prev damaged too: the node falls back to
        .prev; whatever it then serves is a state it once had."""
        for wal_damage in [self.flip("registry.wal.prev", 100), self.cut("registry.wal.prev", -7),
                           self.cut("registry.wal.prev", 3)]:
            with self.subTest():
                served, node = self.run_on(
                    self.both(self.flip("registry.snap", 40), wal_damage), self.clean)
                self.assertIsNotNone(served, node.log()[-2000:])
                self.assertIn("damaged snapshot", node.log())
                self.assert_consistent(served, what="snapshot and previous log damaged")
                self.assertGreaterEqual(len([x for x in self.ORDER if x in served]), self.N)
                node.stop()

    def test_both_snapshots_damaged_never_serve_a_partial_list(self):
        """registry.snap and registry.snap.prev both damaged: there is no
        base state left, so the node must not replay the log of changes made
        on top of the lost one (that gives batch c without a and b, a list
        the registry never held). Starting empty, or refusing to start with
        a clear error, are both consistent."""
        for base in (self.base, self.clean):
            with self.subTest(after="kill" if base == self.base else "stop"):
                served, node = self.run_on(self.both(self.flip("registry.snap", 40),
                                                     self.flip("registry.snap.prev", 40)), base)
                log = node.log()
                self.assertIn("damaged snapshot", log)
                if served is None:
                    self.assertRegex(log, r"(?i)snapshot")
                    continue
                self.assert_consistent(served, what="both snapshots damaged")
                node.stop()

    def test_deleted_snapshot_with_a_good_previous_one(self):
        """registry.snap removed (by hand, or lost), registry.snap.prev
        intact: a partial list must not be served either."""
        served, node = self.run_on(lambda d: os.unlink(os.path.join(d, "registry.snap")))
        if served is not None:
            self.assert_consistent(served, what="snapshot removed")

    def test_torn_log_tail_gives_a_prefix(self):
        """The log cut anywhere (a crash mid-write) loses at most the
        changes after the cut: what is served is a prefix, each node whole."""
        size = os.path.getsize(os.path.join(self.base, "registry.wal"))
        cuts = sorted({1, 7, 8, 9, 20, 40, size // 4, size // 3, size // 2, 2 * size // 3,
                       size - 9, size - 5, size - 1, size})
        seen = set()
        for keep in cuts:
            with self.subTest(keep=keep):
                served, node = self.run_on(self.cut("registry.wal", keep))
                self.assertIsNotNone(served, node.log()[-2000:])
                self.assert_consistent(served, what=f"log cut to {keep} bytes")
                got = [x for x in self.ORDER if x in served]
                self.assertGreaterEqual(len(got), 2 * self.N, "the snapshot's nodes were lost")
                seen.add(len(got))
                self.assertEqual(self_id(node), self.me)
                node.stop()
        self.assertIn(3 * self.N, seen)  # the uncut log has everything


# ---- (4) clocks ----------------------------------------------------------------------

TIMENS_OK = None


def timens_available():
    global TIMENS_OK
    if TIMENS_OK is None:
        try:
            r = subprocess.run(["unshare", "--fork", "--kill-child", "--time", "--monotonic",
                                "1000", "cat", "/proc/uptime"], capture_output=True, timeout=10)
            TIMENS_OK = r.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            TIMENS_OK = False
    return TIMENS_OK


class ClockNode(Node):
    """A node started through a wrapper (a time namespace or an LD_PRELOAD
    shim). self.proc may be unshare(1), so the supervisor is found below it."""

    def __init__(self, *a, monotonic_offset=None, env=None, **kw):
        super().__init__(*a, **kw)
        self.monotonic_offset = monotonic_offset
        self.env = env

    def start(self, wait=True, args=()):
        cmd = [BIN, "--config", self.conf, *args]
        if self.monotonic_offset is not None:
            cmd = ["unshare", "--fork", "--kill-child", "--time",
                   "--monotonic", str(int(self.monotonic_offset)),
                   "--boottime", str(int(self.monotonic_offset))] + cmd
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **(self.env or {})))
        _started.append(self)
        if wait:
            self.wait_ready()
        return self

    def supervisor(self):
        if self.monotonic_offset is None:
            return self.proc.pid
        kids = children_of(self.proc.pid)
        return kids[0] if kids else None

    def stop(self, timeout=DEADLINE):
        if self.proc and self.proc.poll() is None:
            sup = self.supervisor()
            if sup:
                os.kill(sup, signal.SIGTERM)  # unshare passes no signal on
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.check_sanitizers()
        return self.proc.returncode if self.proc else None


WALL_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Seconds added to CLOCK_REALTIME, read from a shared mapping of the file
 * named by PS_WALL_SHIFT_FILE, so a test moves this process's wall clock
 * (and only this process's) while it runs. CLOCK_MONOTONIC is untouched. */
static volatile int64_t *shift;
static int (*real_clock_gettime)(clockid_t, struct timespec *);

static int64_t offset(void)
{
	if (!real_clock_gettime)
		real_clock_gettime = (int (*)(clockid_t, struct timespec *))
			dlsym(RTLD_NEXT, "clock_gettime");
	if (!shift) {
		const char *p = getenv("PS_WALL_SHIFT_FILE");
		int fd = p ? open(p, O_RDONLY | O_CLOEXEC) : -1;
		if (fd >= 0) {
			void *m = mmap(NULL, sizeof(int64_t), PROT_READ, MAP_SHARED, fd, 0);
			close(fd);
			if (m != MAP_FAILED)
				shift = m;
		}
	}
	return shift ? *shift : 0;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
	int64_t off = offset();
	int rc = real_clock_gettime(id, ts);
	if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE ||
			id == CLOCK_TAI))
		ts->tv_sec += off;
	return rc;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
	struct timespec ts;
	int rc = clock_gettime(CLOCK_REALTIME, &ts);
	(void)tz;
	if (rc == 0) {
		tv->tv_sec = ts.tv_sec;
		tv->tv_usec = ts.tv_nsec / 1000;
	}
	return rc;
}

time_t time(time_t *t)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (t)
		*t = ts.tv_sec;
	return ts.tv_sec;
}
"""


def iso_to_epoch(s):
    return calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S"))


class WallShimTest(unittest.TestCase):
    """Base for tests whose nodes run under the wall-clock shim: builds it,
    starts nodes through it (shifted_node) and moves their clocks (jump).
    No tests of its own."""

    NAME = "clock"  # temporary directory ps-<NAME>-, logs faults-<NAME>-<i>

    def setUp(self):
        if SANITIZE:
            self.skipTest("the sanitizer runtime must be the first library; no LD_PRELOAD")
        cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if not cc:
            self.skipTest("no C compiler for the clock shim")
        self.tmp = tempfile.mkdtemp(prefix=f"ps-{self.NAME}-")
        src = os.path.join(self.tmp, "wall.c")
        self.shim = os.path.join(self.tmp, "wall.so")
        with open(src, "w") as f:
            f.write(WALL_SHIM)
        r = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", self.shim, src, "-ldl"],
                           capture_output=True, text=True)
        if r.returncode:
            self.skipTest(f"cannot build the clock shim: {r.stderr[:300]}")
        self.nodes = []

    def tearDown(self):
        for i, n in enumerate(getattr(self, "nodes", [])):
            n.save_log(f"faults-{self.NAME}-{i}")
            n.stop()

    def shifted_node(self, name, **kw):
        shift = os.path.join(self.tmp, f"shift-{name}")
        with open(shift, "wb") as f:
            f.write(struct.pack("<q", 0))
        node = ClockNode(tmp=self.tmp, env={"LD_PRELOAD": self.shim,
                                            "PS_WALL_SHIFT_FILE": shift}, **kw)
        node.shift_file = shift
        self.nodes.append(node)
        return node

    @staticmethod
    def jump(node, seconds):
        fd = os.open(node.shift_file, os.O_WRONLY)
        try:
            os.pwrite(fd, struct.pack("<q", seconds), 0)
        finally:
            os.close(fd)


class WallClockJumpTest(WallShimTest):
    """The wall clock of the nodes (only theirs: an LD_PRELOAD shim shifts
    CLOCK_REALTIME, gettimeofday and time in their processes; the machine's
    clock is never touched) jumps an hour forward and then two hours back
    while HTTP nodes heartbeat and a worker gossips. Nothing may be
    declared failed, no child restarted; real failures are still found."""

    NODE_TIMEOUT = 4
    WINDOW = 2 * NODE_TIMEOUT + 2  # watch long enough for a wrong expiry to show

    def wall_of(self, node):
        return iso_to_epoch(node.get("/api/cluster/status").json()["status"]["lastSeen"])

    def test_wall_clock_jumps_cause_no_false_failures(self):
        coord = self.shifted_node("coord", extra={"node_timeout": str(self.NODE_TIMEOUT)})
        coord.start()
        wrk = self.shifted_node("worker", role="worker", extra={
            "cluster_ip": f"127.0.0.1:{coord.port}",
            "coordinator_gossip": f"127.0.0.1:{coord.settings['gossip_port']}",
            "heartbeat_interval": "1"})
        wrk.start()
        wid = self_id(wrk)
        wait_for(lambda: node_ids(coord).get(wid, {}).get("status") == "active",
                 timeout=RECOVERY, what="worker joined")
        live = [f"hb-{i}" for i in range(4)]
        for nid in live + ["silent-1"]:
            self.assertEqual(coord.post("/api/cluster/register",
                                        {"id": nid, "url": "http://10.5.0.1:1"}).status, 200)
        kids = {n.port: n.children() for n in self.nodes}
        stop = threading.Event()
        beats = {"errors": 0}

        def heartbeats():
            for _ in range(2000):  # bounded: ~0.2 s apart
                if stop.is_set():
                    return
                for nid in list(live):
                    try:
                        if coord.post(f"/api/cluster/heartbeat/{nid}",
                                      {"status": "active"}, timeout=5).status != 200:
                            beats["errors"] += 1
                    except (OSError, http.client.HTTPException):
                        beats["errors"] += 1
                time.sleep(0.2)

        t = threading.Thread(target=heartbeats, daemon=True)
        t.start()
        try:
            # The silent node goes inactive on its own: expiry works at all.
            wait_for(lambda: node_ids(coord)["silent-1"]["status"] == "inactive",
                     timeout=RECOVERY, what="a silent node expiring before any jump")

            def watch(what):
                """For WINDOW seconds: no live node, nor the worker, inactive."""
                end = time.monotonic() + self.WINDOW
                while time.monotonic() < end:
                    ids = node_ids(coord)
                    bad = {n: ids[n]["status"] for n in live + [wid]
                           if ids[n]["status"] in ("inactive", "left")}
                    self.assertFalse(bad, f"false failure {what}: {bad}")
                    time.sleep(0.2)

            real = time.time()
            self.assertLess(abs(self.wall_of(coord) - real), 120)
            # Forward: an hour on both nodes.
            for n in self.nodes:
                self.jump(n, 3600)
            wait_for(lambda: self.wall_of(coord) - time.time() > 3000,
                     what="the coordinator's wall clock an hour ahead (the shim works)")
            watch("after the wall clock jumped an hour forward")
            # Back: an hour behind the real time, two hours back from there.
            self.assertEqual(coord.post("/api/cluster/register",
                                        {"id": "silent-3", "url": "http://10.5.0.1:1"}).status, 200)
            for n in self.nodes:
                self.jump(n, -3600)
            wait_for(lambda: time.time() - self.wall_of(coord) > 3000,
                     what="the coordinator's wall clock an hour behind")
            watch("after the wall clock jumped two hours back")
            # One node's clock far from the other's (workers are other hosts).
            self.jump(wrk, 86400 * 365)
            self.jump(coord, 0)
            watch("with the worker's wall clock a year ahead of the coordinator's")
            # Real failures are still found: a node registered before the
            # backward jump, one that stops beating, and a killed worker.
            wait_for(lambda: node_ids(coord)["silent-3"]["status"] == "inactive",
                     timeout=RECOVERY, what="silent-3 expiring after the backward jump")
            live.remove("hb-0")
            wait_for(lambda: node_ids(coord)["hb-0"]["status"] == "inactive",
                     timeout=RECOVERY, what="hb-0 expiring once its heartbeats stop")
            self.assertEqual({n.port: n.children() for n in self.nodes}, kids,
                             "a child was restarted (the supervisor's hang check on wall time?)")
            wrk.kill9()
            wait_for(lambda: node_ids(coord)[wid]["status"] == "inactive",
                     timeout=RECOVERY, what="the killed worker found failed")
        finally:
            stop.set()
            t.join(30)
        self.assertEqual(beats["errors"], 0, "heartbeats refused")
        for nid in ["hb-1", "hb-2", "hb-3"]:
            self.assertEqual(node_ids(coord)[nid]["status"], "active", nid)


@unittest.skipUnless(os.geteuid() == 0, "time namespaces need root")
class MonotonicOffsetTest(unittest.TestCase):
    """A time namespace cannot move a running process's clocks, so a jump
    of CLOCK_MONOTONIC cannot be made (and the monotonic clock never jumps
    anyway). What it can do is give each node a very different monotonic
    clock: one 31 years ahead, one that started 2 s ago. A node that mixed
    monotonic and wall time, sent monotonic times to peers, or treated a
    small value as "never" would misbehave here."""

    def setUp(self):
        if not timens_available():
            self.skipTest("unshare --time is not available here")
        self.tmp = tempfile.mkdtemp(prefix="ps-timens-")
        self.nodes = []

    def tearDown(self):
        for i, n in enumerate(self.nodes):
            n.save_log(f"faults-timens-{i}")
            n.stop()

    def test_nodes_with_far_apart_monotonic_clocks(self):
        with open("/proc/uptime") as f:
            up = int(float(f.read().split()[0]))
        coord = ClockNode(tmp=self.tmp, monotonic_offset=10 ** 9,
                          extra={"node_timeout": "3"})
        self.nodes.append(coord)
        coord.start()
        # -(uptime - 2): this worker's monotonic clock reads about 2 s.
        wrk = ClockNode(tmp=self.tmp, role="worker", monotonic_offset=-(up - 2), extra={
            "cluster_ip": f"127.0.0.1:{coord.port}",
            "coordinator_gossip": f"127.0.0.1:{coord.settings['gossip_port']}",
            "heartbeat_interval": "1", "node_timeout": "3"})
        self.nodes.append(wrk)
        wrk.start()
        wid = self_id(wrk)
        wait_for(lambda: node_ids(coord).get(wid, {}).get("status") == "active",
                 timeout=RECOVERY, what="worker joined across the namespaces")
        # HTTP-only nodes expire and come back on the coordinator.
        self.assertEqual(coord.post("/api/cluster/register",
                                    {"id": "ns-silent", "url": "http://10.6.0.1:1"}).status, 200)
        wait_for(lambda: node_ids(coord)["ns-silent"]["status"] == "inactive",
                 timeout=RECOVERY, what="expiry 31 years into the monotonic clock")
        self.assertEqual(coord.post("/api/cluster/heartbeat/ns-silent").status, 200)
        self.assertEqual(node_ids(coord)["ns-silent"]["status"], "active",
                         "a heartbeat did not bring an expired node back")
        # The worker serves the replica and stays active for a while.
        wait_for(lambda: "ns-silent" in node_ids(wrk), timeout=RECOVERY,
                 what="the replica on the worker")

        def gossip_lines(n):
            return "\n".join(l for l in n.log().splitlines()
                             if "membership" in l and "http" not in l)[-3000:]
        end = time.monotonic() + 8
        seen = []
        while time.monotonic() < end:
            st = node_ids(coord)[wid]["status"]
            seen.append(st)
            if st in ("inactive", "left"):
                self.fail(f"the worker became {st} on the coordinator (statuses seen: "
                          f"{seen})\ncoordinator:\n{gossip_lines(coord)}\n"
                          f"worker:\n{gossip_lines(wrk)}")
            time.sleep(0.25)
        # Timestamps are wall time, not either monotonic clock.
        for n in (coord, wrk):
            last = n.get("/api/cluster/status").json()["status"]["lastSeen"]
            self.assertLess(abs(iso_to_epoch(last) - time.time()), 120,
                            f"lastSeen {last} on {n.port} is not wall time")
        # Graceful leave and failure detection across them.
        self.assertEqual(wrk.stop(), 0, f"the worker's exit status; log:\n{wrk.log()[-2000:]}")
        wait_for(lambda: node_ids(coord)[wid]["status"] == "left", timeout=RECOVERY,
                 what="the worker's leave seen")


if __name__ == "__main__":
    unittest.main()


class MetadataLimitChangeTest(unittest.TestCase):
    """Lowering max_metadata_bytes applies to new writes only: nodes stored
    under the larger bound load as they were, and raising it again later
    finds them all (before, the start-up snapshot dropped them for good)."""

    def test_lowering_the_metadata_limit_drops_nothing(self):
        node = Node(extra={"max_metadata_bytes": "16384"}).start()
        blob = "x" * 10000
        ids = []
        for i in range(5):
            r = node.post("/api/cluster/register",
                          {"url": f"http://10.9.0.{i + 1}:80", "metadata": {"blob": blob}})
            self.assertEqual(r.status, 200, r)
            ids.append(r.json()["node"]["id"])

        def restart(limit):
            node.stop()
            node.settings["max_metadata_bytes"] = limit
            node.write_conf()
            node.start()

        def all_there():
            for i in ids:
                r = node.get(f"/api/cluster/nodes/{i}")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["node"]["metadata"]["blob"], blob)

        try:
            restart("4096")
            all_there()
            self.assertIn("5 nodes hold more metadata than max_metadata_bytes", node.log())
            m = node.get("/metrics").body.decode()
            self.assertIn("proxystone_registry_nodes_over_limit 5", m)
            # The bound holds for new writes.
            r = node.post("/api/cluster/register",
                          {"url": "http://10.9.0.99:80", "metadata": {"blob": blob}})
            self.assertGreaterEqual(r.status, 400, r)
            self.assertLess(r.status, 500, r)
            # A second start under the low bound (after its start-up
            # snapshot), then the old bound again: nothing was lost.
            restart("4096")
            all_there()
            restart("16384")
            all_there()
            self.assertEqual(node.get("/api/cluster/nodes").json()["total"], 6)
        finally:
            node.stop()
