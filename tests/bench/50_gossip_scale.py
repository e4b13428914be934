#!/usr/bin/env python3
"""Gossip at scale in the deterministic simulator (tests/lib/sim.c): crash
detection and dissemination, false positives under packet loss, and load per
member for N = 100, 1,000 and 10,000, with the product's defaults and with
memberlist's LAN defaults. The simulations run in tests/bench/sim_scale.c,
built here; two at a time (one per core)."""
# bench-budget: 300

import json
import math
import os
import subprocess
import time

import lib

# 60_gossip_hour.py runs this script with GOSSIP_HOUR=1: every loss
# window an hour long, as its own section (hours of CPU: `--long` only).
LONG = os.environ.get("GOSSIP_HOUR") == "1"
if LONG:
    sec = lib.Section("gossip_hour", "Gossip at scale: an hour per loss rate (simulator)",
                      os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                   "60_gossip_hour.py"))
else:
    sec = lib.Section("gossip_scale", "Gossip at scale (simulator)", __file__)
T0 = time.monotonic()

# Wall seconds the simulations may take in all: loss windows still running
# then are cut short (their simulated length is reported). The runner's
# budget is the hard stop. Long mode: GOSSIP_HOUR_DEADLINE (default 2.5 h).
if LONG:
    DEADLINE = float(os.environ.get("GOSSIP_HOUR_DEADLINE", "9000"))
else:
    DEADLINE = 75 if lib.QUICK else 190
# Long mode, GOSSIP_HOUR_ONLY="10000:0.1[,N:loss...]": run only these windows
# (product defaults) and keep every other one from the last saved run,
# tests/bench/out/gossip_hour.json (one 10,000-member hour at 10% loss is
# itself ~2.2 hours of CPU).
ONLY = []
if LONG and os.environ.get("GOSSIP_HOUR_ONLY"):
    for item in os.environ["GOSSIP_HOUR_ONLY"].split(","):
        n_s, loss_s = item.split(":")
        ONLY.append((int(n_s), float(loss_s)))
WORKERS = max(1, min(2, os.cpu_count() or 1))
E_RATIO = math.e / (math.e - 1)  # SWIM: expected periods to first detection
LOSSES = [0.0, 0.05, 0.10]
CONFIGS = ["product", "lan"]
CONFIG_NAME = {"product": "product defaults", "lan": "memberlist LAN"}
CRASHES = 3 if lib.QUICK else max(5, lib.REPS)
sec.data["reps"] = CRASHES  # crashes per (config, N); each window is one run
SIZES = [100, 1000] if lib.QUICK else [100, 1000, 10000]
HOUR = 3600.0
# Simulated seconds per window. 100 and 1,000 at 0% loss: the full hour.
# Under loss every false suspicion and its refutation reach every member,
# so the work per simulated second grows faster than N (measured: ~0.25 s
# of CPU per simulated second at 1,000 members and 10% loss with the
# product defaults, ~15 min per hour): 1,000 at 5% and 10% gets 3 minutes.
# 10,000 members hold 10^8 table entries (~16 GB), take 20-60 s to set up
# and cost ~0.2-0.6 s of CPU per simulated second even at 0% loss: 20 s,
# 0% only.
if lib.QUICK:
    WINDOW = {(100, 0.0): 300, (100, 0.05): 300, (100, 0.10): 300,
              (1000, 0.0): 120, (1000, 0.05): 60, (1000, 0.10): 60}
elif LONG:
    WINDOW = {(n, loss): HOUR for n in SIZES for loss in LOSSES}
else:
    WINDOW = {(100, 0.0): HOUR, (100, 0.05): HOUR, (100, 0.10): HOUR,
              (1000, 0.0): HOUR, (1000, 0.05): 180, (1000, 0.10): 180,
              (10000, 0.0): 20}
# Resident memory of a simulation: ~170 bytes per table entry (N^2 of them).
BYTES_PER_ENTRY = 170
MEM_MARGIN_MB = 1500

SIM = os.path.join(lib.ROOT, "build", "bench", "sim_scale")
LIBS = ["-lev", "-lprotobuf-c", "-luuid", "-lhttp_parser", "-lsodium", "-lm"]


def build():
    r = subprocess.run(["make", "--no-print-directory", "build/libproxystone.a"],
                       cwd=lib.ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sec.problem("make build/libproxystone.a failed; linked against the "
                    "library as it was: " + r.stderr.strip()[-300:])
    os.makedirs(os.path.dirname(SIM), exist_ok=True)
    tmp = f"{SIM}.tmp{os.getpid()}"
    subprocess.run(["cc", "-std=gnu11", "-O2", "-Iinclude", "-Ibuild/gen", "-Itests/lib",
                    "-D_GNU_SOURCE", "-o", tmp, "tests/bench/sim_scale.c", "tests/lib/sim.c",
                    "build/libproxystone.a", *LIBS], cwd=lib.ROOT, check=True)
    os.replace(tmp, SIM)


def tunings():
    """The product's gossip defaults (config_gossip_defaults(), the values the
    product ships) and memberlist's LAN ones, as the built simulator reports
    them: `sim_scale --print-defaults`."""
    r = subprocess.run([SIM, "--print-defaults"], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def mem_available_mb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0


def need_mb(n):
    return BYTES_PER_ENTRY * n * n / 2**20 + 150


def jobs_plan():
    jobs = []
    for n, loss in ONLY:
        jobs.append(dict(n=n, config="product", crashes=0, batch=1, losses=[loss],
                         window=HOUR, seed=n * 10 + 1000 + int(round(loss * 1000))))
    for n in [] if ONLY else sorted(SIZES, reverse=True):
        for cfg in CONFIGS:
            seed = n * 10 + CONFIGS.index(cfg)
            if n >= 10000 and LONG:
                # One process (one 16 GB cluster) for every loss rate;
                # memberlist's LAN settings at 10% loss would take ~7 CPU
                # hours per simulated hour here: product defaults only.
                # No crashes either: 50_gossip_scale.py measures them.
                if cfg == "product":
                    jobs.append(dict(n=n, config=cfg, crashes=0, batch=1,
                                     losses=LOSSES, window=WINDOW[(n, 0.0)], seed=seed))
            elif n >= 10000:
                jobs.append(dict(n=n, config=cfg, crashes=CRASHES, batch=1,
                                 losses=[0.0], window=WINDOW[(n, 0.0)], seed=seed))
            elif n >= 1000:
                # One process per loss rate, so both cores stay busy.
                jobs.append(dict(n=n, config=cfg, crashes=CRASHES, batch=1,
                                 losses=[0.0], window=WINDOW[(n, 0.0)], seed=seed))
                for i, loss in enumerate(LOSSES[1:]):
                    jobs.append(dict(n=n, config=cfg, crashes=0, batch=1, losses=[loss],
                                     window=WINDOW[(n, loss)], seed=seed + 100 * (i + 1)))
            else:
                jobs.append(dict(n=n, config=cfg, crashes=CRASHES, batch=1, losses=LOSSES,
                                 window=WINDOW[(n, 0.0)], seed=seed))
    # Longest first (10,000, then the hours and the 10% windows at 1,000).
    def cost(j):
        return (j["n"] >= 10000, j["window"] * j["n"] * (1 + 20 * max(j["losses"])))
    jobs.sort(key=cost, reverse=True)
    for i, j in enumerate(jobs):
        j["id"] = i
    return jobs


def argv_of(job, out):
    a = [SIM, "--n", str(job["n"]), "--config", job["config"], "--seed", str(job["seed"]),
         "--crashes", str(job["crashes"]), "--batch", str(job["batch"]),
         "--window", str(job["window"]), "--losses", ",".join(str(x) for x in job["losses"]),
         "--time-limit", f"{max(5.0, DEADLINE - (time.monotonic() - T0)):.0f}",
         "--out", out]
    return a


def run_all(jobs):
    scratch = lib.scratch_dir("gossip-scale")
    env = dict(os.environ)
    # Transparent huge pages for the heap where the kernel allows them
    # (fewer page faults and TLB misses with 16 GB of tables).
    env["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
    pending = list(jobs)
    running = {}
    results = []
    while pending or running:
        started = True
        while started and len(running) < WORKERS and pending:
            started = False
            big_running = any(j["n"] >= 10000 for j, _, _ in running.values())
            for job in pending:
                if job["n"] >= 10000:
                    if big_running:
                        continue
                    avail = mem_available_mb()
                    if avail < need_mb(job["n"]) + MEM_MARGIN_MB:
                        if running:
                            continue  # wait for memory to free up
                        fit = int(math.sqrt(max(0, avail - MEM_MARGIN_MB - 150) * 2**20
                                            / BYTES_PER_ENTRY) // 1000 * 1000)
                        sec.problem(f"N = {job['n']:,} needs ~{need_mb(job['n']) / 1024:.1f} GB; "
                                    f"only {avail / 1024:.1f} GB available: "
                                    + (f"ran N = {fit:,} instead" if fit >= 2000 else "skipped"))
                        if fit < 2000:
                            pending.remove(job)
                            started = True
                            break
                        job["n_asked"], job["n"] = job["n"], fit
                pending.remove(job)
                out = os.path.join(scratch, f"job{job['id']}.json")
                log = os.path.join(scratch, f"job{job['id']}.log")
                # Long mode shares the machine for hours: lowest priority.
                p = lib.spawn(argv_of(job, out), log, env=env,
                              preexec_fn=(lambda: os.nice(19)) if LONG else None)
                job["t_start"] = time.monotonic()
                running[p.pid] = (job, p, (out, log))
                sec.log(f"start N={job['n']} {job['config']} losses={job['losses']} "
                        f"window={job['window']:.0f}s crashes={job['crashes']}")
                started = True
                break
        time.sleep(0.1)
        for pid in list(running):
            job, p, (out, log) = running[pid]
            if p.poll() is None:
                if time.monotonic() - T0 > DEADLINE + 90:
                    p.kill()
                    p.wait()
                    sec.problem(f"N={job['n']} {job['config']} losses={job['losses']}: "
                                "killed, far past the deadline")
                    del running[pid]
                continue
            del running[pid]
            wall = time.monotonic() - job["t_start"]
            try:
                with open(out) as f:
                    res = json.load(f)
            except (OSError, ValueError):
                res = None
            if p.returncode != 0 or res is None:
                tail = ""
                try:
                    with open(log) as f:
                        tail = f.read()[-400:]
                except OSError:
                    pass
                sec.problem(f"sim_scale N={job['n']} {job['config']} losses={job['losses']} "
                            f"failed (status {p.returncode}): {tail.strip()}")
                continue
            res["job"] = {k: v for k, v in job.items() if k != "t_start"}
            res["wall"] = round(wall, 1)
            results.append(res)
            sec.log(f"done  N={job['n']} {job['config']} losses={job['losses']} in {wall:.0f} s "
                    f"(cpu {res['cpu_total']:.0f} s, rss {res['rss_mb']:.0f} MB)")
    return results


def fmt_s(x):
    if x is None or x != x or x < 0:
        return "-"
    return f"{x:.2f} s" if x < 10 else f"{x:.1f} s"


def med_rng(xs):
    xs = [x for x in xs if x is not None and x >= 0]
    if not xs:
        return "-", float("nan")
    m = lib.median(xs)
    if len(xs) == 1:
        return fmt_s(m), m
    return f"{fmt_s(m)} ({min(xs):.2f}–{max(xs):.2f})", m


def pretty_n(n):
    return f"{n:,}"


# --------------------------------------------------------------------------

build()
try:
    TUNINGS = tunings()
except (OSError, ValueError, subprocess.CalledProcessError) as e:
    sec.problem(f"`sim_scale --print-defaults` failed ({e})")
    raise
PROD = TUNINGS["product"]
sec.log(f"built {os.path.relpath(SIM, lib.ROOT)}; product defaults {PROD}")
JOBS = jobs_plan()
RESULTS = run_all(JOBS)
sim_wall = time.monotonic() - T0


def carry_over(results):
    """GOSSIP_HOUR_ONLY: the last saved run's results, less the windows rerun now."""
    path = os.path.join(lib.OUT, "gossip_hour.json")
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError) as e:
        sec.problem(f"GOSSIP_HOUR_ONLY: no earlier run to keep ({e}); only the windows run now")
        return results
    redone = {(r["config"], r["n"], round(w["loss"], 6)) for r in results
              for w in r["windows"] + r.get("windows_after", [])}
    carried = {"commit": old.get("commit", ""), "started": old.get("started", "")}
    kept = old.get("raw", {}).get("runs", [])
    for r in kept:
        for k in ("windows", "windows_after"):
            r[k] = [w for w in r.get(k, [])
                    if (r["config"], r["n"], round(w["loss"], 6)) not in redone]
        r.setdefault("carried_from", carried)  # a window kept twice keeps its first run
    origins = sorted({(r["carried_from"]["started"], r["carried_from"]["commit"]) for r in kept})
    sec.data["carried_from"] = [{"started": st, "commit": c} for st, c in origins]
    sec.note("Rerun now (`GOSSIP_HOUR_ONLY`): " + ", ".join(
        f"N = {n:,} at {loss:.0%} loss" for n, loss in ONLY) + ". Every other result is kept "
        "from earlier runs: " + "; ".join(
            f"the run started {st or '?'} at commit {c or '?'}: {gossip_code_since(c)}"
            for st, c in origins))
    return results + kept


GOSSIP_CODE = ["src/membership", "src/common/config.c", "include/proxystone/swim.h"]


def gossip_code_since(commit):
    """What git says of the gossip code between that run's commit and now."""
    rev = commit.split()[0] if commit else ""
    r = subprocess.run(["git", "diff", "--stat", rev, "--", *GOSSIP_CODE], cwd=lib.ROOT,
                       capture_output=True, text=True) if rev else None
    if r is None or r.returncode != 0:
        return "whether the gossip code changed since could not be checked"
    changed = r.stdout.strip().splitlines()[:-1]
    dirty = " (that run had uncommitted changes, which git cannot show)" \
        if "uncommitted" in commit else ""
    if not changed:
        return f"`git diff {rev}` shows no change to the gossip code ({', '.join(GOSSIP_CODE)})" \
            + dirty
    return (f"the gossip code changed since ({'; '.join(' '.join(l.split()) for l in changed)}): "
            "the windows kept may have run other code" + dirty)


if ONLY:
    RESULTS = carry_over(RESULTS)
sec.raw("runs", RESULTS)

by = {}  # (config, n) -> list of results
for r in RESULTS:
    by.setdefault((r["config"], r["n"]), []).append(r)
sizes_run = sorted({r["n"] for r in RESULTS})


def cfg_of(config, n):
    rs = by.get((config, n), [])
    return rs[0] if rs else None


def crashes_of(config, n):
    return [c for r in by.get((config, n), []) for c in r["crashes"]]


def window_of(config, n, loss):
    for r in by.get((config, n), []):
        for w in r["windows"] + r.get("windows_after", []):
            if abs(w["loss"] - loss) < 1e-9:
                return w
    return None


def susp_min(c, n):
    """Lifeguard's smallest suspicion timeout (reached with k confirmations)."""
    t = c["suspicion_mult"] * math.log10(n) * c["probe_interval"]
    return max(t, c["probe_interval"])


# ---- Intro
def describe_windows():
    parts = []
    for n in sizes_run:
        by_len = {}
        for loss in LOSSES:
            if (n, loss) in WINDOW:
                by_len.setdefault(WINDOW[(n, loss)], []).append(f"{loss:.0%}")
        for secs, ls in by_len.items():
            dur = "1 hour" if secs == HOUR else (f"{secs / 60:.0f} min" if secs >= 60
                                                else f"{secs:.0f} s")
            parts.append(f"{dur} at N = {pretty_n(n)} with {', '.join(ls)} loss")
    return "; ".join(parts)


windows_text = describe_windows()
BUDGET_TEXT = (f"this run's {DEADLINE / 3600:.1f} hours" if LONG
               else "this section's three minutes")
SHORTER_TEXT = ("" if all(v == HOUR for v in WINDOW.values()) else
                "; shorter than the hour the issue asks for where a full hour does not fit in "
                f"{BUDGET_TEXT} (costs in the notes of the last table)")
if LONG:
    SHORTER_TEXT += ("; a window the time limit cut short says so. `make bench`'s own "
                     "gossip section runs the same program with shorter windows")
pi, pt = PROD["probe_interval"], PROD["probe_timeout"]
LAN = TUNINGS["lan"]
lan_desc = (f"probe_interval {LAN['probe_interval']:g} s, probe_timeout {LAN['probe_timeout']:g} s, "
            f"indirect_checks {LAN['indirect_checks']:g}, suspicion_mult {LAN['suspicion_mult']:g}")
sec.intro(f"""
Many SWIM instances (`src/membership/swim.c`, the code the product runs) in one
process, in the deterministic simulator `tests/lib/sim.c`: a virtual clock, a
seeded PRNG, datagrams delayed 1 ms + up to 1 ms of jitter and dropped at
random at the loss rate. The program is `tests/bench/sim_scale.c`, built and
run by `tests/bench/50_gossip_scale.py`. Two configurations:
**product defaults** (`config_gossip_defaults()` in `src/common/config.c`, as
`sim_scale --print-defaults` reports them: probe_interval
{pi:g} s, probe_timeout {pt:g} s, indirect_checks {PROD['indirect_checks']:g},
suspicion_mult {PROD['suspicion_mult']:g}; the rest as `swim_config_defaults()`)
and **memberlist LAN** (`swim_config_defaults()` as is: {lan_desc}). Both have
suspicion_max_mult {PROD['suspicion_max_mult']:g}, retransmit_mult {PROD['retransmit_mult']:g},
gossip to {PROD['gossip_nodes']:g} members every {PROD['gossip_interval']:g} s and a
digest anti-entropy exchange every {PROD['sync_interval']:g} s. Simulated members carry no application
metadata.

Each cluster is formed with `sim_bootstrap()` (every member told of every other
directly, no join storm), then left to settle until no member has an update to
spread. Steady-state load and false positives at 0% loss are measured first;
then {CRASHES} random members crash, one at a time, at random phases, at 0%
loss, each once the previous one's updates are no longer being spread (at
10,000 fewer if the section runs out of time; the table gives the count);
figures are medians over the crashes,
with min–max. Then the windows with loss. A false positive is a live member
declared DEAD, by anyone. Each window is one run (one seed). Simulated time per window: {windows_text}{SHORTER_TEXT}. Up to {WORKERS}
simulations run at a time, one per core; they took {sim_wall:.0f} s of wall
time in all.
""")

# The false positives under loss, in one line above the tables.
parts = []
for config in CONFIGS:
    cases = []
    for n in sizes_run:
        for loss in LOSSES[1:]:
            w = window_of(config, n, loss)
            if w and w["fp_members"] > 0:
                dur = w["seconds"] / 60
                cases.append(f"{w['fp_members']} in {dur:.0f} min at N = {pretty_n(n)} and "
                             f"{loss:.0%} loss")
    parts.append(f"{CONFIG_NAME[config]}: " + (", ".join(cases) if cases else "none"))
sec.note("**Live members declared DEAD under packet loss** (last table): " + "; ".join(parts)
         + "; none in the other windows.")

# ---- Table 1: crash detection and dissemination
rows = []
spread100 = {}
plot_rows = []
for config in CONFIGS:
    for n in sizes_run:
        cs = crashes_of(config, n)
        c = cfg_of(config, n)
        if not cs or not c:
            continue
        T = c["probe_interval"]
        s_sus, m_sus = med_rng([x["first_suspect"] for x in cs])
        s_dead, m_dead = med_rng([x["first_dead"] for x in cs])
        s_all, m_all = med_rng([x["all_dead"] for x in cs])
        sp_sus = [x["all_suspect"] - x["first_suspect"] for x in cs
                  if x["all_suspect"] >= 0 and x["first_suspect"] >= 0]
        sp_dead = [x["all_dead"] - x["first_dead"] for x in cs
                   if x["all_dead"] >= 0 and x["first_dead"] >= 0]
        s_ss, m_ss = med_rng(sp_sus)
        s_sd, m_sd = med_rng(sp_dead)
        exp_dead = E_RATIO * T + susp_min(c, n)
        if n == min(sizes_run):
            spread100[config] = m_ss
        ratio = (f"×{m_ss / spread100[config]:.1f} (log N: ×{math.log(n) / math.log(min(sizes_run)):.1f})"
                 if config in spread100 and spread100[config] > 0 and n != min(sizes_run) else "1")
        incomplete = sum(1 for x in cs if not x["complete"])
        rows.append([CONFIG_NAME[config], pretty_n(n), len(cs),
                     f"{s_sus} = {m_sus / T:.1f} T",
                     f"{E_RATIO * T:.2f} s",
                     s_dead, f"{exp_dead:.2f} s",
                     s_all + (f" ({incomplete} incomplete)" if incomplete else ""),
                     f"{s_ss} = {m_ss / T:.1f} T", ratio, s_sd])
        plot_rows.append((config, n, [x["first_dead"] for x in cs],
                          [x["all_dead"] for x in cs], sp_sus, sp_dead, T, c))
sec.table("Crash detection and dissemination (0% loss; median, min–max over the crashes)",
          ["config", "N", "crashes", "first suspicion", "SWIM: e/(e−1)·T",
           "first DEAD", "expected DEAD", "all members know DEAD", "SUSPECT spread first→all",
           "spread vs N = 100", "DEAD spread first→all"],
          rows,
          notes=[
              "T = probe_interval (the protocol period). *first suspicion*: crash → the first "
              "member's probe of the crashed one fails (direct and indirect) and it marks it "
              "SUSPECT. SWIM expects about e/(e−1) ≈ 1.58 periods until some member probes it; "
              "a probe ends one period after it starts and the crash falls anywhere in a period, "
              "so up to one period more is expected here.",
              "*first DEAD*: crash → the first member declares it DEAD; *expected*: e/(e−1)·T + "
              "Lifeguard's shortest suspicion timeout suspicion_mult · log10 N · T, which a "
              "suspicion reaches once indirect_checks (3) other members have confirmed it; "
              "without confirmations it lasts up to suspicion_max_mult (6) times longer.",
              "*all members know DEAD*: crash → every live member holds it DEAD. *SUSPECT "
              "spread*: the first suspicion → every member holds it SUSPECT (or DEAD), the "
              "epidemic that SWIM expects to take O(log N) periods; *spread vs N = 100* compares "
              "its growth with that of log N. A member with nothing to spread passes an update "
              "on as soon as it arrives (its gossip round is overdue), so most members hear "
              "within a few network delays (1–2 ms each here); the last few wait for later "
              "gossip rounds (every 0.2 s), and they set the time to reach every member. "
              "*DEAD spread*: first DEAD → all hold it DEAD; short because every member runs "
              "its own suspicion timer, started as the suspicion reached it, and most expire "
              "about together.",
          ])

# ---- Table 2: steady-state load
rows = []
base = {}
for config in CONFIGS:
    for n in sizes_run:
        w = window_of(config, n, 0.0)
        c = cfg_of(config, n)
        if not w or not c:
            continue
        exp_pps = 2 / c["probe_interval"] + 1 / c["sync_interval"]
        if n == min(sizes_run):
            base[config] = w["bytes_per_s"]
        rel = (f"×{w['bytes_per_s'] / base[config]:.2f}" if config in base and base[config] > 0
               else "-")
        src = next((r for r in by[(config, n)] if r["windows"]), c)
        cpu_per_s = w["cpu"] / w["seconds"] if w["seconds"] > 0 else float("nan")
        rows.append([CONFIG_NAME[config], pretty_n(n), f"{w['seconds']:.0f} s",
                     f"{w['bytes_per_s']:.0f}", rel, f"{w['packets_per_s']:.2f}",
                     f"{exp_pps:.2f}", f"{w['bytes_per_s'] / w['packets_per_s']:.0f} B"
                     if w["packets_per_s"] else "-",
                     f"{src['rss_mb'] / 1024:.1f} GB" if src["rss_mb"] >= 1024
                     else f"{src['rss_mb']:.0f} MB",
                     f"{cpu_per_s * 1000:.1f} ms"])
sec.table("Steady state at 0% loss: traffic sent per member",
          ["config", "N", "simulated", "bytes/s per member", "vs N = 100", "datagrams/s per member",
           "expected datagrams/s", "mean datagram", "simulator memory", "CPU per simulated s"],
          rows,
          notes=[
              "SWIM expects constant load per member: each period one ping and one ack sent "
              "on average (2/T datagrams/s), plus one anti-entropy digest per sync_interval "
              "(10 s; answered only when tables differ): *expected* = 2/T + 1/10. UDP payload "
              "bytes (IP/UDP headers not counted). Measured before the crashes (a DEAD member "
              "costs every member a ping per reconnect_interval until it is forgotten).",
              "*simulator memory*: the whole simulation (N tables of N members, ~170 bytes per "
              "entry); a real member's table at N = 10,000 is ~1.7 MB. *CPU per simulated s*: "
              "what one simulated second of the whole cluster costs the simulator.",
          ])

# ---- Table 3: false positives
rows = []
missing = []
for config in CONFIGS:
    for n in sizes_run:
        for loss in LOSSES:
            w = window_of(config, n, loss)
            if not w:
                missing.append(f"{CONFIG_NAME[config]}, N = {pretty_n(n)}, {loss:.0%} loss")
                continue
            secs = w["seconds"]
            per_h = w["fp_members"] * HOUR / secs if secs > 0 else float("nan")
            cut = " (cut short)" if w["cut"] else ""
            if LONG and secs < HOUR - 1:
                c_s = w["cpu"] / secs if secs > 0 else float("nan")
                sec.missed(f"{CONFIG_NAME[config]}, N = {pretty_n(n)}, {loss:.0%} loss: "
                           f"{secs / 60:.0f} simulated minutes, not an hour "
                           f"({c_s:.1f} CPU s per simulated second: "
                           f"{c_s:.1f} h on one core)")
            dur = f"{secs / 60:.0f} min{cut}" if secs >= 60 else f"{secs:.0f} s{cut}"
            rows.append([CONFIG_NAME[config], pretty_n(n), f"{loss:.0%}", dur,
                         str(w["fp_members"]),
                         "0" if w["fp_members"] == 0 else
                         (f"{per_h:.0f}" if secs >= HOUR - 1 else f"≈{per_h:.0f}"),
                         str(w["false_dead"]),
                         f"{w['suspicions_raised'] * 60 / secs:.1f}" if secs else "-",
                         f"{w['refutes'] * 60 / secs:.1f}" if secs else "-",
                         f"{w['bytes_per_s']:.0f}", f"{w['packets_per_s']:.1f}"])
notes = [
    "*false DEAD*: distinct live members declared DEAD by at least one member during the "
    "window (by the suspicion timer of one member, or heard from others); *per hour*: that "
    "count scaled to an hour (≈: extrapolated from a shorter window). *DEAD views*: (member, "
    "observer) pairs in which a live member was held DEAD, however briefly: 1 per false DEAD "
    "means the refutation arrived before the news spread. *suspicions/min*: probes that "
    "failed (direct and indirect) and started a suspicion of a live member; *refutations/min*: "
    "members that heard themselves suspected and raised their incarnation.",
    "Loss applies to every datagram independently. Under loss, every false suspicion and its "
    "refutation are disseminated to every member, so their number per member grows with N "
    "while the probing load stays constant: bytes/s per member grow with N and the CPU a "
    "simulated second costs grows faster than N.",
]


def cps(config, n, loss):
    """CPU seconds the simulator spent per simulated second."""
    w = window_of(config, n, loss)
    return w["cpu"] / w["seconds"] if w and w["seconds"] > 0 else None


costs = []
for config in CONFIGS:
    for n in sizes_run:
        for loss in LOSSES:
            w, c = window_of(config, n, loss), cps(config, n, loss)
            if w and c and w["seconds"] < HOUR - 1 and c * HOUR >= 60:
                costs.append(f"{CONFIG_NAME[config]}, N = {pretty_n(n)}, {loss:.0%}: "
                             f"{c * 1000:.0f} ms, an hour {c * HOUR / 60:.0f} min")
if costs:
    notes.append("Why some windows are shorter than an hour — simulator CPU per simulated "
                 "second in this run, and what a full hour would take on one core: "
                 + "; ".join(costs) + ".")
if missing:
    ext = []
    for config in CONFIGS:
        for loss in LOSSES[1:]:
            a, b = cps(config, 100, loss), cps(config, 1000, loss)
            if a and b and any(f"{CONFIG_NAME[config]}, N = 10,000, {loss:.0%}" in m
                               for m in missing):
                ext.append(f"{CONFIG_NAME[config]} at {loss:.0%}: ×{b / a:.0f} from 100 to "
                           f"1,000, so ~{b * b / a:.0f} CPU s per simulated second at 10,000")
    notes.append("Not measured: " + "; ".join(missing) + ". Each false suspicion and its "
                 "refutation reach every member, so the simulation's cost grows about as N²"
                 + (" (" + "; ".join(ext) + ")" if ext else "")
                 + ", and the 10,000-member tables need ~16 GB of memory, one such "
                 f"simulation at a time: beyond {BUDGET_TEXT}.")
sec.table("False positives and traffic under packet loss (live members declared DEAD)",
          ["config", "N", "loss", "simulated", "false DEAD", "per hour", "DEAD views",
           "suspicions/min", "refutations/min", "bytes/s per member", "datagrams/s per member"],
          rows, notes=notes)

# ---- Plot
def block(config, idx):
    lines = []
    for (cf, n, fd, ad, ss, sd, T, c) in plot_rows:
        if cf != config:
            continue
        xs = [fd, ad, ss, sd][idx]
        xs = [x for x in xs if x is not None and x >= 0]
        if xs:
            lines.append(f"{n} {lib.median(xs):.4f} {min(xs):.4f} {max(xs):.4f}")
    return "\n".join(lines) or "1 NaN NaN NaN"


if plot_rows:
    spread_top = 1.7 * max([x for r in plot_rows for x in r[4] + r[5] if x is not None]
                           + [0.1])
    lan_c = cfg_of("lan", min(sizes_run)) or LAN
    # gnuplot data blocks: name -> (config, column of plot_rows' series)
    data = {"PD": ("product", 0), "PA": ("product", 1), "LD": ("lan", 0), "LA": ("lan", 1),
            "PS": ("product", 2), "PX": ("product", 3), "LS": ("lan", 2), "LX": ("lan", 3)}
    script = "".join(f"${k} << EOD\n{block(cf, i)}\nEOD\n" for k, (cf, i) in data.items())
    script += f"""
set multiplot layout 1,2 title "Gossip at scale, simulator (median over crashes, bars: min-max)"
set logscale x
set xrange [60:16000]
set xtics ("100" 100, "1,000" 1000, "10,000" 10000)
set xlabel "members N"
set grid
set key top left font ",9"
set ylabel "seconds after the crash"
set yrange [0:*]
set title "Crash detection"
set key at graph 0.98, graph 0.62 right
e = {E_RATIO:.6f}
pd(x) = e*{pi} + {PROD['suspicion_mult']}*log10(x)*{pi}
ld(x) = e*{lan_c['probe_interval']} + {lan_c['suspicion_mult']}*log10(x)*{lan_c['probe_interval']}
plot $PD using 1:2:3:4 with yerrorlines lw 2 lc rgb "#1f77b4" title "product: first DEAD", \\
     $PA using 1:2 with linespoints lw 1 dt 2 pt 6 lc rgb "#1f77b4" title "product: all know", \\
     pd(x) with lines dt 3 lc rgb "#1f77b4" title "expected: e/(e-1)T + susp. min", \\
     $LD using 1:2:3:4 with yerrorlines lw 2 lc rgb "#d62728" title "LAN: first DEAD", \\
     $LA using 1:2 with linespoints lw 1 dt 2 pt 6 lc rgb "#d62728" title "LAN: all know", \\
     ld(x) with lines dt 3 lc rgb "#d62728" title "expected (LAN)"
set title "Dissemination: first member -> every member"
set key at graph 0.02, graph 0.98 left top
set yrange [0:{spread_top:.3f}]
set ylabel "seconds"
plot $PS using 1:2:3:4 with yerrorlines lw 2 lc rgb "#1f77b4" title "product: SUSPECT spread", \\
     $PX using 1:2 with linespoints dt 2 pt 6 lc rgb "#1f77b4" title "product: DEAD spread", \\
     $LS using 1:2:3:4 with yerrorlines lw 2 lc rgb "#d62728" title "LAN: SUSPECT spread", \\
     $LX using 1:2 with linespoints dt 2 pt 6 lc rgb "#d62728" title "LAN: DEAD spread", \\
     {spread100.get('product', float('nan')):.4f}*log(x)/log(100) with lines dt 3 lc rgb "#555555" title "log N (through product at 100)"
unset multiplot
"""
    try:
        png = "bench-gossip-hour.png" if LONG else "bench-gossip-scale.png"
        lib.gnuplot(script, os.path.join(lib.ROOT, png))
        sec.plot(png,
                 "Simulator: crash → first DEAD and → known to all (left), spread of the "
                 "news from the first member to all (right), against N (log scale); "
                 "dotted: SWIM/Lifeguard expectations")
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        sec.problem(f"plot failed: {e}")

sec.save()
