"""Workload for the recordings: explicit garbage collections in three one-second phases.

Counts its own collections with gc.callbacks (independent of any tracer) and writes the count
to OUT once done, then exits without the collections of interpreter shutdown. Waits for the file GO so that tracers can attach first.
"""
import gc
import os
import sys
import time

go, out = sys.argv[1], sys.argv[2]
phases = [int(n) for n in sys.argv[3].split(",")]
starts = 0


def on_gc(phase, _info):
    global starts
    if phase == "start":
        starts += 1


gc.callbacks.append(on_gc)
while not os.path.exists(go):
    time.sleep(0.02)
starts = 0
for n in phases:
    for _ in range(n):
        gc.collect()
    time.sleep(1)
with open(out, "w") as f:
    f.write(f"{starts}\n")
# No interpreter shutdown: its final collections would not reach gc.callbacks.
os._exit(0)
