"""Shared helpers for the benchmark sections (tests/bench/NN_*.py).

Python 3.11 standard library only. A section script is a program:

    import lib
    sec = lib.Section("http", "HTTP reads", __file__)
    ... measure ...
    sec.table("caption", ["col", ...], rows, notes=[...])
    sec.save()

`run` starts each section as its own process, with a time budget, and
builds BENCHMARKS.md from the JSON the sections save in tests/bench/out/.
A section owns its processes: everything it starts through this module
(Node, Nginx, wrk via run_wrk, spawn) is killed when the section exits,
also on an exception, SIGTERM or SIGINT; `run` kills leftovers by the
environment marker PS_BENCH_TOKEN as a backstop.
"""

import asyncio
import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "out")
# `run` copies bin/proxystone once, so a rebuild by someone else half-way
# through does not mix two binaries in one report.
BIN = os.environ.get("PS_BENCH_BIN") or os.path.join(ROOT, "bin", "proxystone")
REPS = max(3, int(os.environ.get("BENCH_REPS", "3")))
QUICK = os.environ.get("BENCH_QUICK") == "1"
# Scratch space on the same file system as a real data_dir would be (the
# snapshot is fsynced, so tmpfs would flatter the write numbers).
SCRATCH = os.environ.get("PS_BENCH_SCRATCH") or tempfile.mkdtemp(prefix="ps-bench-")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# --------------------------------------------------------------------------
# Process bookkeeping: every process we start, killed at exit.

_procs = []


def _kill_all():
    for p in reversed(_procs):
        try:
            pids = [p.pid] + descendants(p.pid) if p.poll() is None else []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if pids:
                p.wait(5)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def _at_exit():
    _kill_all()
    if not os.environ.get("PS_BENCH_SCRATCH"):
        shutil.rmtree(SCRATCH, ignore_errors=True)


atexit.register(_at_exit)


def _on_signal(signum, _frame):
    _at_exit()
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def spawn(argv, log_path=None, **kw):
    """Popen tracked for cleanup; output to log_path (or discarded)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, **kw)
    if log_path:
        out.close()
    _procs.append(p)
    return p


def _ppid_map():
    m = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    m[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return m


def descendants(pid):
    m = _ppid_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in m.items() if pp == p]
        out += kids
        todo += kids
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------
# /proc measurements.

def mem_kb(pid):
    """(Pss, Rss, Uss) in kB from /proc/pid/smaps_rollup; zeros if gone.
    Uss = Private_Clean + Private_Dirty (pages only this process maps)."""
    pss = rss = uss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k == "Pss":
                    pss = int(v.split()[0])
                elif k == "Rss":
                    rss = int(v.split()[0])
                elif k in ("Private_Clean", "Private_Dirty"):
                    uss += int(v.split()[0])
    except OSError:
        pass
    return pss, rss, uss


def tree_mem_kb(pids):
    """Sums of (Pss, Rss, Uss) in kB over pids."""
    tot = [0, 0, 0]
    for p in pids:
        for i, v in enumerate(mem_kb(p)):
            tot[i] += v
    return tuple(tot)


def cpu_ticks(pid):
    """utime + stime of pid in clock ticks (0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def cpu_ns(pid):
    """CPU time of pid's main thread in ns from /proc/pid/schedstat (exact,
    unlike the 10 ms ticks of stat; our processes are single-threaded)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        return 0


# --------------------------------------------------------------------------
# Ports.

_handed = set()


def free_port():
    """A port free for both TCP and UDP on 127.0.0.1, never handed twice."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in _handed:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
        except OSError:
            continue
        _handed.add(port)
        return port


# --------------------------------------------------------------------------
# HTTP.

def http_request(port, method, path, body=None, timeout=10):
    """(status, body bytes). body: dict/list (JSON), str, bytes or None."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def get_json(port, path, timeout=10):
    st, body = http_request(port, "GET", path, timeout=timeout)
    if st != 200:
        raise RuntimeError(f"GET {path} on {port}: {st} {body[:200]!r}")
    return json.loads(body)


def raw_get(port, path, timeout=10):
    """The exact response (head, body) bytes of one GET (Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  f"Connection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def bench_id(i, prefix="5c0de000"):
    """The id of benchmark node i: a UUID, as the Lua scripts build it."""
    return f"{prefix}-0000-4000-8000-{i:012d}"


def register_body(i, prefix="5c0de000"):
    """A realistic registration body (as the spec's example) for node i."""
    return {
        "id": bench_id(i, prefix),
        "url": f"http://10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:4401",
        "clusterId": "default-cluster",
        "role": "worker",
        "capabilities": {},
        "tags": [],
        "metadata": {"autoRegistered": True, "nodeVersion": "0.1.0",
                     "platform": "linux",
                     "startTime": "2026-01-01T00:00:00.000Z"},
    }


def register_many(port, start, count, conns=64, prefix="5c0de000"):
    """Registers nodes start..start+count-1 over `conns` keep-alive
    connections at once; raises on any non-2xx. Returns seconds taken."""

    async def worker(queue):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                body = json.dumps(register_body(i, prefix)).encode()
                w.write(b"POST /api/cluster/register HTTP/1.1\r\n"
                        b"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await w.drain()
                status = await r.readline()
                length = 0
                while True:
                    line = await r.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await r.readexactly(length)
                code = int(status.split()[1])
                if not 200 <= code < 300:
                    raise RuntimeError(f"register {i}: HTTP {code}")
        finally:
            w.close()

    async def main():
        queue = asyncio.Queue()
        for i in range(start, start + count):
            queue.put_nowait(i)
        await asyncio.gather(*(worker(queue) for _ in range(conns)))

    t0 = time.monotonic()
    asyncio.run(main())
    return time.monotonic() - t0


def wait_for(pred, timeout=20.0, interval=0.02, what="condition"):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = pred()
            if last:
                return last
        except (OSError, http.client.HTTPException, ValueError, RuntimeError) as e:
            last = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# --------------------------------------------------------------------------
# A proxystone node (supervisor tree).

class Node:
    """One supervisor tree with its own config file, data dir and ports."""

    def __init__(self, role="coordinator", tmp=None, port=None, gossip=True,
                 **settings):
        self.tmp = tmp or tempfile.mkdtemp(prefix="node-", dir=SCRATCH)
        self.port = port or free_port()
        gport = free_port()
        self.data_dir = os.path.join(self.tmp, f"data-{self.port}")
        self.conf = os.path.join(self.tmp, f"node-{self.port}.conf")
        self.log_path = os.path.join(self.tmp, f"node-{self.port}.log")
        self.settings = {"role": role, "api_host": "127.0.0.1",
                         "api_port": str(self.port),
                         "gossip_port": str(gport) if gossip else "0",
                         "data_dir": self.data_dir, "log_level": "info"}
        self.settings.update({k: str(v) for k, v in settings.items()})
        self.proc = None
        with open(self.conf, "w") as f:
            for k, v in self.settings.items():
                f.write(f"{k} = {v}\n")

    @property
    def gossip_port(self):
        return int(self.settings["gossip_port"])

    def start(self, wait=True):
        self.proc = spawn([BIN, "--config", self.conf], self.log_path)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20.0):
        wait_for(lambda: http_request(self.port, "GET", "/api/cluster/status",
                                      timeout=2)[0] == 200,
                 timeout=timeout, what=f"node on {self.port} to serve")

    def pids(self):
        """Supervisor and its children (api, membership, ...)."""
        if not self.proc or self.proc.poll() is not None:
            return []
        return [self.proc.pid] + descendants(self.proc.pid)

    def mem_kb(self):
        return tree_mem_kb(self.pids())

    def cpu_ticks(self):
        return sum(cpu_ticks(p) for p in self.pids())

    def node_id(self):
        return get_json(self.port, "/api/cluster/status")["status"]["id"]

    def get(self, path, timeout=10):
        return get_json(self.port, path, timeout)

    def stop(self, timeout=10.0):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()

    def kill9(self):
        """kill -9 of the whole tree at once; waits until all are gone."""
        if not self.proc:
            return
        pids = self.pids()
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        wait_for(lambda: not any(alive(p) for p in pids), timeout=5,
                 interval=0.005, what="tree to die")


# --------------------------------------------------------------------------
# nginx, as the ceiling: the same bytes as a static file.

class Nginx:
    """nginx from Debian with its own minimal config in a temp dir.

    workers=1: `master_process off` (one process serves everything);
    workers=2: `master_process on; worker_processes 2` (an idle master and
    two serving workers: the shape of our supervisor, api and membership).
    """

    def __init__(self, workers=1):
        self.workers = workers
        self.dir = tempfile.mkdtemp(prefix="nginx-", dir=SCRATCH)
        self.root = os.path.join(self.dir, "www")
        os.makedirs(os.path.join(self.dir, "tmp"))
        os.makedirs(self.root)
        self.port = free_port()
        self.proc = None

    def put(self, path, body):
        """Serve body at URL path (a file under the document root)."""
        fp = os.path.join(self.root, path.lstrip("/"))
        os.makedirs(os.path.dirname(fp), exist_ok=True)
        with open(fp, "wb") as f:
            f.write(body)

    def start(self):
        d, t = self.dir, os.path.join(self.dir, "tmp")
        master = "off" if self.workers == 1 else "on"
        # As root, workers would switch to "nobody", who cannot read our
        # private temp dir: keep them as the user who runs the benchmark.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = f"""daemon off;
{user}master_process {master};
worker_processes {self.workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {t}; proxy_temp_path {t}; fastcgi_temp_path {t};
  uwsgi_temp_path {t}; scgi_temp_path {t};
  default_type application/json;
  etag off;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{self.port};
    root {self.root};
    location / {{
      add_header Access-Control-Allow-Origin * always;
      try_files $uri =404;
    }}
  }}
}}
"""
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(conf)
        self.proc = spawn(["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf")],
                          os.path.join(d, "stdout.log"))
        wait_for(lambda: raw_get(self.port, "/")[0] != b"", timeout=10,
                 what="nginx to serve")
        return self

    def pids(self):
        if not self.proc or self.proc.poll() is not None:
            return []
        return [self.proc.pid] + descendants(self.proc.pid)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT if self.workers > 1 else signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                for p in self.pids():
                    os.kill(p, signal.SIGKILL)
                self.proc.wait()


# --------------------------------------------------------------------------
# wrk.

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    return float(m.group(1)) * _UNIT[m.group(2)]


def run_wrk(url, duration=5, threads=2, conns=64, script=None, args=(),
            timeout_s=None, during=None, cpus=None):
    """Runs wrk --latency; returns dict rps, p50, p99 (ms), requests,
    non2xx, errors (socket errors: connect+read+write+timeout), raw.
    during: optional callable run (in this thread) while wrk runs; its
    return value is in result['during']. cpus: e.g. "1", wrk pinned there
    (taskset)."""
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency"]
    if cpus is not None:
        argv = ["taskset", "-c", str(cpus)] + argv
    if timeout_s:
        argv.append(f"--timeout={timeout_s}s")
    if script:
        argv += ["-s", script]
    argv.append(url)
    if args:
        argv += ["--", *map(str, args)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, text=True)
    _procs.append(p)
    during_result = during() if during else None
    try:
        out, _ = p.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        raise RuntimeError(f"wrk hung: {' '.join(argv)}")
    _procs.remove(p)
    if p.returncode != 0:
        raise RuntimeError(f"wrk failed ({p.returncode}): {out}")
    res = {"raw": out, "during": during_result, "non2xx": 0, "errors": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        res[key] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["errors"] = sum(int(x) for x in m.groups())
    return res


# --------------------------------------------------------------------------
# Statistics and formatting.

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def fmt_rps(x):
    return f"{x:,.0f}"


def fmt_ms(x):
    if x != x:  # nan
        return "-"
    if x >= 100:
        return f"{x:.0f} ms"
    if x >= 10:
        return f"{x:.1f} ms"
    return f"{x:.2f} ms"


def fmt_mb(kb):
    return f"{kb / 1024:.1f} MB"


def fmt_ratio(x):
    return f"{x:.2f}"


def verdict(ok, target):
    """Table cell: 'ok (target)' or '**MISSED** (target)'."""
    return f"ok ({target})" if ok else f"**MISSED** ({target})"


# --------------------------------------------------------------------------
# Sections.

class Section:
    """A section's results: tables, notes and plots, saved as
    tests/bench/out/<key>.json for `run` to put in BENCHMARKS.md."""

    def __init__(self, key, title, script):
        self.key = key
        self.data = {"key": key, "title": title,
                     "script": os.path.relpath(os.path.abspath(script), ROOT),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                     "commit": os.environ.get("PS_BENCH_COMMIT", ""),
                     "reps": REPS, "quick": QUICK, "intro": "",
                     "blocks": [], "plots": [], "missed": [], "problems": [],
                     "raw": {}}
        self.t0 = time.monotonic()
        self.log(f"== {title}")

    def log(self, msg):
        print(f"[{self.key} {time.monotonic() - self.t0:6.1f}s] {msg}",
              file=sys.stderr, flush=True)

    def intro(self, text):
        self.data["intro"] = text.strip()

    def table(self, caption, columns, rows, notes=()):
        self.data["blocks"].append({"type": "table", "caption": caption,
                                    "columns": columns, "rows": rows,
                                    "notes": list(notes)})
        print(render_table(caption, columns, rows, notes, markdown=False), flush=True)

    def note(self, text):
        self.data["blocks"].append({"type": "note", "text": text.strip()})

    def missed(self, text):
        """A missed target, for the summary and the reply."""
        self.data["missed"].append(text)

    def problem(self, text):
        """Something that went wrong while measuring (errors under load, a
        node that stopped answering...): listed at the top of BENCHMARKS.md."""
        self.data["problems"].append(text)
        self.log("PROBLEM: " + text)

    def plot(self, png_name, caption):
        self.data["plots"].append({"file": png_name, "caption": caption})

    def raw(self, key, value):
        self.data["raw"][key] = value

    def save(self):
        self.data["seconds"] = round(time.monotonic() - self.t0, 1)
        os.makedirs(OUT, exist_ok=True)
        path = os.path.join(OUT, f"{self.key}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(path + ".tmp", path)
        self.log(f"saved {os.path.relpath(path, ROOT)} ({self.data['seconds']} s)")


def render_table(caption, columns, rows, notes=(), markdown=True):
    cells = [[str(c) for c in columns]] + [[str(c) for c in r] for r in rows]
    if markdown:
        lines = [f"**{caption}**", ""] if caption else []
        lines.append("| " + " | ".join(cells[0]) + " |")
        lines.append("|" + "|".join("---" for _ in columns) + "|")
        for r in cells[1:]:
            lines.append("| " + " | ".join(r) + " |")
        if notes:
            lines.append("")
            lines += [n for n in notes]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["", caption, ""] if caption else [""]
    for j, r in enumerate(cells):
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    for n in notes:
        lines.append(n)
    return "\n".join(lines)


def gnuplot(script, png_path):
    """Runs a gnuplot script (pngcairo or png terminal set here)."""
    term = "pngcairo size 900,540 font 'sans,11'"
    probe = subprocess.run(["gnuplot", "-e", "set terminal pngcairo"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or probe.stderr.strip():
        term = "png size 900,540"
    full = f"set terminal {term}\nset output '{png_path}'\n{script}\n"
    r = subprocess.run(["gnuplot"], input=full, capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"gnuplot failed: {r.stderr}")


def scratch_dir(name):
    return tempfile.mkdtemp(prefix=name + "-", dir=SCRATCH)
