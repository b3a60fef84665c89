#!/usr/bin/env python3
"""Prints mechanism_benchmark medians as ns per frame above the floor of the same run.

wall: each producer thread's wall-clock ns per frame of its own (the ns_per_frame counter),
      which includes the variant's worker threads competing for the CPUs, and the host's load.
cpu:  the producer threads' CPU ns per frame (Google Benchmark's CPU time): on a shared machine
      the steadier figure, but it leaves out worker threads (urcu_*, mutex_list, the async
      completer), so for those only wall is a cost.
above: the same minus BM_mechanism/floor at the same thread count.

usage: mechanism_table.py results.json   (from --benchmark_out=results.json
         --benchmark_out_format=json --benchmark_repetitions=N
         --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true)
"""
import json
import re
import sys

rows = {}
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    m = re.match(r"BM_mechanism/(\w+)/threads:(\d+)", b["run_name"])
    if m:
        rows[(m.group(1), int(m.group(2)))] = b

order = ["floor", "flush_epoch", "flush_epoch_async", "xenium_hp", "xenium_ebr", "xenium_qsbr",
         "urcu_call_rcu", "urcu_defer_rcu", "mutex_list"]
print(f"{'variant':18} {'thr':>3} {'wall':>8} {'above':>7} {'cpu':>7} {'above':>7} "
      f"{'peak_pending':>12} {'p50_ns':>8} {'p99_ns':>9}")
for thr in sorted({t for (_, t) in rows}):
    floor = rows.get(("floor", thr))
    for v in order:
        b = rows.get((v, thr))
        if b is None or floor is None:
            continue
        wall, cpu = b["ns_per_frame"], b["cpu_time"]
        print(f"{v:18} {thr:>3} {wall:>8.1f} {wall - floor['ns_per_frame']:>7.1f} {cpu:>7.1f} "
              f"{cpu - floor['cpu_time']:>7.1f} {b.get('peak_pending', 0):>12.0f} "
              f"{b.get('p50_ns', 0):>8.0f} {b.get('p99_ns', 0):>9.0f}")
