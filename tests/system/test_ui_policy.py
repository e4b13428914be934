"""The dashboard's Content-Security-Policy (src/ui/csp.c): connect-src names
the exact origins ui_backends expands to, plus the operator-approved ones
the page lists in its ps_connect cookie, and never a scheme or a wildcard,
whatever the Host header or the cookie say."""

import http.client
import re
import unittest

from harness import Node, free_port, wait_for


def connect_src(policy):
    m = re.search(r"connect-src ([^;]*)", policy)
    return m.group(1).split() if m else None


class UiPolicyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ui_port = free_port()
        cls.node = Node(extra={"ui_port": str(cls.ui_port),
                               "ui_backends": "127.0.0.1:4401-4403, Node-7.example:9000"}).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.save_log("ui-policy")
        cls.node.stop()

    def page(self, headers=None, path="/"):
        def get():
            conn = http.client.HTTPConnection("127.0.0.1", self.ui_port, timeout=10)
            try:
                conn.request("GET", path, headers=headers or {})
                r = conn.getresponse()
                r.read()
                return r
            except OSError:
                return None
            finally:
                conn.close()
        r = wait_for(get, what="the dashboard to serve")
        return r.status, r.getheader("Content-Security-Policy") or ""

    def assertNoWildcard(self, sources):
        for s in sources:
            self.assertNotIn("*", s)
            self.assertNotIn(s, ("http:", "https:", "ws:", "wss:", "data:", "blob:"))
            self.assertRegex(s, r"^('self'|https?://[a-z0-9.\-\[\]:]+:\d+)$")

    def test_configured_origins_exactly(self):
        status, policy = self.page()
        self.assertEqual(status, 200)
        src = connect_src(policy)
        self.assertEqual(src, ["'self'", "http://127.0.0.1:4401", "http://127.0.0.1:4402",
                               "http://127.0.0.1:4403", "http://node-7.example:9000"])
        self.assertIn("script-src 'self'", policy)
        self.assertIn("frame-ancestors 'none'", policy)
        self.assertNoWildcard(src)

    def test_every_file_gets_the_policy(self):
        for path in ("/index.html", "/app.js", "/style.css", "/favicon.svg"):
            status, policy = self.page(path=path)
            self.assertEqual(status, 200, path)
            self.assertEqual(len(connect_src(policy)), 5, path)

    def test_loopback_backends_also_under_the_page_host(self):
        _, policy = self.page({"Host": "dash.example:4400"})
        src = connect_src(policy)
        for p in (4401, 4402, 4403):
            self.assertIn(f"http://127.0.0.1:{p}", src)
            self.assertIn(f"http://dash.example:{p}", src)
        self.assertNotIn("http://dash.example:9000", src)  # not a loopback entry
        # A loopback page host adds nothing; a malformed one is ignored.
        for host in ("localhost:4400", "bad host", "x;y", "*", "[::1", "[zz]:1"):
            _, policy = self.page({"Host": host})
            self.assertEqual(len(connect_src(policy)), 5, host)

    def test_approved_origins_from_the_cookie(self):
        cookie = ("theme=dark; ps_connect=http://10.0.0.9:4401|https://Ops.Example:8443"
                  "|http://[fd00::1]:80; other=1")
        _, policy = self.page({"Cookie": cookie})
        src = connect_src(policy)
        self.assertEqual(src[5:], ["http://10.0.0.9:4401", "https://ops.example:8443",
                                   "http://[fd00::1]:80"])
        self.assertNoWildcard(src)

    def test_malformed_cookie_entries_are_dropped(self):
        bad = ["http:", "https:", "*", "http://*:80", "http://evil", "http://evil:0",
               "http://evil:65536", "http://evil:80/path", "ftp://evil:21",
               "http://evil:80 'unsafe-inline'",
               "http://-evil:80", "javascript://x:1", "'self'", "http://ev'il:80",
               "http://evil:80,http://more:80", "HTTP://evil:80", "http://evil:+80"]
        _, policy = self.page({"Cookie": "ps_connect=" + "|".join(bad)})
        self.assertEqual(len(connect_src(policy)), 5, policy)
        self.assertNotIn("evil", policy)
        self.assertNotIn("unsafe", policy)
        self.assertEqual(policy.count(";"), 7, policy)  # no directive added
        # A ';' ends the cookie: what follows is another cookie, not policy.
        _, policy = self.page({"Cookie": "ps_connect=http://a.example:1;script-src *"})
        self.assertEqual(connect_src(policy)[5:], ["http://a.example:1"])
        self.assertNotIn("*", policy)

    def test_approved_origins_are_bounded(self):
        many = "|".join(f"http://h{i}.example:80" for i in range(40))
        _, policy = self.page({"Cookie": f"ps_connect={many}"})
        src = connect_src(policy)
        self.assertEqual(len(src), 5 + 16)
        self.assertIn("http://h15.example:80", src)
        self.assertNotIn("http://h16.example:80", src)
        # Still serving, and the policy of the next request is its own.
        _, policy = self.page()
        self.assertEqual(len(connect_src(policy)), 5)

    def test_config_json_unchanged(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.ui_port, timeout=10)
        try:
            conn.request("GET", "/config.json")
            r = conn.getresponse()
            body = r.read()
        finally:
            conn.close()
        self.assertEqual(r.status, 200)
        self.assertIn(b'"backends":"127.0.0.1:4401-4403, Node-7.example:9000"', body)


if __name__ == "__main__":
    unittest.main()
