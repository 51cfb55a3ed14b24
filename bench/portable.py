#!/usr/bin/env python3
"""What a second machine gets from the first one's shared results, by `[cache] paths` mode.

    bench/portable.py [--reps N] [--workload PATH]

Two "machines" on this host, each with its own HOME, CARGO_HOME (the registry's downloads and
index shared read-only, sources unpacked by its own cargo), checkout path and target dir, share
a JetStream tier (a nats-server with no worker). Per repetition, for each mode (order
alternated): machine A builds cold, filling the tier; A builds again after `cargo clean` (its
warm build, from its local cache); then B builds with an empty local cache, reading the tier.
A plain cold build on A is the baseline.

Prints medians of B against plain and against A's warm build, and B's hits, per mode:
`exact` is jetcc before portable paths (another checkout shares almost nothing), `portable`
is the default with a shared tier.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from farm import JETCC, REPO, Farm, clean_env, timed  # noqa: E402

HOME = Path(os.environ["HOME"])
CARGO_HOME = Path(os.environ.get("CARGO_HOME", HOME / ".cargo"))
RUSTUP_HOME = Path(os.environ.get("RUSTUP_HOME", HOME / ".rustup"))


class Machine:
    def __init__(self, root, workload):
        self.root = root
        self.home = root / "home"
        cargo_home = self.home / ".cargo"
        (cargo_home / "registry").mkdir(parents=True)
        for part in ("index", "cache"):
            (cargo_home / "registry" / part).symlink_to(CARGO_HOME / "registry" / part)
        self.checkout = root / "src" / workload.name
        shutil.copytree(workload, self.checkout, ignore=shutil.ignore_patterns("target"))
        self.target = root / "target"

    def env(self, cache=None, mode=None, nats=None):
        env = {**clean_env(), "HOME": str(self.home), "CARGO_HOME": str(self.home / ".cargo"),
               "RUSTUP_HOME": str(RUSTUP_HOME), "CARGO_TARGET_DIR": str(self.target),
               "CARGO_INCREMENTAL": "0", "CARGO_NET_OFFLINE": "true"}
        if cache:
            env.update({"RUSTC_WRAPPER": str(JETCC), "JETCC_DIR": str(cache), "JETCC_PATHS": mode,
                        "JETCC_NATS_URL": nats})
        return env

    def build(self, env):
        return timed(["cargo", "build", "--locked"], env, self.checkout)

    def clean(self):
        shutil.rmtree(self.target, ignore_errors=True)


def hits(cache):
    out = subprocess.run([str(JETCC), "--show-stats", "--json"],
                         env={**clean_env(), "JETCC_DIR": str(cache)}, capture_output=True, text=True)
    s = json.loads(out.stdout)
    return s["hits"], s["hits"] + s["misses"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--workload", type=Path, default=REPO.parent / "shared/bench/workload")
    args = ap.parse_args()
    if not JETCC.exists():
        sys.exit("build jetcc first: cargo build --release")
    results = {m: {"b_vs_plain": [], "b_vs_a_warm": [], "b": [], "a_warm": [], "hits": []}
               for m in ("exact", "portable")}
    plains = []
    with tempfile.TemporaryDirectory(prefix="jetcc-portable-") as tmp:
        tmp = Path(tmp)
        for rep in range(args.reps):
            farm = Farm(tmp, workers=0, slots=1)
            try:
                a = Machine(tmp / f"r{rep}" / "ci-agent-workspace-app@2", args.workload)
                b = Machine(tmp / f"r{rep}" / "laptop", args.workload)
                a.clean()
                plain = a.build(a.env())
                plains.append(plain)
                modes = ["exact", "portable"] if rep % 2 == 0 else ["portable", "exact"]
                for mode in modes:
                    a_cache, b_cache = tmp / f"r{rep}-{mode}-a", tmp / f"r{rep}-{mode}-b"
                    a.clean()
                    a.build(a.env(a_cache, mode, farm.url))
                    a.clean()
                    a_warm = a.build(a.env(a_cache, mode, farm.url))
                    b.clean()
                    b_time = b.build(b.env(b_cache, mode, farm.url))
                    r = results[mode]
                    r["b"].append(b_time)
                    r["a_warm"].append(a_warm)
                    r["b_vs_plain"].append(b_time / plain)
                    r["b_vs_a_warm"].append(b_time / a_warm)
                    r["hits"].append(hits(b_cache))
                    print(f"rep {rep} {mode:>8}: plain {plain:6.2f}s  A warm {a_warm:5.2f}s  "
                          f"B {b_time:6.2f}s  B hits {r['hits'][-1][0]}/{r['hits'][-1][1]}",
                          flush=True)
            finally:
                farm.stop()
    med = statistics.median
    print(f"\nworkload {args.workload.name}, {args.reps} reps, plain cold build {med(plains):.2f} s")
    for mode, r in results.items():
        print(f"{mode:>8}: second machine {med(r['b']):6.2f} s = {med(r['b_vs_plain']):.3f}x plain, "
              f"{med(r['b_vs_a_warm']):.2f}x the first machine's warm build ({med(r['a_warm']):.2f} s); "
              f"hits {r['hits'][-1][0]}/{r['hits'][-1][1]}")


if __name__ == "__main__":
    main()
