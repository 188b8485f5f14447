#!/usr/bin/env python3
"""CPU time of a command's threads, grouped by thread name (digits folded into '#').

Usage: scripts/bench/thread-cpu.py COMMAND [ARG...]
e.g.   scripts/bench/thread-cpu.py target/release/tweetoscope bench --tweets 3000000 \
           --metrics-addr off --json --no-pass-through

Runs COMMAND, reads /proc/PID/task/*/stat (user + system time) every 0.2 s while it runs, and
prints, once it has ended, the CPU seconds of each group of threads (tokio's workers and blocking
threads, librdkafka's broker threads, the embedded broker's `rdk:mock`, the learner's training
threads, ...), then the 25 busiest threads. A thread that ends between two readings loses what it
used since the last one (at most 0.2 s each; the forest's tree-growing threads live for one
training). If COMMAND printed a `tweetoscope bench --json` report, its tweets/s and models trained
are printed too. Linux only.
"""

import collections
import json
import os
import re
import subprocess
import sys
import time


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    ticks = os.sysconf("SC_CLK_TCK")
    child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    last = {}
    # The reader below only runs between readings; the pipe is read at the end (a bench report
    # is small).
    while child.poll() is None:
        try:
            tids = os.listdir(f"/proc/{child.pid}/task")
        except OSError:
            tids = []
        for tid in tids:
            try:
                with open(f"/proc/{child.pid}/task/{tid}/comm") as f:
                    name = f.read().strip()
                with open(f"/proc/{child.pid}/task/{tid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            # Fields after the parenthesised name: utime and stime are the 12th and 13th.
            fields = stat[stat.rindex(")") + 2 :].split()
            last[tid] = (name, (int(fields[11]) + int(fields[12])) / ticks)
        time.sleep(0.2)
    output = child.stdout.read().decode(errors="replace")

    groups = collections.Counter()
    counts = collections.Counter()
    for name, cpu in last.values():
        group = re.sub(r"\d+", "#", name)
        groups[group] += cpu
        counts[group] += 1
    total = sum(groups.values())
    print(f"exit status {child.returncode}; {len(last)} threads seen, {total:.1f} CPU s")
    for group, cpu in groups.most_common():
        share = 100 * cpu / total if total else 0.0
        print(f"  {group:24s} {counts[group]:4d} threads {cpu:8.2f} s {share:5.1f} %")
    print("busiest threads:")
    for tid, (name, cpu) in sorted(last.items(), key=lambda kv: -kv[1][1])[:25]:
        print(f"  {tid:>8} {name:20s} {cpu:7.2f} s")
    if "{" in output:
        try:
            report = json.loads(output[output.index("{") :])
            run = report["run"]
            print(f"tweets/s {run['tweets_per_second']:.0f}, models trained {run['models_trained']}")
        except (ValueError, KeyError):
            pass
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
