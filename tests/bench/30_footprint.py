#!/usr/bin/env python3
"""Footprint: memory of the whole supervisor tree (idle, 10,000 nodes,
under HTTP load) and the time from exec to the first served GET."""
# bench-budget: 200

import errno
import os
import shutil
import socket
import subprocess
import threading
import time

import lib

STARTS = 10
LOAD_S = 2 if lib.QUICK else 5
SETTLE_S = 1.0
BIG = 2000 if lib.QUICK else 10000

sec = lib.Section("footprint", "Footprint", __file__)
sec.intro(f"""
Memory is summed over the supervisor and all its children (api, membership), from
`/proc/<pid>/smaps_rollup`, three ways: **RSS** (resident pages; a page shared by the three
forked processes or with other programs, such as the binary's text and libc, counts once
per process, so the sum overstates the tree: the target is checked on it, the
conservative figure), **PSS** (each shared page divided among all processes on the machine
that map it; flatters us, since libc is shared with everything else running) and **USS**
(Private_Clean + Private_Dirty: pages only that process maps; what killing the tree would
free at least). "Idle" is {SETTLE_S:.0f} s after start with the coordinator alone (and
gossip on); "under load" is the peak of samples taken every 0.2 s during `wrk -t2 -c64
-d{LOAD_S}s` on `GET /api/cluster/nodes`. Start-up is the time from spawning
`bin/proxystone` (fork + exec, fresh data dir each time) to the first `200` for
`GET /api/cluster/nodes`, polled every 1 ms over a raw socket; median of {STARTS} starts.
Memory figures are medians of {lib.REPS} fresh trees.
""")


def per_role(node):
    """{role: pss kB} for supervisor, membership, api (by command line)."""
    out = {"supervisor": 0, "membership": 0, "api": 0}
    for pid in node.pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cl = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pss = lib.mem_kb(pid)[0]
        role = "supervisor"
        for r in ("membership", "api", "ui"):
            if f": {r}" in cl:
                role = r
        out[role] = out.get(role, 0) + pss
    return out


def snapshot(node):
    pss, rss, uss = node.mem_kb()
    d = per_role(node)
    d.update({"pss": pss, "rss": rss, "uss": uss})
    return d


def reconnects(node):
    _, body = lib.http_request(node.port, "GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith('proxystone_ipc_errors_total{reason="reconnect"}'):
            return float(line.split()[-1])
    return 0.0


def under_load(node, path="/api/cluster/nodes", timeout_s=None):
    peak = {}
    rc0 = reconnects(node)

    def sampler():
        end = time.monotonic() + LOAD_S
        samples = []
        while time.monotonic() < end:
            samples.append(snapshot(node))
            time.sleep(0.2)
        return samples

    r = lib.run_wrk(f"http://127.0.0.1:{node.port}{path}", duration=LOAD_S,
                    during=sampler, timeout_s=timeout_s)
    samples = r["during"]
    best = max(samples, key=lambda s: s["pss"])
    peak.update(best)
    peak["rps"] = r["rps"]
    peak["errors"] = r["non2xx"] + r["errors"]
    peak["ok"] = r["requests"] - r["non2xx"]
    time.sleep(0.3)
    peak["reconnects"] = reconnects(node) - rc0
    with open(node.log_path, errors="replace") as f:
        peak["too_slow"] = f.read().count("client too slow")
    return peak


def first_get_ms(tmp):
    """Spawns a fresh coordinator; ms until GET /api/cluster/nodes is 200."""
    node = lib.Node("coordinator", tmp=tmp)
    req = (b"GET /api/cluster/nodes HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Connection: close\r\n\r\n")
    t0 = time.monotonic()
    node.start(wait=False)
    first_any = None
    deadline = t0 + 10
    while time.monotonic() < deadline:
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", node.port))
            s.sendall(req)
            data = s.recv(64)
            if first_any is None and data.startswith(b"HTTP/1.1 "):
                first_any = (time.monotonic() - t0) * 1000
            if data.startswith(b"HTTP/1.1 200"):
                t1 = time.monotonic()
                return node, (t1 - t0) * 1000, first_any
        except OSError as e:
            if e.errno not in (errno.ECONNREFUSED, errno.ECONNRESET, errno.EPIPE):
                raise
        finally:
            s.close()
        time.sleep(0.001)
    raise RuntimeError("coordinator did not serve within 10 s")


# --- start-up time and idle footprint --------------------------------------
starts, anys, idle = [], [], []
for i in range(STARTS):
    tmp = lib.scratch_dir("start")
    node, ms, any_ms = first_get_ms(tmp)
    starts.append(ms)
    anys.append(any_ms)
    if i < lib.REPS:
        time.sleep(SETTLE_S)
        idle.append(snapshot(node))
    node.stop()
    shutil.rmtree(tmp, ignore_errors=True)
sec.log(f"start-up ms: {', '.join(f'{x:.1f}' for x in starts)}; "
        f"first response (any status): {', '.join(f'{x:.1f}' for x in anys)}")

# --- under load with 3 nodes; 10,000 nodes idle and under load -------------
load3, big_idle, big_load, reg_s = [], [], [], []
for rep in range(lib.REPS):
    node = lib.Node("coordinator").start()
    lib.register_many(node.port, 0, 2)
    load3.append(under_load(node))
    node.stop()
for rep in range(lib.REPS):
    node = lib.Node("coordinator").start()
    reg_s.append(lib.register_many(node.port, 0, BIG - 1))
    time.sleep(SETTLE_S)
    big_idle.append(snapshot(node))
    big_load.append(under_load(node, timeout_s=30))
    node.stop()
    sec.log(f"{BIG} nodes: idle {big_idle[-1]['pss']} kB, load {big_load[-1]['pss']} kB "
            f"({big_load[-1]['rps']:.0f} req/s)")


def row(label, samples, target=None):
    def m(k):
        return lib.median([s[k] for s in samples])
    cells = [label, lib.fmt_mb(m("supervisor")), lib.fmt_mb(m("membership")),
             lib.fmt_mb(m("api")), f"**{lib.fmt_mb(m('rss'))}**", lib.fmt_mb(m("pss")),
             lib.fmt_mb(m("uss"))]
    if "rps" in samples[0]:
        cells.append(f"{lib.median([s['rps'] for s in samples]):,.0f}")
        errs = sum(s["errors"] for s in samples)
        cells.append(f"**{errs:,}**" if errs else "0")
        if errs:
            sec.problem(f"{label}: {errs:,} of the requests during the load runs failed "
                        "(non-2xx or socket errors); see the note under the memory table")
    else:
        cells += ["-", "-"]
    if target:
        ok = m("rss") <= target * 1024
        cells.append(lib.verdict(ok, f"RSS sum ≤ {target} MB"))
        if not ok:
            sec.missed(f"{label}: tree RSS sum {lib.fmt_mb(m('rss'))} "
                       f"(PSS {lib.fmt_mb(m('pss'))}; target ≤ {target} MB)")
    else:
        cells.append("-")
    return cells


rows = [row("idle, 1 node (the coordinator)", idle, target=8),
        row("`GET /nodes` load, 3 nodes (peak)", load3),
        row(f"idle, {BIG:,} nodes", big_idle),
        row(f"`GET /nodes` load, {BIG:,} nodes (peak)", big_load)]
notes = [f"Registering the {BIG - 1:,} nodes over 64 connections took "
         f"{lib.median(reg_s):.1f} s (median)."]
for label, runs in ((f"{BIG:,} nodes", big_load), ("3 nodes", load3)):
    if any(s["errors"] for s in runs):
        detail = []
        slow = sum(s["too_slow"] for s in runs)
        rec = sum(s["reconnects"] for s in runs)
        if slow:
            detail.append(f"membership logged `client too slow` {slow} times")
        if rec:
            detail.append(f"the api reconnected to membership {rec:.0f} times")
        notes.append(
            f"**Under `GET /nodes` load with {label}, "
            f"{sum(s['errors'] for s in runs):,} of "
            f"{sum(s['errors'] + s['ok'] for s in runs):,} requests failed** over the "
            f"{lib.REPS} runs (non-2xx or socket errors)"
            + (": " + "; ".join(detail) if detail else "")
            + ". The req/s figure counts the failed answers too.")
sec.table("Memory of the supervisor tree",
          ["state", "supervisor PSS", "membership PSS", "api PSS", "tree RSS (sum)",
           "tree PSS", "tree USS", "req/s during", "errors during", "target"], rows,
          notes=notes)

st = sorted(starts)
ok = lib.median(starts) <= 50
if not ok:
    sec.missed(f"start-up to first GET /cluster/nodes: {lib.median(starts):.1f} ms "
               "(target ≤ 50 ms)")
sec.table("Start-up: spawn to first 200 for GET /api/cluster/nodes (fresh data dir)",
          ["starts", "median", "min", "max", "first HTTP response of any status (median)",
           "target"],
          [[str(len(starts)), f"**{lib.median(starts):.1f} ms**", f"{st[0]:.1f} ms",
            f"{st[-1]:.1f} ms", f"{lib.median(anys):.1f} ms",
            lib.verdict(ok, "≤ 50 ms")]],
          notes=["Until the api process has connected to membership it answers "
                 "`503 MEMBERSHIP_UNAVAILABLE`; the first-response column shows when the "
                 "HTTP listener itself was up."])
sec.raw("first_any_ms", anys)
sec.raw("starts_ms", starts)
sec.raw("idle", idle)
sec.raw("load3", load3)
sec.raw("big_idle", big_idle)
sec.raw("big_load", big_load)
sec.save()
