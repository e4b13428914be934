#!/usr/bin/env python3
"""Runs the benchmark sections and writes BENCHMARKS.md.

Usage: tests/bench/run [--quick] [--long] [--no-report] [SECTION ...]

A section is a script tests/bench/NN_name.py (NN orders them). Each runs
as its own process in its own session, within the time budget it declares
on a line `# bench-budget: SECONDS` (default 300), saves its tables to
tests/bench/out/<key>.json through lib.Section, and prints them. Adding a
section is adding a script; this file does not change.

SECTION arguments select scripts whose name contains them (e.g. `http`);
without them every section runs and out/ is cleared first. A section
marked `# bench-long` (hours of CPU) runs only with --long; its saved
results are kept (and committed: make bench does not rerun it) until it
runs again. BENCHMARKS.md is rebuilt from every out/*.json of a known
section, each with its date and commit.
"""

import glob
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "out")
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
from lib import render_table  # noqa: E402


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def binary_info(path):
    import hashlib
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
        built = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(os.path.getmtime(path)))
        return f"bin/proxystone built {built}, sha256 {digest}…"
    except OSError:
        return "?"


def machine(bin_path):
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    distro = sh(". /etc/os-release && echo \"$PRETTY_NAME\"")
    return {
        "CPU": model or platform.processor(),
        "Cores (online)": str(os.cpu_count()),
        "Memory": mem,
        "Kernel": platform.release(),
        "OS": distro,
        "Load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "Date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "Commit": (sh(f"git -C {ROOT} rev-parse --short HEAD") +
                   (" (with uncommitted changes)"
                    if sh(f"git -C {ROOT} status --porcelain -- src include proto Makefile")
                    else "")),
        "wrk": sh("wrk -v 2>&1 | head -1").split(" Copyright")[0],
        "nginx": sh("nginx -v 2>&1").replace("nginx version: ", ""),
        "Compiler": sh("cc --version | head -1"),
        "Binary": binary_info(bin_path),
    }


def budget_of(path):
    with open(path) as f:
        for line in f.readlines()[:30]:
            m = re.match(r"#\s*bench-budget:\s*(\d+)", line)
            if m:
                return int(m.group(1))
    return 300


def kill_marked(token):
    """Backstop: SIGKILL every process carrying our environment marker
    (everything a section started inherits it), except ourselves."""
    me = os.getpid()
    marker = f"PS_BENCH_TOKEN={token}".encode()
    killed = 0
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    os.kill(int(d), signal.SIGKILL)
                    killed += 1
        except (OSError, ProcessLookupError):
            pass
    return killed


def is_long(path):
    with open(path) as f:
        return any(re.match(r"#\s*bench-long\b", line) for line in f)


def run_section(path, env, token):
    name = os.path.basename(path)
    budget = budget_of(path)
    print(f"\n##### {name} (budget {budget} s)", flush=True)
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, path], env=env, start_new_session=True)
    err = None
    try:
        rc = p.wait(budget)
        if rc != 0:
            err = f"exited with status {rc}"
    except subprocess.TimeoutExpired:
        err = f"over its budget of {budget} s: killed"
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(5)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
    except KeyboardInterrupt:
        os.killpg(p.pid, signal.SIGTERM)
        raise
    finally:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        n = kill_marked(token)
        if n:
            print(f"(killed {n} leftover processes of {name})", flush=True)
    dt = time.monotonic() - t0
    print(f"##### {name}: {'FAILED: ' + err if err else 'done'} in {dt:.0f} s",
          flush=True)
    return err, dt


def section_key(path):
    return re.sub(r"^\d+_", "", os.path.basename(path)[:-3])


def write_report(scripts, mach, results, total_s, argv):
    lines = ["# Benchmarks", "",
             "Written by `make bench` (`tests/bench/run`); do not edit by hand: "
             "the next run rewrites this file.", ""]
    saved = {}
    for jp in glob.glob(os.path.join(OUT, "*.json")):
        try:
            with open(jp) as f:
                d = json.load(f)
            saved[d["script"]] = d
        except (OSError, ValueError, KeyError):
            pass
    sections = [(path, section_key(path), saved.get(os.path.relpath(path, ROOT)))
                for path in scripts]

    # Summary of targets.
    lines += ["## Targets missed", ""]
    any_missed = False
    for path, key, data in sections:
        if data:
            for m in data.get("missed", []):
                lines.append(f"- {data['title']}: {m}")
                any_missed = True
    for path, key, data in sections:
        err = results.get(path)
        if err:
            lines.append(f"- {os.path.basename(path)}: section FAILED ({err})")
            any_missed = True
    if not any_missed:
        lines.append("None.")
    lines.append("")
    problems = [f"- {d['title']}: {p}" for _, _, d in sections if d
                for p in d.get("problems", [])]
    if problems:
        lines += ["## Problems found while measuring", ""] + problems + [""]

    lines += ["## Machine", ""]
    lines.append(render_table("", ["", ""], [[k, v] for k, v in mach.items()]))
    lines.append("")
    lines += ["## How to reproduce", "",
              "```sh",
              "make bench                      # = make all && ./tests/bench/run",
              "./tests/bench/run http writes   # only the sections whose script name contains these",
              "BENCH_REPS=5 ./tests/bench/run  # more repetitions (at least 3)",
              "BENCH_QUICK=1 ./tests/bench/run # shorter runs, for trying the harness only",
              "```", "",
              "`tests/bench/run` installs what it needs if missing (apt-get: wrk, "
              "nginx-light, gnuplot-nox, procps; never needed by `make test`), copies "
              "`bin/proxystone` once so that every section measures the same binary, "
              "and runs each `tests/bench/NN_*.py` in its own process within a time "
              "budget. Every process is started on 127.0.0.1 on free ports, every load "
              "loop is bounded, and everything started is killed at the end, also on "
              "failure. Data directories are on the same (ext4) file system as the "
              "checkout, so the fsyncs are real.", "",
              "Every figure is the median of repeated runs (the count is given per "
              "section); every comparison is a ratio of figures measured back to back "
              "in the same run, because this machine is shared and noisy.", ""]
    if argv:
        lines += [f"This file was last written by `tests/bench/run {' '.join(argv)}` "
                  f"in {total_s:.0f} s.", ""]
    else:
        lines += [f"The whole run took {total_s:.0f} s.", ""]

    for path, key, data in sections:
        rel = os.path.relpath(path, ROOT)
        if not data:
            lines += [f"## {key}", "", f"`{rel}`: no results"
                      + (f" (FAILED: {results[path]})" if results.get(path) else "")
                      + ".", ""]
            continue
        lines += [f"## {data['title']}", ""]
        meta = f"`{rel}`, {data['reps']} repetitions per figure, measured {data['started']}"
        if data.get("commit"):
            meta += f" at commit {data['commit']}"
        if is_long(path):
            meta += " (a `--long` section: `make bench` keeps these results; " \
                    "`tests/bench/run --long` reruns it)"
        if data.get("quick"):
            meta += ", **quick mode (not representative)**"
        if results.get(path):
            meta += f", **FAILED: {results[path]}** (tables below are what it saved)"
        lines += [meta + ".", ""]
        if data.get("intro"):
            lines += [data["intro"], ""]
        for b in data["blocks"]:
            if b["type"] == "table":
                lines.append(render_table(b["caption"], b["columns"], b["rows"],
                                          b.get("notes", ())))
            else:
                lines.append(b["text"])
            lines.append("")
        for p in data.get("plots", []):
            lines += [f"![{p['caption']}]({p['file']})", "", f"*{p['caption']}*", ""]
    with open(os.path.join(ROOT, "BENCHMARKS.md.tmp"), "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    os.replace(os.path.join(ROOT, "BENCHMARKS.md.tmp"), os.path.join(ROOT, "BENCHMARKS.md"))


def main():
    argv = sys.argv[1:]
    quick = "--quick" in argv
    long_ = "--long" in argv
    report = "--no-report" not in argv
    filters = [a for a in argv if not a.startswith("--")]
    scripts = sorted(glob.glob(os.path.join(HERE, "[0-9][0-9]_*.py")))
    chosen = [s for s in scripts
              if (not filters or any(f in os.path.basename(s) for f in filters))
              and is_long(s) == long_]
    if not chosen:
        sys.exit(f"no section matches {filters}; sections: "
                 + ", ".join(os.path.basename(s) for s in scripts))

    src_bin = os.path.join(ROOT, "bin", "proxystone")
    if not os.access(src_bin, os.X_OK):
        sys.exit("bin/proxystone missing: run `make bin/proxystone` first")
    scratch = tempfile.mkdtemp(prefix="ps-bench-", dir="/var/tmp")
    token = uuid.uuid4().hex
    bin_copy = os.path.join(scratch, "proxystone")
    shutil.copy2(src_bin, bin_copy)

    env = dict(os.environ)
    mach = machine(bin_copy)
    env.update({"PS_BENCH_TOKEN": token, "PS_BENCH_BIN": bin_copy,
                "PS_BENCH_COMMIT": mach["Commit"],
                "PS_BENCH_SCRATCH": scratch, "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONUNBUFFERED": "1"})
    if quick:
        env["BENCH_QUICK"] = "1"

    print("Machine: " + "; ".join(f"{k}: {v}" for k, v in mach.items()), flush=True)
    if not filters:
        for path in chosen:
            try:
                os.remove(os.path.join(OUT, section_key(path) + ".json"))
            except FileNotFoundError:
                pass
    results = {}
    t0 = time.monotonic()
    try:
        for path in chosen:
            err, _ = run_section(path, env, token)
            results[path] = err
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        kill_marked(token)
        shutil.rmtree(scratch, ignore_errors=True)
        sys.exit(130)
    finally:
        kill_marked(token)
    total = time.monotonic() - t0
    shutil.rmtree(scratch, ignore_errors=True)
    if report:
        write_report(scripts, mach, results, total, argv)
        print(f"\nBENCHMARKS.md written ({total:.0f} s in all)", flush=True)
    failed = [os.path.basename(p) for p, e in results.items() if e]
    if failed:
        print("FAILED sections: " + ", ".join(failed), flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
