#!/usr/bin/env python3
"""Cost of one rustc invocation through jetcc: a hit and a miss, on the tiniest and the biggest
cacheable crate of a project, replaying cargo's exact rustc command and env.

    bench/hit_cost.py [PROJECT] [--runs N] [--jetcc PATH]

PROJECT defaults to ../shared/bench/workload (copied to a temp dir, built once with a recording
wrapper). For each crate it times, with hyperfine, side by side in one run:
  plain rustc, jetcc miss (empty cache), jetcc hit, and sccache hit/miss if on PATH;
every run starts with the crate's outputs deleted, as after `cargo clean`. It also prints
valgrind (callgrind) instruction counts of one jetcc hit, which machine noise does not move.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def record(outdir, argv):
    """RUSTC_WRAPPER mode: save the invocation, then run rustc."""
    rustc, args = argv[0], argv[1:]
    name = args[args.index("--crate-name") + 1] if "--crate-name" in args else None
    if name and "--crate-type" in args and args[args.index("--crate-type") + 1] == "lib" \
            and not any(a.startswith("incremental=") for a in args) and "-" not in args:
        # The jobserver fds in CARGO_MAKEFLAGS mean nothing outside this cargo run.
        env = {k: v for k, v in os.environ.items() if k not in ("RUSTC_WRAPPER", "CARGO_MAKEFLAGS")}
        Path(outdir, name + ".json").write_text(json.dumps(
            {"cwd": os.getcwd(), "rustc": rustc, "args": args, "env": env}))
    os.execv(rustc, [rustc] + args)


def outputs(inv):
    args = inv["args"]
    name = args[args.index("--crate-name") + 1]
    extra = next((a.split("=", 1)[1] for a in args if a.startswith("extra-filename=")), "")
    out_dir = Path(inv["cwd"], args[args.index("--out-dir") + 1])
    return out_dir, [out_dir / f"lib{name}{extra}.rlib", out_dir / f"lib{name}{extra}.rmeta",
                     out_dir / f"{name}{extra}.d"]


def hyperfine(runs, commands, env):
    """commands: {label: (prepare, command)}; returns {label: mean seconds}."""
    exported = Path(tempfile.mktemp(suffix=".json"))
    cmd = ["hyperfine", "-N", "--runs", str(runs), "--export-json", str(exported), "--style", "none"]
    for label, (prepare, command) in commands.items():
        # -N runs prepare commands without a shell too: give them one.
        cmd += ["--prepare", "sh -c " + shlex.quote(prepare), "-n", label, command]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    data = json.loads(exported.read_text())
    return {r["command"]: (r["median"], r["stddev"] or 0.0) for r in data["results"]}


def callgrind(command, env, cwd):
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
                         + shlex.split(command), env=env, cwd=cwd, capture_output=True, text=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    return int(m.group(1)) if m else None


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--record":
        record(sys.argv[2], sys.argv[3:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("project", nargs="?", default=str(REPO.parent / "shared/bench/workload"))
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--jetcc", default=str(REPO / "target/release/jetcc"))
    args = ap.parse_args()
    for tool in ["hyperfine", "valgrind"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed: apt-get install {tool}")
    if not Path(args.jetcc).exists():
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "jetcc"], cwd=REPO, check=True)
    sccache = shutil.which("sccache")

    tmp = Path(tempfile.mkdtemp(prefix="jetcc-hitcost-"))
    project = tmp / "project"
    shutil.copytree(args.project, project, ignore=shutil.ignore_patterns("target"))
    rec = tmp / "rec"
    rec.mkdir()
    recorder = tmp / "recorder"
    recorder.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(__file__)} --record {rec} \"$@\"\n")
    recorder.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARGO_", "JETCC_", "SCCACHE_", "RUSTC_WRAPPER"))}
    subprocess.run(["cargo", "build", "-q"], cwd=project, env={**env, "RUSTC_WRAPPER": str(recorder)}, check=True)

    invs = [json.loads(p.read_text()) for p in rec.glob("*.json")]
    sized = sorted((outputs(i)[1][0].stat().st_size, i) for i in invs if outputs(i)[1][0].exists())
    picks = {"tiny": sized[0], "big": sized[-1]}
    print(f"{Path(args.project).name}: {len(sized)} cacheable library crates recorded\n")
    for label, (size, inv) in picks.items():
        name = inv["args"][inv["args"].index("--crate-name") + 1]
        out_dir, outs = outputs(inv)
        rm_outs = "rm -f " + " ".join(shlex.quote(str(o)) for o in outs)
        rustc_cmd = shlex.join([inv["rustc"]] + inv["args"])
        jcache, scache = tmp / f"jetcc-{name}", tmp / f"sccache-{name}"
        run_env = {**inv["env"], "JETCC_DIR": str(jcache), "SCCACHE_DIR": str(scache)}
        os.chdir(inv["cwd"])
        commands = {
            "plain rustc": (rm_outs, rustc_cmd),
            # A miss in a warm jetcc (toolchain identity memoized), with no entry for this crate.
            "jetcc miss": (f"{rm_outs}; rm -rf {jcache}/cas {jcache}/ac {jcache}/mf", f"{args.jetcc} {rustc_cmd}"),
        }
        if sccache:
            fresh = f"{sccache} --stop-server >/dev/null 2>&1; rm -rf {scache}; {sccache} --start-server >/dev/null"
            commands["sccache miss"] = (f"{rm_outs}; {fresh}", f"{sccache} {rustc_cmd}")
        miss = hyperfine(max(3, args.runs // 3), commands, run_env)
        # Fill the cache once, then time hits.
        subprocess.run(shlex.split(f"{args.jetcc} {rustc_cmd}"), env=run_env, capture_output=True, check=True)
        hit_cmds = {"jetcc hit": (rm_outs, f"{args.jetcc} {rustc_cmd}")}
        if sccache:
            subprocess.run([sccache, "--stop-server"], env=run_env, capture_output=True)
            subprocess.run([sccache, "--start-server"], env=run_env, capture_output=True, check=True)
            subprocess.run(shlex.split(f"{sccache} {rustc_cmd}"), env=run_env, capture_output=True, check=True)
            hit_cmds["sccache hit"] = (rm_outs, f"{sccache} {rustc_cmd}")
        hits = hyperfine(args.runs, hit_cmds, run_env)
        if sccache:
            subprocess.run([sccache, "--stop-server"], env=run_env, capture_output=True)
        subprocess.run(["sh", "-c", rm_outs])
        instr = callgrind(f"{args.jetcc} {rustc_cmd}", run_env, inv["cwd"])
        plain = miss["plain rustc"][0]
        print(f"{label}: {name} ({size / 1e6:.2f} MB rlib)")
        for k, (median, sd) in {**miss, **hits}.items():
            print(f"  {k:<12} {median * 1000:8.1f} ms ± {sd * 1000:5.1f}   {median / plain:6.3f} x plain rustc")
        print(f"  jetcc hit instructions (callgrind): {instr:,}" if instr else "  callgrind: no count")
        print()
    if os.environ.get("KEEP"):
        print("kept", tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
