#!/usr/bin/env python3
"""Edit-rebuild loop: the incremental workspace member is edited and rebuilt, plainly and
through jetcc, alternating, to show that caching incremental units does not slow the loop.

    bench/edit_loop.py [PROJECT] [--edits N] [--file src/main.rs]

PROJECT (default ../shared/bench/workload) is copied twice, one copy per variant, each built
once before the loop (jetcc with its own empty cache). Each edit appends a new function to the
file (a real content change, so rustc recompiles incrementally) in both copies.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("project", nargs="?", default=str(REPO.parent / "shared/bench/workload"))
    ap.add_argument("--edits", type=int, default=8)
    ap.add_argument("--file", default="src/main.rs")
    ap.add_argument("--jetcc", default=str(REPO / "target/release/jetcc"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="jetcc-editloop-"))
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("CARGO_", "RUSTC_WRAPPER", "JETCC_", "RUSTFLAGS"))}
    envs = {
        "plain": base,
        "jetcc": {**base, "RUSTC_WRAPPER": args.jetcc, "JETCC_DIR": str(tmp / "cache")},
    }
    dirs = {}
    for v, env in envs.items():
        dirs[v] = tmp / v
        shutil.copytree(args.project, dirs[v], ignore=shutil.ignore_patterns("target"))
        subprocess.run(["cargo", "build", "-q"], cwd=dirs[v], env=env, check=True)
    times = {v: [] for v in envs}
    for i in range(args.edits):
        order = list(envs) if i % 2 == 0 else list(reversed(envs))
        for v in order:
            f = dirs[v] / args.file
            with f.open("a") as fh:
                fh.write(f"\n#[allow(dead_code)]\nfn jetcc_edit_{i}() -> u32 {{ {i} }}\n")
            start = time.monotonic()
            subprocess.run(["cargo", "build", "-q"], cwd=dirs[v], env=envs[v], check=True,
                           stderr=subprocess.DEVNULL)
            times[v].append(time.monotonic() - start)
    p, j = times["plain"], times["jetcc"]
    print(f"{Path(args.project).name}: {args.edits} edits of {args.file}")
    print(f"  plain  median {statistics.median(p):.3f} s")
    print(f"  jetcc  median {statistics.median(j):.3f} s")
    print(f"  jetcc/plain (paired median) {statistics.median(a / b for a, b in zip(j, p)):.3f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
