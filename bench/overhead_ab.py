#!/usr/bin/env python3
"""One tiny remote compile, two builds of jetcc side by side: which adds less to rustc?

    bench/overhead_ab.py [--reps N] [--pin] BIN_DIR_A BIN_DIR_B

Each bin dir holds `jetcc` and `jetcc-worker`. Each gets a farm of its own (nats-server and
one 2-slot worker), started once and idle between jobs; every repetition runs plain rustc and
then the same compile through each farm (`JETCC_DIST_LOCAL_SLOTS=0`, its `--cfg` making it a
miss), the builds' order rotating. Per-job alternation cancels this machine's drift, which
moves a tiny compile's time by more than the difference sought (a run of
`bench/farm.py --only overhead` after another can differ by 10 ms).

Prints, per build, the median time over plain rustc, the worker's own time to answer
(`answered_us` in its debug log) and the client's time around it (wall minus that).

`--pin`: the farms (nats-server and worker) run on CPU 1, plain rustc and the client on CPU
0, as with a worker on another machine: neither side's work (the worker putting outputs in
the CAS after it answered, say) takes the other's CPU.

Everything lives in one temp dir (`TMPDIR`): where the disk makes file creates slow (this
VM's ext4 has no journal: a create skips every inode deleted in the last minutes), run with
`TMPDIR=/dev/shm` to measure jetcc rather than the disk.
"""
import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_cpu(cpu):
    """A `preexec_fn` pinning the child to `cpu` (None: anywhere)."""
    return None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))


def start_farm(bin_dir, d, procs, cpu=None):
    port = free_port()
    d.mkdir()
    procs.append(subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(d / "js")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=on_cpu(cpu)))
    deadline = time.time() + 10
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        if time.time() > deadline:
            sys.exit("nats-server did not start")
        time.sleep(0.02)
    env = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], "JETCC_DIR": str(d / "w"),
           "JETCC_NATS_URL": f"nats://127.0.0.1:{port}", "JETCC_WORKER_SLOTS": "2",
           "JETCC_LOG": "debug", "NO_COLOR": "1"}
    log = d / "w.log"
    procs.append(subprocess.Popen([str(bin_dir / "jetcc-worker")], env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(log, "w"), preexec_fn=on_cpu(cpu)))
    while "jetcc-worker serving" not in log.read_text():
        if time.time() > deadline + 10:
            sys.exit(f"worker did not start: {log.read_text()}")
        time.sleep(0.02)
    return port


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--pin", action="store_true", help="farms on CPU 1, rustc and the client on CPU 0")
    ap.add_argument("bins", nargs=2, type=Path)
    args = ap.parse_args()
    farm_cpu, client_cpu = (1, 0) if args.pin else (None, None)
    tmp = Path(tempfile.mkdtemp(prefix="overhead-ab-"))
    rustc = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True,
                           check=True).stdout.strip() + "/bin/rustc"
    procs, farms = [], []
    try:
        for i, b in enumerate(args.bins):
            farms.append((b.resolve(), start_farm(b.resolve(), tmp / f"farm{i}", procs, farm_cpu), tmp / f"farm{i}"))
        src = tmp / "src"
        (src / "out").mkdir(parents=True)
        (src / "lib.rs").write_text("pub fn f() -> u32 { 1 }\n")
        times = {"plain": []} | {i: [] for i in range(len(farms))}
        for rep in range(args.reps + 1):  # the first repetition warms up, untimed
            order = [(rep + k) % len(farms) for k in range(len(farms))]
            for kind in ["plain"] + order:
                cmd = [rustc, "--crate-name", "t", "--edition=2021", "lib.rs", "--crate-type", "lib",
                       "--emit=dep-info,metadata,link", "--out-dir", "out", "--cfg", f"r{rep}"]
                env = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], "CARGO_MANIFEST_DIR": str(src)}
                if kind != "plain":
                    b, port, d = farms[kind]
                    cmd = [str(b / "jetcc")] + cmd
                    env |= {"JETCC_DIR": str(d / "c"), "JETCC_NATS_URL": f"nats://127.0.0.1:{port}",
                            "JETCC_DIST_LOCAL_SLOTS": "0"}
                for f in (src / "out").iterdir():
                    f.unlink()
                t = time.perf_counter()
                subprocess.run(cmd, cwd=src, env=env, check=True, stdout=subprocess.DEVNULL,
                               preexec_fn=on_cpu(client_cpu))
                if rep > 0:
                    times[kind].append(time.perf_counter() - t)
        plain = statistics.median(times["plain"])
        print(f"one tiny compile, {args.reps} reps: plain rustc {plain * 1000:.1f} ms")
        for i, (b, _, d) in enumerate(farms):
            log = (d / "w.log").read_text()
            phase = lambda name: [int(x) / 1e6 for x in re.findall(name + r"=(\d+)", log)][1:]
            answered = phase("answered_us")
            wall = statistics.median(times[i])
            client = statistics.median([w - a for w, a in zip(times[i], answered)])
            ms = lambda xs: f"{statistics.median(xs) * 1000:.2f}"
            print(f"  {b}: {wall * 1000:.1f} ms, +{(wall - plain) * 1000:.1f} ms over plain "
                  f"(worker answered in {statistics.median(answered) * 1000:.1f} ms: set-up "
                  f"{ms(phase('set_up_us'))}, jail {ms(phase('jail_us'))}, after "
                  f"{ms(phase('cleanup_us'))} ms; the client's time around it {client * 1000:.1f} ms)")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
