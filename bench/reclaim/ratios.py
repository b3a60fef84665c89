#!/usr/bin/env python3
"""Prints reclaim_benchmark medians as ratios to the plain-free floor (same thread count).

usage: ratios.py results.json   (from --benchmark_out=... --benchmark_out_format=json
                                  --benchmark_repetitions=5 --benchmark_report_aggregates_only=true)
"""
import json
import re
import sys

rows = {}
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    m = re.match(r"(.*)/real_time/threads:(\d+)", b["run_name"])
    rows[(m.group(1), int(m.group(2)))] = b

print(f"{'benchmark':46} {'thr':>3} {'items/s':>10} {'ratio':>6} {'peak_pending':>12} {'p50_ns':>10} {'p99_ns':>10}")
for (name, thr), b in rows.items():
    floor = rows[("BM_plain_free", thr)]["items_per_second"]
    print(f"{name:46} {thr:>3} {b['items_per_second']:>10.0f} {b['items_per_second'] / floor:>6.2f} "
          f"{b.get('peak_pending', 0):>12.0f} {b.get('p50_ns', 0):>10.0f} {b.get('p99_ns', 0):>10.0f}")
