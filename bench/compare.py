#!/usr/bin/env python3
"""Whole-build benchmark: plain cargo vs jetcc (cold, warm) vs sccache (cold, warm, if on PATH).

Every build starts from `cargo clean`. Variants run in alternating order over repetitions
(this machine is shared and noisy), and ratios are paired: each repetition's time divided by
the plain time of the same repetition, then the median of those ratios.

    bench/compare.py [PROJECT] [--reps N] [--jetcc PATH] [--also LABEL=PATH …]

--also adds another jetcc binary (say, one built from an older commit) as a variant of the same
run, so before/after ratios come from one run.

PROJECT defaults to ../shared/bench/workload. It is copied to a temp dir; the original is
never touched. Builds use the default dev profile.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def clean_env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CARGO_", "RUSTC_WRAPPER", "JETCC_", "SCCACHE_", "RUSTFLAGS"))}
    return env


def build(project, env):
    subprocess.run(["cargo", "clean", "-q"], cwd=project, env=env, check=True)
    start = time.monotonic()
    out = subprocess.run(["cargo", "build", "-q"], cwd=project, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.monotonic() - start
    if out.returncode != 0:
        sys.exit(f"build failed ({env.get('RUSTC_WRAPPER', 'plain')}):\n{out.stderr[-3000:]}")
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("project", nargs="?", default=str(REPO.parent / "shared/bench/workload"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--jetcc", default=str(REPO / "target/release/jetcc"))
    ap.add_argument("--no-sccache", action="store_true", help="skip sccache even if on PATH")
    ap.add_argument("--also", action="append", default=[], metavar="LABEL=PATH",
                    help="another jetcc binary to measure in the same run")
    args = ap.parse_args()
    if not Path(args.jetcc).exists():
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "jetcc"], cwd=REPO, check=True)
    sccache = None if args.no_sccache else shutil.which("sccache")

    tmp = Path(tempfile.mkdtemp(prefix="jetcc-bench-"))
    project = tmp / "project"
    shutil.copytree(args.project, project, ignore=shutil.ignore_patterns("target"))
    base = clean_env()
    # Fetch once so no build pays for the network.
    subprocess.run(["cargo", "fetch", "-q"], cwd=project, env=base, check=True)

    wrappers = {"jetcc": args.jetcc}
    for spec in args.also:
        label, path = spec.split("=", 1)
        wrappers[label] = path
    variants = ["plain"] + list(wrappers) + (["sccache"] if sccache else [])
    times = {"plain": []}
    for v in variants[1:]:
        times[f"{v}-cold"], times[f"{v}-warm"] = [], []
    for rep in range(args.reps):
        order = variants[rep % len(variants):] + variants[:rep % len(variants)]
        if rep % 2:
            order.reverse()
        for v in order:
            if v == "plain":
                times["plain"].append(build(project, base))
                continue
            cache = tmp / f"{v}-cache-{rep}"
            env = dict(base)
            if v in wrappers:
                env.update(RUSTC_WRAPPER=wrappers[v], JETCC_DIR=str(cache))
            else:
                env.update(RUSTC_WRAPPER=sccache, SCCACHE_DIR=str(cache), SCCACHE_CACHE_SIZE="20G")
                subprocess.run([sccache, "--stop-server"], env=env, capture_output=True)
                subprocess.run([sccache, "--start-server"], env=env, check=True, capture_output=True)
            times[f"{v}-cold"].append(build(project, env))
            times[f"{v}-warm"].append(build(project, env))
            if v == "sccache":
                subprocess.run([sccache, "--stop-server"], env=env, capture_output=True)
            shutil.rmtree(cache, ignore_errors=True)
        print(f"rep {rep + 1}/{args.reps}: " + ", ".join(
            f"{k} {t[-1]:.1f}s" for k, t in times.items() if t), flush=True)

    print(f"\n{Path(args.project).name}: medians over {args.reps} repetitions (paired ratios to plain)")
    plain = times["plain"]
    for k, t in times.items():
        if not t:
            continue
        ratio = statistics.median(x / p for x, p in zip(t, plain))
        print(f"  {k:<16} {statistics.median(t):7.2f} s   {ratio:5.3f} x plain")
    for kind in ["cold", "warm"]:
        for other in variants[2:]:
            r = statistics.median(j / s for j, s in zip(times[f"jetcc-{kind}"], times[f"{other}-{kind}"]))
            print(f"  jetcc/{other} {kind}: {r:.3f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
