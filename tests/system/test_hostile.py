"""Hostile input against the real bin/proxystone (issue 7, "Hostile input").

Every case sends something hostile over a raw socket, http.client or UDP and
then checks three things: the answer is a clear error in the spec's format
({success:false, error, message, code, details}) or the connection is
closed; the node still serves a normal request; and nothing registered is
lost (a few nodes are registered when each node starts and must all still be
there after every test). A child that crashed would be restarted by the
supervisor and could hide behind "still serves", so every test also checks
that the membership and api processes are the ones it started with.

Loads are bounded (a fixed number of requests, connections or datagrams);
waits are polling loops with generous deadlines; the only timing assertion
is "a normal client is still answered within a generous deadline".
"""

import json
import os
import random
import re
import socket
import struct
import tempfile
import time
import unittest
import uuid

from gossipwire import datagram, pb_bytes, pb_member
from harness import Node, wait_for

KEEP = [f"keep-{i}" for i in range(5)]
ERROR_KEYS = {"success", "error", "message", "code", "details"}
# A normal client must be answered within this, however hostile the others.
PROMPT = 5.0
# Raw-socket reads give up after this; the server answers far sooner.
READ_DEADLINE = 15.0


# ---- helpers ------------------------------------------------------------------

def strict_json(body):
    """Parses a response body as strict JSON: valid UTF-8 (no encoded
    surrogates), no NaN/Infinity literals. Raises AssertionError otherwise."""
    try:
        text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
    except UnicodeDecodeError as e:
        raise AssertionError(f"response is not valid UTF-8: {e}: {body[:300]!r}")

    def no_constant(name):
        raise AssertionError(f"response has the non-JSON literal {name}: {text[:300]!r}")

    try:
        return json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as e:
        raise AssertionError(f"response is not valid JSON: {e}: {text[:300]!r}")


class RawResponse:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return strict_json(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:200]!r}>"


def parse_responses(data):
    """Splits raw bytes into complete HTTP responses; returns (list, rest)."""
    out = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return out, data
        head = data[:end].decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", head[0])
        if not m:
            raise AssertionError(f"not an HTTP response: {data[:200]!r}")
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        status = int(m.group(1))
        n = int(headers.get("content-length", "0"))
        if status in (100, 204, 304):
            n = 0
        if len(data) < end + 4 + n:
            return out, data
        body = data[end + 4:end + 4 + n]
        data = data[end + 4 + n:]
        if status != 100:
            out.append(RawResponse(status, headers, body))


class RawConn:
    """A raw TCP connection to the node: send bytes, collect responses."""

    def __init__(self, port, timeout=READ_DEADLINE):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.closed = False  # EOF or reset seen
        self.reset = False

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:  # the server closed on us mid-send: fine for hostile input
            return False

    def _recv(self, deadline):
        self.sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            self.closed = self.reset = True
            return False
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def responses(self, n=1, timeout=READ_DEADLINE):
        """Up to n responses (fewer if the connection closes first)."""
        deadline = time.monotonic() + timeout
        got = []
        while True:
            rs, self.buf = parse_responses(self.buf)
            got += rs
            if len(got) >= n or self.closed or time.monotonic() >= deadline:
                return got
            self._recv(deadline)

    def wait_closed(self, timeout=READ_DEADLINE):
        """True once the server has closed (EOF or reset), reading and
        keeping whatever arrives until then."""
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self._recv(deadline)
        return self.closed

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def metrics(node):
    """{'name{labels}': value} from GET /metrics."""
    r = node.get("/metrics")
    assert r.status == 200, r
    out = {}
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def dropped(node, reason):
    return metrics(node).get(f'proxystone_gossip_dropped_total{{reason="{reason}"}}', 0.0)


def malformed_datagrams(cluster=b"default-cluster"):
    """Datagrams in the node's own cluster and version that must each be
    dropped as malformed (and never add a member)."""
    good = datagram(cluster)
    out = [
        good[:-1], good[:len(good) // 2], good[:3],           # truncated
        good + b"\x00", good + os.urandom(40),                 # padded
        datagram(cluster, length_delta=1), datagram(cluster, length_delta=-1),  # length lies
        datagram(cluster, length=0),
        datagram(cluster, mtype=0), datagram(cluster, mtype=99),  # no such type
        datagram(cluster, sender=b"\x01" * 15),                # short sender id
        datagram(cluster, sender=b""),
        datagram(cluster, sender_port=70000),                  # port > 65535
        datagram(cluster, mtype=3),                            # ping-req without target
        datagram(cluster, fields=pb_bytes(9, b"\x02" * 3)),    # short target id
        datagram(cluster, fields=pb_bytes(16, b"\x00" * 7)),   # digest of the wrong size
        datagram(cluster, fields=pb_member(b"\x03" * 4)),      # member id too short
        datagram(cluster, fields=pb_member(uuid.uuid4().bytes, status=9)),   # no such status
        datagram(cluster, fields=pb_member(uuid.uuid4().bytes, status=2, meta=b"x")),  # meta on dead
        datagram(cluster, fields=pb_member(uuid.uuid4().bytes, port=1 << 20)),
        datagram(cluster, fields=pb_member(uuid.uuid4().bytes, meta=b"m" * 300)),  # meta too big
        datagram(cluster, fields=b"".join(pb_member(uuid.uuid4().bytes) for _ in range(65))),
        b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 20,                # field length beyond the datagram
        b"\xff" * 64,                                          # invalid tags
    ]
    return out


# ---- the node under test -------------------------------------------------------

class NodeCase(unittest.TestCase):
    """One node per class, with KEEP registered; after every test the node
    serves, KEEP is complete and no child was restarted."""

    EXTRA = {}

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ps-hostile-")
        cls.node = Node(tmp=cls.tmp, extra=cls.EXTRA).start()
        for i, nid in enumerate(KEEP):
            r = cls.node.post("/api/cluster/register",
                              {"id": nid, "url": f"http://10.77.0.{i + 1}:8080",
                               "tags": ["keep"], "metadata": {"i": i}})
            assert r.status == 200, r
        cls.kids = wait_for(lambda: len(cls.node.children()) == 2 and cls.node.children(),
                            what="membership and api running")

    @classmethod
    def tearDownClass(cls):
        cls.node.save_log(f"hostile-{cls.__name__}")
        cls.node.stop()

    def tearDown(self):
        self.assert_still_serving()

    # -- checks --

    def assert_still_serving(self):
        r = self.node.get("/api/cluster/nodes", timeout=PROMPT * 4)
        self.assertEqual(r.status, 200, f"node no longer serves normally: {r}")
        body = strict_json(r.body)
        ids = {n["id"] for n in body["nodes"]}
        missing = [k for k in KEEP if k not in ids]
        self.assertFalse(missing, f"registered nodes lost: {missing}")
        self.assertEqual(body["total"], len(body["nodes"]))
        self.assertEqual(self.node.children(), self.kids,
                         "a child was restarted (crashed?); see the node's log")
        log = self.node.log()
        for mark in ("killed by signal", "exited with status", "hung; killing", "crash loop"):
            self.assertNotIn(mark, log, f"{mark!r} in the node's log")

    def assertError(self, r, status, code=None):
        """r is the spec's error: status (one or a tuple), the five keys."""
        statuses = status if isinstance(status, tuple) else (status,)
        self.assertIn(r.status, statuses, r)
        body = strict_json(r.body)
        self.assertEqual(set(body), ERROR_KEYS, body)
        self.assertIs(body["success"], False)
        self.assertIsInstance(body["error"], str)
        self.assertTrue(body["message"] and isinstance(body["message"], str), body)
        self.assertIsInstance(body["details"], dict)
        self.assertIn("application/json", r.headers.get("content-type", ""))
        if code is not None:
            codes = code if isinstance(code, tuple) else (code,)
            self.assertIn(body["code"], codes, body)
        return body

    def raw(self, data, n=1, timeout=READ_DEADLINE):
        """Sends data on a new connection; returns (responses, closed)."""
        c = RawConn(self.node.port)
        try:
            c.send(data)
            rs = c.responses(n, timeout)
            closed = c.wait_closed(timeout) if len(rs) < n or rs and \
                rs[-1].headers.get("connection") == "close" else False
            return rs, closed
        finally:
            c.close()

    def assertRefused(self, data, status, code=None):
        """data gets exactly one error answer and the connection is closed
        (or, at worst, just closed)."""
        rs, closed = self.raw(data)
        self.assertTrue(closed or rs, f"no answer and no close for {data[:80]!r}")
        if rs:
            self.assertEqual(len(rs), 1, rs)
            body = self.assertError(rs[0], status, code)
            self.assertEqual(rs[0].headers.get("connection"), "close", rs[0].headers)
            self.assertTrue(closed, "the connection stays open after a protocol error")
            return body
        return None

    def register(self, body, **kw):
        return self.node.post("/api/cluster/register", body, **kw)

    def node_count(self):
        return strict_json(self.node.get("/api/cluster/nodes").body)["total"]


REQ = b"GET /api/cluster/status HTTP/1.1\r\nHost: x\r\n\r\n"


def post_head(path=b"/api/cluster/register", headers=b""):
    return b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + headers


# ---- HTTP framing -----------------------------------------------------------------

class HttpFramingTest(NodeCase):
    EXTRA = {"max_body_bytes": "32768"}

    def test_oversized_headers_431(self):
        for data in [
            b"GET /api/cluster/status HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            b"GET /api/cluster/status HTTP/1.1\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(2000)) + b"\r\n",
            b"GET /api/cluster/status HTTP/1.1\r\n" + b"X" * 20000 + b": v\r\n\r\n",
            b"GET /api/cluster/status HTTP/1.1\r\nAuthorization: Bearer " + b"t" * 9000 + b"\r\n\r\n",
            # never ends: the bound, not the blank line, must stop it
            b"GET /api/cluster/status HTTP/1.1\r\n" + b"X-A: b\r\n" * 4000,
        ]:
            with self.subTest(data=data[:60]):
                self.assertRefused(data, 431, "HEADERS_TOO_LARGE")
        # Just under the bound is fine.
        rs, _ = self.raw(b"GET /api/cluster/status HTTP/1.1\r\nX-Big: " + b"a" * 6000 + b"\r\n\r\n")
        self.assertEqual([r.status for r in rs], [200])
        self.assertGreater(metrics(self.node)['proxystone_http_rejected_total{reason="header_too_large"}'], 0)

    def test_oversized_url_414(self):
        for data in [
            b"GET /api/cluster/nodes/" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n",
            b"GET /api/cluster/nodes?role=" + b"w" * 5000 + b" HTTP/1.1\r\n\r\n",
            b"GET /" + b"%41" * 3000 + b" HTTP/1.1\r\n\r\n",
            b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\n\r\n",
        ]:
            with self.subTest(data=data[:60]):
                self.assertRefused(data, 414, "URI_TOO_LONG")
        # An id that is too long but whose URL fits is a validation error.
        r = self.node.get("/api/cluster/nodes/" + "a" * 300)
        self.assertError(r, (400, 404))

    def test_oversized_body_413(self):
        big = json.dumps({"url": "http://a:1", "pad": "x" * 40000}).encode()
        # Announced: refused before the body is read.
        body = self.assertRefused(post_head(headers=b"Content-Length: %d\r\n\r\n" % len(big)),
                                  413, "PAYLOAD_TOO_LARGE")
        if body:
            self.assertEqual(body["details"].get("limit"), 32768, body)
        # Sent in full: the 413 still reaches the client.
        self.assertRefused(post_head(headers=b"Content-Length: %d\r\n\r\n" % len(big)) + big,
                           413, "PAYLOAD_TOO_LARGE")
        # Chunked, no length announced: refused once it passes the bound.
        chunks = b"".join(b"%x\r\n%s\r\n" % (1000, b"y" * 1000) for _ in range(40))
        self.assertRefused(post_head(headers=b"Transfer-Encoding: chunked\r\n\r\n") + chunks
                           + b"0\r\n\r\n", 413, "PAYLOAD_TOO_LARGE")
        # http.client too (the common client path).
        r = self.register(big)
        self.assertError(r, 413, "PAYLOAD_TOO_LARGE")
        self.assertNotIn("x" * 100, self.node.get("/api/cluster/nodes").body.decode())

    def test_absurd_content_length(self):
        for cl in [b"-1", b"-0", b"abc", b"1e3", b"0x10", b"+5", b"5, 5", b"5 5", b"",
                   b"99999999999999999999999999999", b"18446744073709551615",
                   b"18446744073709551616", b"9223372036854775808", b"\x00", b"\xff\xfe"]:
            with self.subTest(cl=cl):
                data = post_head(headers=b"Content-Length: " + cl + b"\r\n\r\n{}")
                self.assertRefused(data, (400, 413), ("BAD_REQUEST", "PAYLOAD_TOO_LARGE"))
        # Two different lengths: a smuggling attempt.
        self.assertRefused(post_head(headers=b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}"),
                           400, "BAD_REQUEST")
        # Larger than the bound (but a number): 413 at once.
        self.assertRefused(post_head(headers=b"Content-Length: 4294967296\r\n\r\n"),
                           413, "PAYLOAD_TOO_LARGE")

    def test_content_length_with_transfer_encoding_400(self):
        chunked = b"2\r\n{}\r\n0\r\n\r\n"
        for hdrs in [
            b"Content-Length: 11\r\nTransfer-Encoding: chunked\r\n",
            b"Transfer-Encoding: chunked\r\nContent-Length: 11\r\n",
            b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
            b"Content-Length: 11\r\nTransfer-Encoding: identity\r\n",
            b"Content-Length: 11\r\nTransfer-Encoding: gzip, chunked\r\n",
        ]:
            with self.subTest(hdrs=hdrs):
                self.assertRefused(post_head(headers=hdrs + b"\r\n") + chunked, 400, "BAD_REQUEST")
        # Transfer codings other than chunked are refused too.
        for te in [b"gzip", b"identity", b"chunked, gzip", b"x"]:
            with self.subTest(te=te):
                self.assertRefused(post_head(headers=b"Transfer-Encoding: " + te + b"\r\n\r\n{}"),
                                   400, "BAD_REQUEST")

    def test_whitespace_before_colon_is_refused(self):
        """RFC 7230 3.2.4: "A server MUST reject any received request message
        that contains whitespace between a header field-name and colon with a
        response status code of 400". A front proxy that ignores such a
        header and this server that honours it disagree on where the body
        ends (request smuggling)."""
        for data in [
            post_head(headers=b"Content-Length : 2\r\n\r\n{}"),
            post_head(headers=b"Transfer-Encoding : chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
            post_head(headers=b"Transfer-Encoding\t: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
        ]:
            with self.subTest(data=data[80:]):
                self.assertRefused(data, 400, "BAD_REQUEST")

    def test_chunk_data_must_end_with_crlf(self):
        """RFC 7230 4.1: chunk = chunk-size CRLF chunk-data CRLF. Bytes other
        than CRLF after a chunk's data are a framing error (400); taking
        them as the terminator lets a front proxy and this server disagree
        on where the body ends (the http_parser library, built without
        HTTP_PARSER_STRICT, does not check those two bytes)."""
        for framing in [b"2\r\n{}XX0\r\n\r\n", b"2\r\n{}\x00\x000\r\n\r\n",
                        b"2\r\n{}ab0\r\n\r\n"]:
            with self.subTest(framing=framing):
                self.assertRefused(post_head(headers=b"Transfer-Encoding: chunked\r\n\r\n")
                                   + framing, 400, "BAD_REQUEST")

    def test_chunked_bodies(self):
        # Valid: odd chunk sizes, upper-case hex, extensions, a trailer.
        body = json.dumps({"id": "chunky", "url": "http://10.0.0.9:1", "tags": ["c"]}).encode()
        parts = [body[:1], body[1:7], body[7:30], body[30:]]
        framed = b"".join(b"%X;ext=\"v\"\r\n%s\r\n" % (len(p), p) for p in parts)
        rs, _ = self.raw(post_head(headers=b"Transfer-Encoding: chunked\r\n\r\n") + framed
                         + b"0\r\nX-Trailer: t\r\n\r\n")
        self.assertEqual([r.status for r in rs], [200], rs)
        self.assertEqual(rs[0].json()["node"]["id"], "chunky")
        self.assertEqual(self.node.get("/api/cluster/nodes/chunky").status, 200)
        # One-byte chunks.
        body = json.dumps({"id": "chunky-2", "url": "http://10.0.0.9:2"}).encode()
        framed = b"".join(b"1\r\n%s\r\n" % body[i:i + 1] for i in range(len(body)))
        rs, _ = self.raw(post_head(headers=b"Transfer-Encoding: chunked\r\n\r\n") + framed + b"0\r\n\r\n")
        self.assertEqual([r.status for r in rs], [200], rs)
        # Malformed chunk sizes and framing.
        bad = [
            b"zz\r\n{}\r\n0\r\n\r\n",
            b"-2\r\n{}\r\n0\r\n\r\n",
            b"ffffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
            b"0x2\r\n{}\r\n0\r\n\r\n",
            b" 2\r\n{}\r\n0\r\n\r\n",
            b"\r\n{}\r\n0\r\n\r\n",                   # empty size
            b"2\x00\r\n{}\r\n0\r\n\r\n",
        ]
        for framing in bad:
            with self.subTest(framing=framing):
                self.assertRefused(post_head(headers=b"Transfer-Encoding: chunked\r\n\r\n") + framing,
                                   (400, 413), ("BAD_REQUEST", "PAYLOAD_TOO_LARGE"))
        # A chunk larger than the body bound. (Announcing one is not refused
        # until that much has arrived: a client that announces 1 MiB and
        # sends 100 bytes is closed at the idle timeout, without a 413.)
        self.assertRefused(post_head(headers=b"Transfer-Encoding: chunked\r\n\r\n")
                           + b"100000\r\n" + b"x" * 40000, 413, "PAYLOAD_TOO_LARGE")
        # Endless trailers are bounded like a head.
        rs, closed = self.raw(post_head(headers=b"Transfer-Encoding: chunked\r\n\r\n")
                              + b"2\r\n{}\r\n0\r\n" + b"X-T: v\r\n" * 3000)
        self.assertTrue(closed or rs)
        if rs:
            self.assertError(rs[0], (400, 413, 431))
        # Endless empty extensions are bounded too.
        rs, closed = self.raw(post_head(headers=b"Transfer-Encoding: chunked\r\n\r\n")
                              + b"".join(b"1;e=%d\r\nx\r\n" % i for i in range(30000)))
        self.assertTrue(closed or rs)
        if rs:
            self.assertError(rs[0], (400, 413, 431))

    def test_nul_bytes_in_paths(self):
        for data in [
            b"GET /api/cluster/nodes%00x HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /api/cluster/nodes\x00x HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /api/cluster/nodes/keep-0%00 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"DELETE /api/cluster/nodes/keep-0%00evil HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /api/cluster/heartbeat/keep-1%00 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            b"GET /api/cluster/nodes?role=%00 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /api/cluster/nodes?\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET \x00 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"\x00GET / HTTP/1.1\r\n\r\n",
            b"GET /api/cluster/status HTTP/1.1\r\nHost: x\x00y\r\n\r\n",
            b"GET /api/cluster/status HTTP/1.1\r\nX\x00: y\r\n\r\n",
            b"GET /%zz HTTP/1.1\r\n\r\n", b"GET /% HTTP/1.1\r\n\r\n",
        ]:
            with self.subTest(data=data):
                rs, closed = self.raw(data)
                self.assertTrue(rs or closed)
                for r in rs:
                    self.assertError(r, (400, 404))
        # The DELETE and heartbeat above must not have touched keep-0/keep-1.
        n = strict_json(self.node.get("/api/cluster/nodes/keep-0").body)["node"]
        self.assertEqual(n["metadata"], {"i": 0})

    def test_pipelined_garbage(self):
        garbage = [b"\x01\x02garbage\r\n\r\n", b"\xff" * 100, b"GET\r\n\r\n",
                   b"HTTP/1.1 200 OK\r\n\r\n", b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
                   b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", os.urandom(3000)]
        for g in garbage:
            with self.subTest(garbage=g[:30]):
                c = RawConn(self.node.port)
                try:
                    c.send(REQ + g)
                    rs = c.responses(2)
                    self.assertTrue(c.wait_closed(), "not closed after garbage")
                    self.assertGreaterEqual(len(rs), 1, "the valid request was not answered")
                    self.assertEqual(rs[0].status, 200, rs)
                    self.assertEqual(rs[0].json()["success"], True)
                    # The garbage gets a 400 (or just the close).
                    for r in rs[1:]:
                        self.assertError(r, (400, 431, 414, 413))
                finally:
                    c.close()
        # Many valid requests (a registration among them), then garbage.
        reg = json.dumps({"id": "piped", "url": "http://10.0.0.7:7"}).encode()
        reqs = REQ * 50 + post_head(headers=b"Content-Length: %d\r\n\r\n" % len(reg)) + reg \
            + REQ * 49 + b"\x00\x01\x02 nonsense\r\n\r\n"
        c = RawConn(self.node.port)
        try:
            c.send(reqs)
            rs = c.responses(101)
            self.assertTrue(c.wait_closed())
            self.assertEqual([r.status for r in rs[:100]], [200] * 100)
            self.assertEqual(len(rs), 101, "the garbage was not answered")
            self.assertError(rs[100], 400, "BAD_REQUEST")
        finally:
            c.close()
        self.assertEqual(self.node.get("/api/cluster/nodes/piped").status, 200)

    def test_odd_request_lines(self):
        """Odd but not necessarily wrong: whatever the answer, it is one
        well-formed response, and errors are in the spec's format."""
        for data in [
            b"GET /api/cluster/status HTTP/9.9\r\n\r\n",
            b"GET /api/cluster/status HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n",
            b"GET http://evil.example/api/cluster/status HTTP/1.1\r\n\r\n",
            b"GET //api/cluster/status HTTP/1.1\r\n\r\n",
            b"GET /api/cluster/../cluster/status HTTP/1.1\r\n\r\n",
            b"GET * HTTP/1.1\r\n\r\n",
            b"BREW /pot HTTP/1.1\r\n\r\n",
            b"get /api/cluster/status HTTP/1.1\r\n\r\n",
            b"GET /api/cluster/status\r\n\r\n",
            b"GET /api/cluster/status HTTP/1.1\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n",
            b"GET /api/cluster/status HTTP/1.1\r\n" + b"\r\n" * 1000,
            b"\r\n" * 5000 + REQ,
            b"POST /api/cluster/register HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 40000\r\n\r\n",
        ]:
            with self.subTest(data=data[:50]):
                rs, closed = self.raw(data, timeout=5)
                self.assertTrue(rs or closed, data[:50])
                for r in rs:
                    if r.status >= 400 and r.body:
                        self.assertError(r, r.status)


# ---- JSON bodies -----------------------------------------------------------------

HOSTILE_STRINGS = [
    'q"uote', "back\\slash", "\\u0000 literally", "ctl\x01\x02\x07\x08\t\n\x0b\x0c\r\x1b\x1f",
    "del\x7f", "line\u2028sep\u2029", "bom\ufeff", "emoji\U0001F600", "nonchar\uffff",
    "</script><script>alert(1)</script>", "%00%22", "\"},{\"id\":\"injected", "é€𝄞",
    "".join(chr(c) for c in range(1, 32)),
]

INVALID_UTF8 = [b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80",
                b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82",
                b"\x80", b"a\xc3", b"\xc3\x28"]


class JsonBodyTest(NodeCase):
    EXTRA = {"max_body_bytes": "65536", "max_metadata_bytes": "16384"}

    def test_deeply_nested_json(self):
        before = self.node_count()
        for body in [b"[" * 10000, b"{\"a\":" * 10000, b"[" * 10000 + b"]" * 10000,
                     b'{"url":"http://a:1","metadata":' + b'{"a":' * 5000 + b"1" + b"}" * 5001,
                     b'{"url":"http://a:1","metadata":{"x":' + b"[" * 10000 + b"]" * 10000 + b"}}",
                     b'{"url":"http://a:1","tags":' + b"[" * 10000 + b"]" * 10000 + b"}"]:
            with self.subTest(body=body[:40]):
                r = self.register(body)
                self.assertError(r, (400, 413), ("INVALID_JSON", "VALIDATION_ERROR",
                                                 "PAYLOAD_TOO_LARGE"))
        for body in [b"[" * 10000, b'{"metadata":' + b"[" * 10000 + b"}"]:
            self.assertError(self.node.post("/api/cluster/heartbeat/keep-0", body), 400,
                             ("INVALID_JSON", "VALIDATION_ERROR"))
        self.assertEqual(self.node_count(), before)

    def test_too_many_tokens(self):
        before = self.node_count()
        for body in [b"[" + b"0," * 20000 + b"0]",
                     b'{"url":"http://a:1","metadata":{"a":[' + b"1," * 20000 + b"1]}}",
                     b'{"url":"http://a:1","tags":[' + b'"t",' * 10000 + b'"t"]}']:
            with self.subTest(body=body[:40]):
                self.assertError(self.register(body), (400, 413))
        self.assertEqual(self.node_count(), before)

    def test_invalid_utf8(self):
        before = self.node_count()
        for bad in INVALID_UTF8:
            for tmpl in [b'{"url":"http://a:1","id":"%s"}', b'{"url":"http://a:%s1"}',
                         b'{"url":"http://a:1","tags":["%s"]}',
                         b'{"url":"http://a:1","metadata":{"k":"%s"}}',
                         b'{"url":"http://a:1","metadata":{"%s":1}}',
                         b'{"url":"http://a:1","capabilities":{"%s":true}}',
                         b'{"url":"http://a:1","x%s":1}']:
                body = tmpl.replace(b"%s", bad)
                with self.subTest(body=body):
                    self.assertError(self.register(body), 400, "INVALID_JSON")
            hb = b'{"status":"active","metadata":{"load":"%s"}}'.replace(b"%s", bad)
            self.assertError(self.node.post("/api/cluster/heartbeat/keep-2", hb), 400,
                             "INVALID_JSON")
        # Escaped lone surrogates are not text either.
        for esc in [b"\\ud800", b"\\udfff", b"\\ud800\\u0041", b"\\udc00\\ud800", b"\\ud83d"]:
            body = b'{"url":"http://a:1","metadata":{"k":"' + esc + b'"}}'
            with self.subTest(body=body):
                self.assertError(self.register(body), 400, "INVALID_JSON")
        self.assertEqual(self.node_count(), before)
        self.assertEqual(strict_json(self.node.get("/api/cluster/nodes/keep-2").body)
                         ["node"]["metadata"], {"i": 2})

    def test_not_json(self):
        before = self.node_count()
        for body in [b"\x00", b"{\x00}", b'{"url":"http://a:1"}\x00', b"\xef\xbb\xbf{}",
                     b"{'url':'http://a:1'}", b'{"url":"http://a:1",}', b"NaN", b"Infinity",
                     b'{"url":"http://a:1","metadata":{"x":NaN}}',
                     b'{"url":"http://a:1","metadata":{"x":Infinity}}',
                     b'{"url":"http://a:1","metadata":{"x":-Infinity}}',
                     b'{"url":"http://a:1","metadata":{"x":01}}',
                     b'{"url":"http://a:1","metadata":{"x":1.}}',
                     b'{"url":"http://a:1","metadata":{"x":.5}}',
                     b'{"url":"http://a:1","metadata":{"x":0x10}}',
                     b'{"url":"http://a:1","metadata":{"x":"raw\ttab"}}',
                     b'{"url":"http://a:1","metadata":{"x":"raw\nnewline"}}',
                     b'{"url":"http://a:1","metadata":{"x":"\\x41"}}',
                     b'{"url":"http://a:1","metadata":{"x":"\\u12"}}',
                     b'{"url":"http://a:1" "id":"a"}', b'{"url":"http://a:1"}}',
                     b"{" * 3, b'"' * 5, b"[1]", b"true", b"null", b"12", b" "]:
            with self.subTest(body=body):
                self.assertError(self.register(body), 400, ("INVALID_JSON", "VALIDATION_ERROR"))
        self.assertEqual(self.node_count(), before)

    def test_wrong_types_register(self):
        wrong = [0, -1, 1.5, 1e300, True, False, [], ["x"], {}, {"a": 1}, "", "str"]
        ok_for = {
            "url": lambda v: False,
            "id": lambda v: v == "str",
            "clusterId": lambda v: v == "str",
            "role": lambda v: False,
            "tags": lambda v: v == [] or v == ["x"],
            "capabilities": lambda v: v == {},
            "metadata": lambda v: v == {} or v == {"a": 1},
        }
        before = self.node_count()
        for field, ok in ok_for.items():
            for v in wrong:
                if ok(v):
                    continue
                body = {"id": "typed", "url": "http://10.0.0.5:5"}
                body[field] = v
                with self.subTest(field=field, value=v):
                    b = self.assertError(self.register(body), 400, "VALIDATION_ERROR")
                    self.assertEqual(b["details"].get("field"), field, b)
        # Wrong element types.
        for body in [{"tags": [1]}, {"tags": [None]}, {"tags": [[]]}, {"tags": [{}]},
                     {"tags": ["ok", 2]}, {"tags": [True]},
                     {"capabilities": {"a": 1}}, {"capabilities": {"a": "true"}},
                     {"capabilities": {"a": None}}, {"capabilities": {"a": []}},
                     {"capabilities": {"a": {}}}, {"capabilities": {"a": True, "b": 0}},
                     {"url": None}, {"url": ["http://a:1"]}, {"url": {"href": "http://a:1"}}]:
            b = {"id": "typed", "url": "http://10.0.0.5:5"}
            b.update(body)
            with self.subTest(body=body):
                e = self.assertError(self.register(b), 400, "VALIDATION_ERROR")
                self.assertEqual(e["details"].get("field"), next(iter(body)), e)
        self.assertEqual(self.node_count(), before)
        self.assertEqual(self.node.get("/api/cluster/nodes/typed").status, 404)

    def test_wrong_types_heartbeat(self):
        self.assertEqual(self.register({"id": "hb-typed", "url": "http://10.0.0.6:6",
                                        "metadata": {"keep": 1}}).status, 200)
        for body in [{"status": v} for v in (0, 1, True, [], {}, ["active"], "", "ACTIVE",
                                             "active ", "a" * 1000)] + \
                    [{"metadata": v} for v in (0, 1.5, True, [], ["x"], "str", "")]:
            with self.subTest(body=body):
                b = self.assertError(self.node.post("/api/cluster/heartbeat/hb-typed", body),
                                     400, "VALIDATION_ERROR")
                self.assertEqual(b["details"].get("field"), next(iter(body)), b)
        for body in [[], [1], "active", 1, True, None]:
            with self.subTest(body=body):
                self.assertError(self.node.post("/api/cluster/heartbeat/hb-typed",
                                                json.dumps(body)), 400,
                                 ("VALIDATION_ERROR", "INVALID_JSON"))
        n = strict_json(self.node.get("/api/cluster/nodes/hb-typed").body)["node"]
        self.assertEqual(n["metadata"], {"keep": 1})
        self.assertEqual(n["status"], "active")

    def test_huge_numbers(self):
        literals = ["1e400", "-1e400", "1e-400", "-0", "0e0", "1E+2", "99999999999999999999999",
                    "-99999999999999999999999", "1" * 300, "0." + "0" * 300 + "1",
                    "1.0000000000000000000000000001", "123456789012345678901234567890.5e-3",
                    "9007199254740993", "1e308", "2.2250738585072014e-308", "4.9e-324"]
        for i, lit in enumerate(literals):
            raw = ('{"id":"num-%d","url":"http://10.0.1.%d:1","metadata":{"v":%s,"a":[%s]}}'
                   % (i, i + 1, lit, lit))
            with self.subTest(literal=lit):
                r = self.register(raw)
                if r.status != 200:
                    self.assertError(r, 400, ("VALIDATION_ERROR", "INVALID_JSON"))
                    continue
                strict_json(r.body)
                want = json.loads('{"v":%s,"a":[%s]}' % (lit, lit))
                got = strict_json(self.node.get(f"/api/cluster/nodes/num-{i}").body)["node"]
                self.assertEqual(got["metadata"], want)
                # Heartbeats merge numbers too (load, memory, connections).
                hb = '{"metadata":{"load":%s,"memory":%s,"connections":%s}}' % (lit, lit, lit)
                r = self.node.post(f"/api/cluster/heartbeat/num-{i}", hb)
                if r.status != 200:
                    self.assertError(r, 400, ("VALIDATION_ERROR", "INVALID_JSON"))
        # Heartbeats of the node itself (its load reaches gossip and health).
        me = strict_json(self.node.get("/api/cluster/status").body)["status"]["id"]
        for lit in ["1e400", "-1e400", "99999999999999999999999", "1e-400"]:
            r = self.node.post(f"/api/cluster/heartbeat/{me}",
                               '{"metadata":{"load":%s,"memory":%s,"connections":%s}}'
                               % (lit, lit, lit))
            self.assertIn(r.status, (200, 400), r)
            strict_json(r.body)
        # Every view stays strict JSON.
        for path in ["/api/cluster/nodes", "/api/cluster/health", "/api/cluster/status",
                     "/api/cluster/service-status"]:
            r = self.node.get(path)
            self.assertEqual(r.status, 200, (path, r))
            strict_json(r.body)
        m = self.node.get("/metrics").body.decode()
        for line in m.splitlines():
            if line and not line.startswith("#"):
                self.assertRegex(line, r'^[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? -?[0-9.e+-]+$')

    def test_hostile_strings_round_trip(self):
        for i, s in enumerate(HOSTILE_STRINGS):
            body = {"id": f"str-{i}", "url": "http://10.0.2.1:1", "tags": [s, "plain"],
                    "capabilities": {s: True}, "metadata": {s: s, "nested": {"k": [s]}}}
            with self.subTest(string=s):
                r = self.register(json.dumps(body))
                self.assertEqual(r.status, 200, r)
                strict_json(r.body)
                for raw in [self.node.get(f"/api/cluster/nodes/str-{i}").body,
                            self.node.get("/api/cluster/nodes").body]:
                    doc = strict_json(raw)
                    nodes = [doc["node"]] if "node" in doc else doc["nodes"]
                    n = next(x for x in nodes if x["id"] == f"str-{i}")
                    self.assertEqual(n["tags"], [s, "plain"])
                    self.assertEqual(n["capabilities"], {s: True})
                    self.assertEqual(n["metadata"], {s: s, "nested": {"k": [s]}})
                # Heartbeat metadata merges hostile keys and values.
                r = self.node.post(f"/api/cluster/heartbeat/str-{i}",
                                   json.dumps({"metadata": {"hb" + s: s + "hb"}}))
                self.assertEqual(r.status, 200, r)
                n = strict_json(self.node.get(f"/api/cluster/nodes/str-{i}").body)["node"]
                self.assertEqual(n["metadata"]["hb" + s], s + "hb")
        # The same strings, sent with \\u escapes for every non-ASCII char.
        s = HOSTILE_STRINGS[-1] + "\u2028\U0001F600"
        r = self.register(json.dumps({"id": "str-esc", "url": "http://10.0.2.1:1",
                                      "metadata": {"s": s}}, ensure_ascii=True))
        self.assertEqual(r.status, 200, r)
        n = strict_json(self.node.get("/api/cluster/nodes/str-esc").body)["node"]
        self.assertEqual(n["metadata"], {"s": s})
        # And the event stream of these changes, from its start, is strict too.
        for path in ["/api/cluster/health", "/api/cluster/nodes?role=worker"]:
            strict_json(self.node.get(path).body)

    def test_event_stream_with_hostile_strings(self):
        """GET /api/cluster/events carries the same strings: every data line
        stays one line of strict JSON, and the strings come through intact."""
        c = RawConn(self.node.port)
        try:
            c.send(b"GET /api/cluster/events HTTP/1.1\r\nHost: x\r\n"
                   b"Accept: text/event-stream\r\n\r\n")
            deadline = time.monotonic() + READ_DEADLINE
            while b"event: hello" not in c.buf and not c.closed and time.monotonic() < deadline:
                c._recv(deadline)
            self.assertIn(b"event: hello", c.buf)
            want = {}
            for i, s in enumerate(HOSTILE_STRINGS):
                nid = f"ev-{i}"
                r = self.register(json.dumps({"id": nid, "url": "http://10.0.5.1:1",
                                              "tags": [s], "metadata": {s: s}}))
                self.assertEqual(r.status, 200, r)
                want[nid] = s
            seen = {}
            head, _, rest = c.buf.partition(b"\r\n\r\n")
            self.assertIn(b"text/event-stream", head)
            deadline = time.monotonic() + READ_DEADLINE
            while len(seen) < len(want) and time.monotonic() < deadline:
                while b"\n\n" in rest:
                    block, rest = rest.split(b"\n\n", 1)
                    for line in block.split(b"\n"):
                        if line.startswith(b"data: "):
                            ev = strict_json(line[6:])
                            if ev.get("id") in want and "node" in ev:
                                seen[ev["id"]] = ev["node"]
                if len(seen) < len(want):
                    before = len(c.buf)
                    if not c._recv(deadline) and c.closed:
                        break
                    rest += c.buf[before:]
            self.assertEqual(set(seen), set(want), "events missing from the stream")
            for nid, s in want.items():
                self.assertEqual(seen[nid]["tags"], [s])
                self.assertEqual(seen[nid]["metadata"], {s: s})
        finally:
            c.close()

    def test_nul_in_strings_never_truncated(self):
        """A \\u0000 inside a string: kept (metadata, which is JSON) or refused
        with 400, never silently cut at the NUL."""
        for i, body in enumerate([{"tags": ["a\u0000b"]}, {"capabilities": {"a\u0000b": True}},
                                  {"metadata": {"a\u0000b": "c\u0000d"}},
                                  {"role": "worker\u0000"}, {"clusterId": "default-cluster\u0000x"}]):
            b = {"id": f"nul-{i}", "url": "http://10.0.3.1:1"}
            b.update(body)
            field = next(iter(body))
            with self.subTest(body=body):
                r = self.register(b)
                if r.status == 200:
                    n = strict_json(self.node.get(f"/api/cluster/nodes/nul-{i}").body)["node"]
                    self.assertEqual(n[field], body[field])
                else:
                    e = self.assertError(r, 400, "VALIDATION_ERROR")
                    self.assertEqual(e["details"].get("field"), field, e)
        for body in [{"id": "a\u0000b", "url": "http://10.0.3.1:1"},
                     {"url": "http://10.0.3.1:1\u0000.evil"}]:
            with self.subTest(body=body):
                e = self.assertError(self.register(body), 400, "VALIDATION_ERROR")
                self.assertEqual(e["details"].get("field"), next(iter(body)), e)

    def test_nul_errors_say_what_is_wrong(self):
        """The refusal of a NUL must name the problem: "id is too long" for a
        3-character id is not a clear error (see routes.c opt_string,
        dup_string and json_get_string's refusal of \\u0000)."""
        for body in [{"id": "a\u0000b", "url": "http://10.0.3.1:1"},
                     {"url": "http://a\u0000:1"},
                     {"url": "http://10.0.3.1:1", "tags": ["\u0000"]},
                     {"url": "http://10.0.3.1:1", "role": "w\u0000"}]:
            with self.subTest(body=body):
                e = self.assertError(self.register(body), 400, "VALIDATION_ERROR")
                self.assertNotIn("too long", e["message"], e)

    def test_hostile_ids_in_bodies_and_paths(self):
        before = self.node_count()
        ids = ['a"b', "a\\b", "a\nb", "a\u2028b", "a b", "a/b", "../keep-0", "keep-0\u0000",
               "x" * 65, "", "\u00e9", "a\x7fb", "<script>", "a%00b", "keep-0 ", " keep-0"]
        for nid in ids:
            with self.subTest(id=nid):
                e = self.assertError(self.register({"id": nid, "url": "http://10.0.4.1:1"}),
                                     400, "VALIDATION_ERROR")
                self.assertEqual(e["details"].get("field"), "id", e)
        for nid in [i for i in ids[:-2] if i] + ["%", "%zz", "%FF%FE", "%C0%AF", "%ED%A0%80", "%22%5C%0A", ".",
                               "..", "keep-0/extra", "keep-0%2Fextra", "keep-0;x", "keep-0?x=1"]:
            quoted = nid if "%" in nid else "".join(
                c if (c.isascii() and c.isalnum()) or c in "-._~" else "".join(f"%{b:02X}" for b in c.encode())
                for c in nid)
            for method, path in [("GET", f"/api/cluster/nodes/{quoted}"),
                                 ("DELETE", f"/api/cluster/nodes/{quoted}"),
                                 ("POST", f"/api/cluster/heartbeat/{quoted}")]:
                with self.subTest(method=method, path=path):
                    r = self.node.request(method, path)
                    self.assertNotEqual(r.status, 200, r)
                    self.assertError(r, (400, 404, 405))
        self.assertEqual(self.node_count(), before)

    def test_hostile_query_strings(self):
        for q in ["role=%22%5C%0A%E2%80%A8", "clusterId=%00", "status=%FF", "role=%FF%FE",
                  "status=active&status=inactive", "role=" + "w" * 500, "=&&&=", "a=%",
                  "clusterId=%ED%A0%80", "role=%C0%AF", "status=act%00ive", "%00=%00"]:
            with self.subTest(q=q):
                r = self.node.get("/api/cluster/nodes?" + q)
                if r.status == 200:
                    body = strict_json(r.body)
                    self.assertEqual(body["total"], len(body["nodes"]))
                else:
                    self.assertError(r, 400, "VALIDATION_ERROR")


# ---- connections ---------------------------------------------------------------------

class SlowClientTest(NodeCase):
    EXTRA = {"idle_timeout": "60"}

    def test_slow_clients_do_not_block_others(self):
        """50 clients send their request one byte a second; a normal client
        is answered promptly all along, and the slow ones still get their
        answers in the end."""
        slow = [RawConn(self.node.port) for _ in range(50)]
        try:
            sent = 0
            for _ in range(8):  # bounded: 8 rounds of one byte each
                for c in slow:
                    c.send(REQ[sent:sent + 1])
                sent += 1
                t0 = time.monotonic()
                r = self.node.get("/api/cluster/nodes", timeout=PROMPT)
                self.assertEqual(r.status, 200, r)
                self.assertLess(time.monotonic() - t0, PROMPT)
                time.sleep(1)
            for c in slow:
                c.send(REQ[sent:])
            for c in slow:
                rs = c.responses(1)
                self.assertEqual([r.status for r in rs], [200])
        finally:
            for c in slow:
                c.close()

    def test_clients_that_never_read(self):
        """Clients pipelining many requests without reading the answers fill
        their own buffers, not the node's event loop."""
        hogs = []
        try:
            for _ in range(5):
                c = RawConn(self.node.port)
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                c.sock.settimeout(2)
                hogs.append(c)
                for _ in range(50):  # bounded: up to 50 x 100 requests each
                    try:
                        c.sock.sendall(b"GET /api/cluster/nodes HTTP/1.1\r\nHost: x\r\n\r\n" * 100)
                    except OSError:  # socket.timeout: our send buffer is full
                        break
            for _ in range(5):
                t0 = time.monotonic()
                r = self.node.get("/api/cluster/nodes", timeout=PROMPT)
                self.assertEqual(r.status, 200, r)
                self.assertLess(time.monotonic() - t0, PROMPT)
        finally:
            for c in hogs:
                c.close()

    def test_connect_and_vanish(self):
        """Connections that reset at once, half-close, or leave mid-request."""
        for i in range(200):  # bounded
            s = socket.create_connection(("127.0.0.1", self.node.port), timeout=5)
            if i % 4 == 0:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif i % 4 == 1:
                s.sendall(b"POST /api/cluster/register HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"u")
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif i % 4 == 2:
                s.sendall(REQ)
                s.shutdown(socket.SHUT_WR)
            else:
                s.sendall(REQ * 3)
            s.close()
        wait_for(lambda: metrics(self.node)["proxystone_http_connections"] <= 2,
                 what="every vanished connection released")


# A request head without its final CRLF: the connection has a request in
# progress, so it is not idle.
HALF_REQ = b"GET /api/cluster/nodes HTTP/1.1\r\nHost: x\r\n"


class ConnectionLimitTest(NodeCase):
    EXTRA = {"max_connections": "20", "idle_timeout": "60"}

    def busy_conn(self, body):
        """A connection whose request the server has read up to its body:
        in progress, so never closed as idle. The server's 100 Continue
        proves it read the head (bytes merely sent may still be in flight
        when a newcomer makes it pick an idle connection to close)."""
        c = RawConn(self.node.port)
        c.send(b"POST /api/cluster/register HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body))
        deadline = time.monotonic() + READ_DEADLINE
        while b"HTTP/1.1 100 Continue\r\n\r\n" not in c.buf:
            self.assertFalse(c.closed or time.monotonic() > deadline,
                             f"no 100 Continue: {c.buf[:200]!r}")
            c._recv(deadline)
        c.buf = c.buf.split(b"HTTP/1.1 100 Continue\r\n\r\n", 1)[1]
        return c

    def test_more_connections_than_the_limit(self):
        # The held connections are busy (a request's body awaited): an
        # idle one would be closed to make room for a newcomer instead.
        body = b'{"url":"http://10.6.0.1:1"}'
        held = []
        extra = []
        try:
            for _ in range(20):
                held.append(self.busy_conn(body))
            # The node has taken these 20 once one more is refused (one
            # just closed may still count for a moment: then the probe is
            # served, and held like the others).
            def refused_one():
                c = RawConn(self.node.port)
                c.send(REQ)
                rs = c.responses(1, timeout=5)
                if rs and rs[0].status == 200:
                    c.send(HALF_REQ)
                    held.append(c)
                    return False
                extra.append(c)
                return True
            wait_for(refused_one, what="a connection beyond the limit refused")
            for _ in range(20):
                extra.append(RawConn(self.node.port))
            answered = 0
            for c in extra:
                c.send(REQ)
                rs = c.responses(1, timeout=10)
                answered += bool(rs)
                if rs:
                    self.assertEqual(len(rs), 1, rs)
                    b = self.assertError(rs[0], 503, "TOO_MANY_CONNECTIONS")
                    self.assertEqual(b["details"].get("limit"), 20, b)
                    self.assertEqual(rs[0].headers.get("connection"), "close")
                self.assertTrue(c.wait_closed(10), "a connection beyond the limit stays open")
            # Not every refusal may get its 503 out (a reset), but most do.
            self.assertGreater(answered, 0, "no refused connection got the 503")
            # The held ones are real connections, served normally.
            for c in held[:5]:
                c.send(body)
                self.assertEqual([r.status for r in c.responses(1)], [200])
        finally:
            for c in held + extra:
                c.close()
        # Once they are gone, normal service.
        wait_for(lambda: self.node.get("/api/cluster/nodes", timeout=PROMPT).status == 200,
                 what="service after the connections closed")
        m = metrics(self.node)
        self.assertGreater(m['proxystone_http_rejected_total{reason="connection_limit"}'], 0)

    def test_idle_connections_make_room(self):
        """At the limit with every connection idle, newcomers are served:
        the longest idle connections are closed for them."""
        idle = []
        try:
            for _ in range(20):
                idle.append(RawConn(self.node.port))
            wait_for(lambda: metrics(self.node)["proxystone_http_connections"] >= 20,
                     what="20 idle connections held")
            for _ in range(5):
                r = self.node.get("/api/cluster/nodes", timeout=PROMPT)
                self.assertEqual(r.status, 200, r)
            m = metrics(self.node)
            self.assertGreater(m['proxystone_http_rejected_total{reason="evicted_idle"}'], 0)
            # The oldest went first, closed cleanly (EOF, no response).
            c = idle[0]
            c.responses(1, timeout=10)
            self.assertTrue(c.closed, "the longest idle connection was not closed")
            self.assertEqual(c.buf, b"")
        finally:
            for c in idle:
                c.close()

    def test_connection_storm(self):
        """A bounded storm of connections well past the limit, then normal service."""
        socks = []
        try:
            for _ in range(300):
                try:
                    s = socket.create_connection(("127.0.0.1", self.node.port), timeout=5)
                    s.sendall(REQ)
                    socks.append(s)
                except OSError:
                    pass
        finally:
            for s in socks:
                s.close()
        wait_for(lambda: self.node.get("/api/cluster/nodes", timeout=PROMPT).status == 200,
                 what="service after the storm")


class IdleTimeoutTest(NodeCase):
    EXTRA = {"idle_timeout": "1"}

    def test_silent_connection_is_closed(self):
        c = RawConn(self.node.port)
        try:
            self.assertTrue(c.wait_closed(15), "a silent connection was never closed")
            self.assertEqual(c.buf, b"")
        finally:
            c.close()
        self.assertGreater(metrics(self.node)['proxystone_http_rejected_total{reason="idle_timeout"}'], 0)

    def test_stalled_requests_are_closed(self):
        for data in [b"GET /api/clu",                                   # mid request line
                     b"GET /api/cluster/status HTTP/1.1\r\nHost: x\r\n",  # mid head
                     post_head(headers=b"Content-Length: 100\r\n\r\n{\"url\""),  # mid body
                     post_head(headers=b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"u")]:
            with self.subTest(data=data):
                c = RawConn(self.node.port)
                try:
                    c.send(data)
                    self.assertTrue(c.wait_closed(15), "a stalled request was never closed")
                    rs, _ = parse_responses(c.buf)
                    for r in rs:
                        self.assertError(r, (400, 408))
                finally:
                    c.close()

    def test_slowloris_is_cut_off(self):
        """One header byte every 0.2 s never completes a head within the idle
        window: the node closes the connection though bytes keep coming."""
        c = RawConn(self.node.port)
        head = b"GET /api/cluster/status HTTP/1.1\r\n" + b"X-Slow: " + b"s" * 200
        try:
            cut = False
            for b in head:  # bounded: about 240 bytes, 48 s at most
                if not c.send(bytes([b])):
                    cut = True
                    break
                c.sock.settimeout(0.2)
                try:
                    if c.sock.recv(65536) == b"":
                        cut = True
                        break
                except socket.timeout:
                    pass
                except OSError:
                    cut = True
                    break
            self.assertTrue(cut or c.wait_closed(15), "a slowloris was never cut off")
        finally:
            c.close()

    def test_keepalive_connection_idles_out_after_a_response(self):
        c = RawConn(self.node.port)
        try:
            c.send(REQ)
            self.assertEqual([r.status for r in c.responses(1)], [200])
            self.assertTrue(c.wait_closed(15), "an idle keep-alive connection stays open")
        finally:
            c.close()


# ---- UDP gossip -----------------------------------------------------------------------

class GossipFloodTest(NodeCase):
    EXTRA = {}

    def gossip_addr(self):
        return ("127.0.0.1", int(self.node.settings["gossip_port"]))

    def self_uuid(self):
        return uuid.UUID(strict_json(self.node.get("/api/cluster/status").body)
                         ["status"]["id"]).bytes

    def test_flood_of_random_truncated_oversized_datagrams(self):
        before = metrics(self.node)
        members_before = before['proxystone_gossip_members{status="alive"}']
        total_before = strict_json(self.node.get("/api/cluster/nodes").body)["total"]
        rng = random.Random(7)
        # Bit flips of a datagram of another cluster: a handful of flips
        # cannot turn "zzz..." into our cluster id, so none of them is a
        # valid datagram that would add a member.
        sample = datagram(cluster=b"z" * 15)
        addr = self.gossip_addr()
        sent = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            for i in range(20000):  # bounded
                kind = i % 10
                if kind < 5:
                    payload = rng.randbytes(rng.randint(1, 1400))
                elif kind == 5:
                    payload = sample[:rng.randint(0, len(sample) - 1)]
                elif kind == 6:
                    payload = (rng.randbytes(65507) if i % 100 == 6
                               else rng.randbytes(rng.randint(1401, 9000)))
                elif kind == 7:
                    payload = bytearray(sample)
                    for _ in range(rng.randint(1, 4)):
                        payload[rng.randrange(len(payload))] ^= 1 << rng.randrange(8)
                    payload = bytes(payload)
                elif kind == 8:
                    payload = b"\x00" * rng.randint(0, 64)
                else:
                    payload = rng.choice(malformed_datagrams())
                try:
                    s.sendto(payload, addr)
                    sent += 1
                except OSError:  # ENOBUFS under the flood: skip one
                    pass
                if i % 2000 == 1999:
                    # the node answers HTTP during the flood as well
                    r = self.node.get("/api/cluster/status", timeout=PROMPT * 4)
                    self.assertEqual(r.status, 200, r)
        self.assertGreater(sent, 10000)
        wait_for(lambda: dropped(self.node, "malformed")
                 > before['proxystone_gossip_dropped_total{reason="malformed"}'] + 100,
                 what="malformed datagrams counted")
        after = metrics(self.node)
        self.assertGreater(after['proxystone_gossip_packets_total{dir="received"}'],
                           before['proxystone_gossip_packets_total{dir="received"}'])
        self.assertEqual(after['proxystone_gossip_members{status="alive"}'], members_before,
                         "the flood added a gossip member")
        self.assertEqual(strict_json(self.node.get("/api/cluster/nodes").body)["total"],
                         total_before, "the flood changed the registry")

    def test_forged_datagrams_are_dropped_and_counted(self):
        """Well-formed datagrams that lie: another version, another cluster,
        our own id as sender; and each malformed kind. Sent slowly, so the
        kernel drops none and every counter must move."""
        me = self.self_uuid()
        before = metrics(self.node)
        total_before = strict_json(self.node.get("/api/cluster/nodes").body)["total"]
        addr = self.gossip_addr()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(5):
                for d in malformed_datagrams():
                    s.sendto(d, addr)
                s.sendto(datagram(version=2), addr)
                s.sendto(datagram(version=0), addr)
                s.sendto(datagram(version=1 << 31), addr)
                s.sendto(datagram(cluster=b"other-cluster"), addr)
                s.sendto(datagram(cluster=b""), addr)
                s.sendto(datagram(cluster=b"default-cluster\x00"), addr)
                s.sendto(datagram(cluster=b"x" * 200), addr)
                s.sendto(datagram(sender=me), addr)  # "from us"
                s.sendto(datagram(sender=me, mtype=2), addr)
                time.sleep(0.05)

        def moved(reason, n):
            key = f'proxystone_gossip_dropped_total{{reason="{reason}"}}'
            return dropped(self.node, reason) >= before[key] + n
        wait_for(lambda: moved("malformed", 5 * len(malformed_datagrams())),
                 what="every malformed datagram counted")
        wait_for(lambda: moved("bad_version", 10), what="other versions counted")
        wait_for(lambda: moved("bad_cluster", 15), what="other clusters counted")
        wait_for(lambda: moved("misdirected", 10), what="datagrams from our own id counted")
        after = metrics(self.node)
        self.assertEqual(after['proxystone_gossip_members{status="alive"}'],
                         before['proxystone_gossip_members{status="alive"}'],
                         "a forged datagram added a member")
        self.assertEqual(strict_json(self.node.get("/api/cluster/nodes").body)["total"],
                         total_before, "a forged datagram changed the registry")

    def test_node_of_another_cluster_is_dropped(self):
        """A real node with another cluster_id gossiping at us: counted as
        bad_cluster, never registered, and we keep serving."""
        before = dropped(self.node, "bad_cluster")
        stranger = Node(tmp=self.tmp, role="worker", extra={
            "cluster_id": "another-cluster",
            "cluster_ip": f"127.0.0.1:{self.node.port}",
            "coordinator_gossip": f"127.0.0.1:{self.node.settings['gossip_port']}",
            "heartbeat_interval": "1"})
        try:
            stranger.start()
            sid = strict_json(stranger.get("/api/cluster/status").body)["status"]["id"]
            wait_for(lambda: dropped(self.node, "bad_cluster") >= before + 3,
                     what="the other cluster's datagrams counted")
            ids = {n["id"] for n in strict_json(self.node.get("/api/cluster/nodes").body)["nodes"]}
            self.assertNotIn(sid, ids)
            self.assertEqual(metrics(self.node)['proxystone_gossip_members{status="alive"}'], 1)
        finally:
            stranger.save_log("hostile-stranger")
            stranger.stop()


if __name__ == "__main__":
    unittest.main()
