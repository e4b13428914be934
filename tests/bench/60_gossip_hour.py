#!/usr/bin/env python3
"""Gossip at scale with every loss window an hour of simulated time, at
N = 100, 1,000 and 10,000: 50_gossip_scale.py with GOSSIP_HOUR=1. About
two hours of wall time on two cores, 16 GB for the 10,000-member cluster:
run with `tests/bench/run --long`; `make bench` keeps its last results."""
# bench-long
# bench-budget: 10800

import os
import runpy

os.environ["GOSSIP_HOUR"] = "1"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "50_gossip_scale.py"),
               run_name="__main__")
