"""Runs a module (the collector) with a sampler of its main thread's stack: where the
pipeline's thread stood when it stood still, for the ingest-pause figures.

    python -m bench.stall_sampler --out stacks.txt -- collector.cli run --config c.toml

Every 20 ms the main thread's innermost frames are looked at; a stack seen unchanged for
more than `--stuck-s` is a stall, kept with its length. At exit (SIGTERM included, the
collector stops gracefully) the longest stalls and the most sampled stacks go to `--out`.
A stall in `mqtt_ingest.take` is the pipeline waiting for messages: nothing came from the
broker (unacknowledged messages at the Receive Maximum, or the process starved of CPU).
"""

from __future__ import annotations

import argparse
import atexit
import collections
import os
import runpy
import sys
import threading
import time
from pathlib import Path
from types import FrameType

INTERVAL_S = 0.02


def stack_key(frame: FrameType | None, depth: int = 9) -> str:
    out: list[str] = []
    while frame is not None and len(out) < depth:
        code = frame.f_code
        out.append(f"{os.path.basename(code.co_filename)}:{code.co_name}:{frame.f_lineno}")
        frame = frame.f_back
    return " <- ".join(out)


class Sampler:
    def __init__(self, stuck_s: float) -> None:
        self.stuck_s = stuck_s
        self.samples: collections.Counter[str] = collections.Counter()
        self.stalls: dict[str, list[float]] = collections.defaultdict(list)
        main = threading.main_thread().ident
        if main is None:  # only a thread not yet started has none; the main thread has run
            raise RuntimeError("the main thread has no ident")
        self._main = main

    def run(self) -> None:
        prev, since = "", time.monotonic()
        while True:
            time.sleep(INTERVAL_S)
            frame = sys._current_frames().get(self._main)
            if frame is None:
                continue
            key = stack_key(frame)
            self.samples[key] += 1
            now = time.monotonic()
            if key != prev:
                if prev and now - since > self.stuck_s:
                    self.stalls[prev].append(round(now - since, 2))
                prev, since = key, now

    def report(self, path: Path) -> None:
        with path.open("w") as out:
            out.write(f"== stacks unchanged > {self.stuck_s} s: longest s, times, stack\n")
            for key, spans in sorted(self.stalls.items(), key=lambda kv: -max(kv[1]))[:30]:
                out.write(f"{max(spans)}\t{len(spans)}\t{key}\n")
            out.write("== most sampled stacks: samples, stack\n")
            for key, n in self.samples.most_common(25):
                out.write(f"{n}\t{key}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="where the report goes")
    ap.add_argument("--stuck-s", type=float, default=0.3,
                    help="a stack unchanged this long is a stall")
    ap.add_argument("module", help="the module to run, e.g. collector.cli")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    a = ap.parse_args()
    sampler = Sampler(a.stuck_s)
    threading.Thread(target=sampler.run, name="stall-sampler", daemon=True).start()
    atexit.register(sampler.report, a.out)
    sys.argv = [a.module, *(x for x in a.args if x != "--")]
    runpy.run_module(a.module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
