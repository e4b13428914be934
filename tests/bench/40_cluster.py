#!/usr/bin/env python3
"""Real processes: clusters of N nodes on loopback (1 coordinator + N-1
workers, each a supervisor tree), steady-state CPU and gossip bytes per
node, and crash detection (kill -9 of a worker's tree) as the coordinator
sees it."""
# bench-budget: 330

import math
import os
import re
import signal
import time

import lib

SIZES = [5, 10] if lib.QUICK else [10, 25, 50]
STEADY_S = {n: (5 if lib.QUICK else (20 if n == max(SIZES) else 10)) for n in SIZES}
KILLS = {n: (3 if lib.QUICK else (5 if n == max(SIZES) else 3)) for n in SIZES}
WARMUP_S = 2 if lib.QUICK else 4
POLL_S = 0.02
DETECT_DEADLINE_S = 60

sec = lib.Section("cluster", "Real processes: a cluster on loopback", __file__)
GOSSIP_KEYS = ["probe_interval", "probe_timeout", "indirect_checks", "suspicion_mult",
               "heartbeat_interval"]


def documented_defaults():
    """Defaults of the gossip keys as README.md's configuration table gives
    them (the defaults change as the protocol is tuned; never hard-coded)."""
    out = {}
    try:
        with open(os.path.join(lib.ROOT, "README.md")) as f:
            for line in f:
                m = re.match(r"\|\s*`(\w+)`[^|]*\|\s*`([^`]+)`\s*\|", line)
                if m and m.group(1) in GOSSIP_KEYS:
                    out[m.group(1)] = m.group(2)
    except OSError:
        pass
    return out


def defaults_text():
    d = documented_defaults()
    if not d:
        return "see README.md, Configuration"
    return ", ".join(f"{k} {v}" for k, v in d.items()) + " as README.md documents them"


def suspicion_note():
    d = documented_defaults()
    try:
        mult, interval = float(d["suspicion_mult"]), float(d["probe_interval"])
    except (KeyError, ValueError):
        return "Detection = time to the first failed probe + indirect probes + the suspicion timeout."
    mins = ", ".join(f"{mult * math.log10(n) * interval:.2f} s at N = {n}" for n in SIZES)
    return ("Detection = time until some member probes the dead one (one probe per member "
            "per probe_interval) + probe_timeout and the indirect probes (→ suspect) + the "
            "suspicion timeout (→ inactive). The suspicion timeout is at least "
            f"suspicion_mult · log10(N) · probe_interval = {mins} with the documented "
            "defaults, longer (Lifeguard) until independent confirmations arrive, so "
            "detection grows with log N. memberlist's defaults (probe 1 s, timeout 0.5 s, "
            "suspicion_mult 4) give 5-10 s. The targets are checked at "
            f"N = {max(SIZES)}.")


def metrics(port):
    _, body = lib.http_request(port, "GET", "/metrics", timeout=5)
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def statuses(coord):
    return {n["id"]: n["status"] for n in coord.get("/api/cluster/nodes", timeout=5)["nodes"]}


def form(n, profile):
    """Starts a coordinator and n-1 workers with the settings of profile;
    returns (coord, workers, ids, seconds until the coordinator shows all n
    active)."""
    tmp = lib.scratch_dir(f"cluster{n}")
    coord = lib.Node("coordinator", tmp=tmp, **profile).start()
    workers = [lib.Node("worker", tmp=tmp,
                        cluster_ip=f"127.0.0.1:{coord.port}",
                        coordinator_gossip=f"127.0.0.1:{coord.gossip_port}",
                        **profile)
               for _ in range(n - 1)]
    t0 = time.monotonic()
    for w in workers:
        w.start(wait=False)
    for w in workers:
        w.wait_ready(timeout=30)
    ids = [w.node_id() for w in workers]
    lib.wait_for(lambda: (lambda s: len(s) == n and all(v == "active" for v in s.values()))(
        statuses(coord)), timeout=60, interval=0.05, what=f"{n} nodes active")
    return coord, workers, ids, time.monotonic() - t0


def steady(coord, workers, seconds):
    nodes = [coord] + workers
    pids = [n.pids() for n in nodes]
    m0 = [metrics(n.port) for n in nodes]
    c0 = [sum(lib.cpu_ticks(p) for p in ps) for ps in pids]
    n0 = [sum(lib.cpu_ns(p) for p in ps) for ps in pids]
    t0 = time.monotonic()
    time.sleep(seconds)
    c1 = [sum(lib.cpu_ticks(p) for p in ps) for ps in pids]
    n1 = [sum(lib.cpu_ns(p) for p in ps) for ps in pids]
    dt = time.monotonic() - t0
    m1 = [metrics(n.port) for n in nodes]

    def rate(i, key):
        return (m1[i].get(key, 0) - m0[i].get(key, 0)) / dt

    per = []
    for i in range(len(nodes)):
        per.append({
            "cpu_pct": (c1[i] - c0[i]) / lib.CLK_TCK / dt * 100,
            "cpu_ns_pct": (n1[i] - n0[i]) / 1e9 / dt * 100,
            "sent_Bps": rate(i, 'proxystone_gossip_bytes_total{dir="sent"}'),
            "recv_Bps": rate(i, 'proxystone_gossip_bytes_total{dir="received"}'),
            "pkts_sent": rate(i, 'proxystone_gossip_packets_total{dir="sent"}'),
        })
    key = 'proxystone_replica_fetches_total{result="ok"}'
    replica = sum(m1[i].get(key, 0) - m0[i].get(key, 0) for i in range(1, len(nodes)))
    return per, replica / dt


def crash(coord, worker, wid):
    """kill -9 of worker's whole tree; seconds until the coordinator lists
    it suspect (None if never seen) and inactive."""
    pids = worker.pids()
    t0 = time.monotonic()
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.proc.wait()
    suspect = inactive = None
    while time.monotonic() - t0 < DETECT_DEADLINE_S:
        st = statuses(coord).get(wid)
        now = time.monotonic() - t0
        if st == "suspect" and suspect is None:
            suspect = now
        if st == "inactive":
            inactive = now
            break
        time.sleep(POLL_S)
    return suspect, inactive


def run_cluster(n, profile, steady_s, kills):
    coord, workers, ids, formed = form(n, profile)
    tag = "custom" if profile else "defaults"
    sec.log(f"N={n} ({tag}): formed in {formed:.2f} s")
    time.sleep(WARMUP_S)
    per, replica_rps = steady(coord, workers, steady_s)
    wk = per[1:]
    sec.log(f"N={n} ({tag}): worker CPU median {lib.median([p['cpu_ns_pct'] for p in wk]):.3f}%, "
            f"sent {lib.median([p['sent_Bps'] for p in wk]):.0f} B/s")
    victims = [workers[i] for i in
               sorted({round(j * (len(workers) - 1) / max(1, kills - 1))
                       for j in range(kills)})]
    det = []
    for w in victims:
        s, i = crash(coord, w, ids[workers.index(w)])
        det.append((s, i))
        sec.log(f"N={n} ({tag}): killed worker on {w.port}: suspect {s}, inactive {i}")
        time.sleep(0.5)
    # Stop the survivors in parallel (graceful leave), then reap.
    for node in [coord] + workers:
        if node.proc and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
    for node in [coord] + workers:
        node.stop(timeout=15)
    return {"formed_s": formed, "per": per, "replica_rps": replica_rps,
            "detect": det, "steady_s": steady_s}


results = {}
for n in SIZES:
    results[n] = run_cluster(n, {}, STEADY_S[n], KILLS[n])
sec.raw("results", {str(k): v for k, v in results.items()})


def secs(x):
    return "never" if x is None else f"{x:.2f} s"


biggest = max(SIZES)
sec.intro(f"""
Clusters of N nodes on 127.0.0.1 ({", ".join(map(str, SIZES))}): one coordinator and N−1
workers, each a supervisor tree (supervisor, membership, api: 3·N processes) with its own
config file (`role`, `api_port`, `gossip_port`, `data_dir`, `cluster_ip`,
`coordinator_gossip`) and otherwise **the binary's default settings** ({defaults_text()}). All {3 * biggest} processes of the {biggest}-node cluster share the 2 cores with
the benchmark. Steady state starts {WARMUP_S} s after the coordinator lists every node
`active`: CPU is utime+stime of a node's three processes over the window (% of one core),
gossip bytes are the deltas of each node's `proxystone_gossip_bytes_total` in `/metrics`
(UDP payload bytes; replica fetches over HTTP are counted separately). Crash detection:
`kill -9` of all three processes of a worker at once, then the coordinator's
`GET /api/cluster/nodes` polled every {POLL_S * 1000:.0f} ms until the worker is listed
`suspect` and then `inactive`; the workers killed are spread over the list, one at a time
(each detection finishes before the next kill).
""")

def steady_row(label, r):
    wk, co = r["per"][1:], r["per"][0]
    return [label, f"{r['formed_s']:.2f} s", f"{r['steady_s']} s",
            f"{lib.median([p['cpu_pct'] for p in wk]):.2f} %",
            f"{lib.median([p['cpu_ns_pct'] for p in wk]):.3f} %",
            f"{max(p['cpu_ns_pct'] for p in wk):.3f} %",
            f"{co['cpu_ns_pct']:.3f} %",
            f"{lib.median([p['sent_Bps'] for p in wk]):,.0f}",
            f"{max(p['sent_Bps'] for p in wk):,.0f}",
            f"{lib.median([p['recv_Bps'] for p in wk]):,.0f}",
            f"{co['sent_Bps']:,.0f}",
            f"{lib.median([p['pkts_sent'] for p in wk]):.1f}",
            f"{r['replica_rps']:.2f}"]


rows = [steady_row(str(n), results[n]) for n in SIZES]
sec.table("Steady state per node (workers: median and max over the N−1 workers)",
          ["N", "formed in", "window", "worker CPU, utime+stime (median)",
           "worker CPU, schedstat (median)", "worker CPU, schedstat (max)",
           "coordinator CPU, schedstat", "worker gossip sent B/s (median)", "(max)",
           "worker gossip received B/s (median)", "coordinator gossip sent B/s",
           "worker datagrams sent/s (median)", "replica fetches/s (all workers)"],
          rows, notes=["\"formed in\": from spawning the workers to the coordinator "
                       "listing all N nodes `active`. CPU is % of one core for a node's "
                       "three processes: from `/proc/<pid>/stat` utime+stime (10 ms ticks, "
                       "so 0.05 % steps over 20 s) and from `/proc/<pid>/schedstat` "
                       "(nanoseconds)."])

def detect_row(label, det, check):
    inact = [i for _, i in det if i is not None]
    susp = [s for s, _ in det if s is not None]
    never = sum(1 for _, i in det if i is None)
    med_i = lib.median(inact) if inact else None
    worst_i = None if never or not inact else max(inact)
    ok_med = med_i is not None and med_i <= 2.5
    ok_worst = worst_i is not None and worst_i <= 4.0
    target = lib.verdict(ok_med, "median ≤ 2.5 s") + "; " + lib.verdict(ok_worst, "worst ≤ 4 s")
    if check:
        if not ok_med:
            sec.missed(f"crash detection at N={label} (defaults): median {secs(med_i)} "
                       "until inactive (target ≤ 2.5 s)")
        if not ok_worst:
            sec.missed(f"crash detection at N={label} (defaults): worst {secs(worst_i)} "
                       "until inactive (target ≤ 4 s)")
    return [label, str(len(det)),
            secs(lib.median(susp)) if susp else "never",
            secs(max(susp)) if susp else "never",
            f"**{secs(med_i)}**", f"**{secs(worst_i)}**",
            ", ".join(secs(i) for _, i in det), target]


rows = [detect_row(str(n), results[n]["detect"], n == biggest) for n in SIZES]
sec.table("Crash detection: kill -9 of a worker's tree until the coordinator lists it",
          ["N", "kills", "suspect (median)", "suspect (worst)", "inactive (median)",
           "inactive (worst)", "each kill: inactive after", "target"], rows,
          notes=[suspicion_note()])

# Plots against N.
dat = os.path.join(lib.SCRATCH, "cluster.dat")
with open(dat, "w") as f:
    f.write("# N suspect_med inactive_med inactive_worst cpu_med sent_med sent_max\n")
    for n in SIZES:
        det = results[n]["detect"]
        inact = [i for _, i in det if i is not None] or [float("nan")]
        susp = [s for s, _ in det if s is not None] or [float("nan")]
        wk = results[n]["per"][1:]
        f.write(f"{n} {lib.median(susp):.3f} {lib.median(inact):.3f} {max(inact):.3f} "
                f"{lib.median([p['cpu_ns_pct'] for p in wk]):.3f} "
                f"{lib.median([p['sent_Bps'] for p in wk]):.1f} "
                f"{max(p['sent_Bps'] for p in wk):.1f}\n")
worst_all = [i for n in SIZES for _, i in results[n]["detect"] if i is not None]
ymax = max([4.5] + [1.15 * x for x in worst_all])
png1 = os.path.join(lib.ROOT, "bench-crash-detection.png")
lib.gnuplot(f"""
set title "Crash detection on loopback (kill -9 of a worker's tree)"
set xlabel "nodes in the cluster (N)"
set ylabel "seconds after kill -9"
set key at screen 0.5, 0.02 center bottom horizontal maxrows 2 spacing 1.2
set bmargin 8
set grid
set xrange [0:{max(SIZES) * 1.1:.0f}]
set yrange [0:{ymax:.1f}]
plot '{dat}' using 1:2 with linespoints lw 2 pt 7 title "listed suspect (median)", \\
     '{dat}' using 1:3 with linespoints lw 2 pt 5 title "listed inactive (median)", \\
     '{dat}' using 1:4 with linespoints lw 2 pt 9 dt 2 title "listed inactive (worst)", \\
     2.5 with lines lw 2 lc rgb "#888888" dt 3 title "target: median 2.5 s", \\
     4 with lines lw 2 lc rgb "#bb4444" dt 3 title "target: worst 4 s"
""", png1)
sec.plot("bench-crash-detection.png",
         "Crash detection time against N (real processes on loopback, defaults)")
png2 = os.path.join(lib.ROOT, "bench-gossip-load.png")
lib.gnuplot(f"""
set title "Steady state per worker on loopback, default settings"
set xlabel "nodes in the cluster (N)"
set ylabel "gossip bytes sent per second"
set y2label "CPU (% of one core)"
set ytics nomirror
set y2tics
set key at screen 0.5, 0.02 center bottom horizontal maxrows 2 spacing 1.2
set bmargin 8
set grid
set xrange [0:{max(SIZES) * 1.1:.0f}]
set yrange [0:*]
set y2range [0:*]
plot '{dat}' using 1:6 axes x1y1 with linespoints lw 2 pt 7 title "gossip B/s sent (median worker)", \\
     '{dat}' using 1:7 axes x1y1 with linespoints lw 2 pt 9 dt 2 title "gossip B/s sent (max worker)", \\
     '{dat}' using 1:5 axes x1y2 with linespoints lw 2 pt 5 title "CPU % (median worker)"
""", png2)
sec.plot("bench-gossip-load.png",
         "Gossip bytes/s and CPU per worker against N (SWIM: constant per member)")
sec.save()
