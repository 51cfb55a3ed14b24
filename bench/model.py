#!/usr/bin/env python3
"""A model of a build on a farm: from one measured build's units, predict the build time for
N workers x M slots, and say what limits it.

    bench/model.py collect PROJECT [--package P] --out UNITS.json
    bench/model.py predict UNITS.json [--client-cores C] [cost options]
    bench/model.py validate UNITS.json --local SECONDS --farm SECONDS

collect: a cold plain build of PROJECT (copied to a temp dir), `cargo build --timings -j 1`
  pinned to one CPU, so each unit's duration is its own CPU work, not time shared with others.
  The dependency graph comes from cargo's `--unit-graph` (unstable, so RUSTC_BOOTSTRAP=1).
  C/C++ compiles that build scripts start go through a timing wrapper (CC/CXX), so a
  build-script run is split into its serial part and the C compiles the farm could take
  (object compiles; a configure script's conftest compiles, links and `-M` passes are serial).
  Each unit's output size is read from the target dir (what a remote compile downloads).

predict: an event-driven simulation of cargo's scheduler and jetcc's placement:
  - cargo starts a ready unit while fewer than `-j` compiles run (default: client cores plus
    farm slots), longest remaining path first (an approximation of cargo's own priority);
    a library's dependents that only need its metadata start at its rmeta point (pipelining);
  - two placements: "local first" (today's jetcc: a free client core runs it; otherwise the
    farm if it would finish there before a core could, else it waits for a core) and "farm
    first" (while the farm has a free slot and more compiles are ready than cores are free,
    everything but the head of the critical path goes to the farm);
  - a remote compile costs the client `client_cpu_ms` of CPU (pre-pass, hashing, uploads),
    `client_rtts` round trips of the client and `worker_rtts` of a worker, `worker_setup_ms`
    on the worker slot, and its output's transfer over the client's link;
  - build-script runs stay on the client: their serial part holds a core; the C compiles they
    start are placed like units.
  Scenarios: the split rig of bench/farm.py (1 client core, one 1-slot worker, loopback), then
  4 x 8 and 10 x 16 worker cores on a 1 Gbit/s LAN and behind a 20 ms link, for a 2-core and
  an 8-core client. Each line names its limit: the critical path, the client's CPU, the
  client's link or all cores together.

validate: the model's split-rig prediction against bench/farm.py's measured split-rig times
  (`--only split`: jetcc local-only and jetcc + farm), with the error of each.

What the model leaves out: the order within a build script's C compiles (all of them may run
at once; jemalloc's two rounds, the second waiting for symbols from the first, are one here),
cargo's own CPU, the server's (nats-server shares the workers'
CPUs on the split rig), compile times that differ between machines, and caching (every
compile is a miss: this is a cold build).
"""
import argparse
import heapq
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

# Measured per-job costs (issue 17): a tiny remote job cost ~40 ms over rustc on 2026-12-01,
# about half on each side; on 2026-12-04 +14 ms (bench/overhead_ab.py), of which the client's
# CPU 7 ms (bench/farm.py --only overhead) and the worker's set-up and clean-up 1 + 1.3 ms
# (its `job phases` log line). With these the split rig of that day was predicted at 0.550x,
# measured 0.512x (median of 3 paired ratios; farm time -4.3 %).
DEFAULTS = dict(client_cpu_ms=7.0, worker_setup_ms=2.5, client_rtts=4, worker_rtts=6)
# Per named link: the bytes per second the client's link carries, the client's round trip to
# the server and the workers' (workers sit beside the server on a LAN).
LINKS = {
    "loopback": (2e9, 0.0001, 0.0001),
    "1gbit-lan": (125e6, 0.0002, 0.0002),
    "20ms-link": (125e6, 0.020, 0.0002),
}

# Logs each C compiler run of a build script: `c` for an object compile the farm could take,
# `s` for the rest, which stays in the run's serial part: links, `-M`/`-E` passes, and a
# configure script's conftest compiles (it runs them one after the other, each deciding
# the next).
CC_TIMER = """#!/bin/sh
s=$(date +%s%N)
"$JETCC_MODEL_REAL" "$@"
r=$?
case " $* " in *" -c "*) kind=c ;; *) kind=s ;; esac
case "$*" in *conftest*) kind=s ;; esac
echo "$CARGO_PKG_NAME $CARGO_PKG_VERSION $s $(date +%s%N) $kind" >> "$JETCC_MODEL_LOG"
exit $r
"""


def unit_key(pkg_id, kind, mode):
    """(name, version, role) of a unit of cargo's unit graph, as its timings name it. Package
    ids are `path+file:///x/name#0.1.0` or `registry+https://...#name@1.0.0`."""
    source, _, tail = pkg_id.rpartition("#")
    if "@" in tail:
        name, version = tail.split("@", 1)
    else:
        name, version = source.rstrip("/").rsplit("/", 1)[-1], tail
    if mode == "run-custom-build":
        role = "run"
    elif "custom-build" in kind:
        role = "build-script"
    elif "bin" in kind:
        role = "bin"
    else:
        role = "lib"
    return name, version, role


def timing_role(unit):
    """The role of a unit of cargo's timings: its `target` is `""`, ` name "bin"`,
    ` build-script` or ` build-script (run)`."""
    t = unit["target"]
    if "(run)" in t:
        return "run"
    if "build-script" in t:
        return "build-script"
    return "bin" if '"bin"' in t else "lib"


def collect(args):
    tmp = Path(tempfile.mkdtemp(prefix="jetcc-model-"))
    try:
        project = tmp / "project"
        shutil.copytree(args.project, project, ignore=shutil.ignore_patterns("target"))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("JETCC_", "CARGO_", "RUSTC_WRAPPER", "SCCACHE"))}
        env.update(CARGO_INCREMENTAL="0", CARGO_TARGET_DIR=str(tmp / "target"))
        pkg = ["-p", args.package] if args.package else []
        graph = json.loads(subprocess.run(
            ["cargo", "build", "--unit-graph", "-Z", "unstable-options", *pkg],
            cwd=project, env={**env, "RUSTC_BOOTSTRAP": "1"}, check=True,
            capture_output=True, text=True).stdout)
        log = tmp / "cc.log"
        for var, real in [("CC", "cc"), ("CXX", "c++")]:
            wrapper = tmp / f"timed-{real}"
            wrapper.write_text(CC_TIMER.replace("$JETCC_MODEL_REAL", shutil.which(real) or real))
            wrapper.chmod(0o755)
            env[var] = str(wrapper)
        env["JETCC_MODEL_LOG"] = str(log)
        subprocess.run(["cargo", "fetch", "-q"], cwd=project, env=env, check=True)
        subprocess.run(["taskset", "-c", args.cpu, "cargo", "build", "-q", "-j", "1",
                        "--timings", *pkg], cwd=project, env=env, check=True)
        html = (tmp / "target/cargo-timings/cargo-timing.html").read_text()
        data = html[html.index("const UNIT_DATA = ") + len("const UNIT_DATA = "):]
        data = data[:data.index("];\n") + 1]
        timed = json.loads(data)
        c_jobs = defaultdict(list)
        if log.exists():
            for line in log.read_text().split("\n"):
                if line:
                    name, version, s, e, kind = line.split()
                    if kind == "c":
                        c_jobs[(name, version)].append((int(e) - int(s)) / 1e9)
        units = build_units(graph, timed, c_jobs, tmp / "target")
        Path(args.out).write_text(json.dumps({"project": Path(args.project).name,
                                              "package": args.package, "units": units}, indent=1))
        total = sum(u["duration"] for u in units)
        print(f"{len(units)} units, {total:.1f} s of work, "
              f"{sum(len(u['c_jobs']) for u in units)} C compiles -> {args.out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def output_bytes(target, name, role):
    deps = target / "debug" / "deps"
    stem = name.replace("-", "_")
    pats = {"lib": [f"lib{stem}-*.rlib", f"lib{stem}-*.rmeta", f"lib{stem}-*.so"],
            "bin": [f"{stem}-*"], "build-script": [], "run": []}[role]
    sizes = [sum(p.stat().st_size for p in deps.glob(pat) if p.is_file()) for pat in pats]
    return sum(sizes)


def build_units(graph, timed, c_jobs, target):
    by_key = defaultdict(list)
    for t in timed:
        by_key[(t["name"], t["version"], timing_role(t))].append(t)
    units = []
    for i, u in enumerate(graph["units"]):
        name, version, role = unit_key(u["pkg_id"], u["target"]["kind"], u["mode"])
        matches = by_key.get((name, version, role)) or []
        t = matches.pop(0) if matches else None
        duration = t["duration"] if t else 0.0
        rmeta = duration
        for section, span in (t or {}).get("sections") or []:
            if section == "frontend":
                rmeta = span["end"]
        pipelined_kind = role == "lib" and "proc-macro" not in u["target"]["kind"]
        jobs = c_jobs.get((name, version), []) if role == "run" else []
        units.append({
            "i": i, "name": name, "role": role, "duration": duration,
            "rmeta": rmeta if pipelined_kind else duration,
            # A dependent that links (or runs, or is a proc-macro's user at compile time)
            # needs the full output; a library compile needs only the metadata.
            "deps": [[d["index"], not (role == "lib" and "proc-macro" not in u["target"]["kind"])]
                     for d in u["dependencies"]],
            "out_bytes": output_bytes(target, u["target"]["name"], role),
            "c_jobs": jobs,
            "serial": max(0.0, duration - sum(jobs)),
            "pipelined": pipelined_kind,
        })
    return units


def expand_runs(units):
    """Splits each build-script run into its serial halves (client only) and the C compiles
    between them (placed like rustc units), so the scheduler sees one kind of task."""
    # Binaries and build scripts link on the client, as jetcc keeps them
    # (`Invocation::distributable`); proc macros (the libs cargo cannot pipeline) go.
    out = [dict(u, local_only=u["role"] in ("bin", "build-script")) for u in units]
    last = {}  # a run's index -> the index of its second half
    for u in units:
        if u["role"] != "run":
            continue
        half = u["serial"] / 2
        first = out[u["i"]]
        first.update(duration=half, rmeta=half, local_only=True, pipelined=False)
        jobs = []
        for d in u["c_jobs"]:
            jobs.append(len(out))
            out.append(dict(i=len(out), name=u["name"], role="c", duration=d, rmeta=d,
                            deps=[[u["i"], True]], out_bytes=0, pipelined=False, local_only=False))
        last[u["i"]] = len(out)
        out.append(dict(i=len(out), name=u["name"], role="run", duration=half, rmeta=half,
                        deps=[[j, True] for j in jobs] or [[u["i"], True]], out_bytes=0,
                        pipelined=False, local_only=True))
    for u in out:
        if u["role"] != "c" and not (u["role"] == "run" and u["i"] in last.values()):
            u["deps"] = [[last.get(d, d), full] for d, full in u["deps"]]
    return out


class Sim:
    """One simulated build, event by event. Times in seconds.

    cargo starts a ready task while fewer than `jobs` run, highest priority (longest path to
    the end) first. A started compile takes a free client core; with none free, it goes to
    the farm if it would finish there before a core could finish it, else it waits for a core,
    and freed cores go to the waiting task of highest priority (what placement by per-unit
    history can do; flock wake-ups are first-come); a freed farm slot takes the waiting task
    of highest priority that it would finish first. Workers take jobs first-come."""

    def __init__(self, units, client_cores, farm_slots, jobs, link, costs, policy):
        self.units = expand_runs(units)
        self.policy = policy
        self.free_cores = client_cores
        self.cores_busy_until = []  # heap of when busy cores free up
        self.farm = [0.0] * farm_slots  # when each worker slot frees up
        self.jobs = jobs
        self.bw, client_rtt, worker_rtt = LINKS[link]
        self.costs = costs
        self.latency = costs["client_rtts"] * client_rtt + costs["worker_rtts"] * worker_rtt
        self.remote = 0
        self.client_busy = 0.0
        self.link_busy = 0.0

    def remote_finish(self, now, u):
        """When `u` would be done (and when its metadata would be here) on the farm."""
        c = self.costs
        slot = min(range(len(self.farm)), key=lambda k: self.farm[k])
        start = max(now + c["client_cpu_ms"] / 1000 + self.latency / 2, self.farm[slot])
        run = start + c["worker_setup_ms"] / 1000
        xfer = u["out_bytes"] / self.bw
        # The link is not queued (outputs arrive in the order compiles end, not start): its
        # total use is a bound of its own (`limit_of`).
        arrive = run + u["duration"] + self.latency / 2 + xfer
        return slot, run, arrive, xfer

    def run(self):
        """The build's duration."""
        units = self.units
        dependents = defaultdict(set)
        for u in units:
            for d, _full in u["deps"]:
                dependents[d].add(u["i"])
        prio = {}
        for i in reversed(topo(units)):
            prio[i] = units[i]["duration"] + max((prio[x] for x in dependents[i]), default=0)
        waiting_deps = {u["i"]: len(u["deps"]) for u in units}
        ready = [(-prio[u["i"]], u["i"]) for u in units if not u["deps"]]
        heapq.heapify(ready)
        want_core = []  # (-prio, unit): started by cargo, waiting for a client core
        events = []  # (time, seq, kind, unit)
        seq = running = finished = 0
        now = end = 0.0
        unfinished = {u["i"] for u in units}

        def push(t, kind, i):
            nonlocal seq
            heapq.heappush(events, (t, seq, kind, i))
            seq += 1

        def run_local(i):
            u = units[i]
            self.free_cores -= 1
            self.client_busy += u["duration"]
            push(now + (u["rmeta"] if u["pipelined"] else u["duration"]), "rmeta", i)
            push(now + u["duration"], "done-local", i)

        def try_farm(i, farm_first=False):
            """Sends `i` to the farm if it would be done there before a core could do it."""
            u = units[i]
            if not self.farm or u["local_only"]:
                return False
            # The soonest a core could finish it: now if one is free, else when the next
            # core frees up.
            soonest = now if self.free_cores > 0 else min(
                t for t, _s, k, _i in events if k == "done-local")
            soonest += u["duration"]
            slot, run, arrive, xfer = self.remote_finish(now, u)
            if not (arrive < soonest or (farm_first and run <= now + 0.1)):
                return False
            self.client_busy += self.costs["client_cpu_ms"] / 1000
            self.farm[slot] = run + u["duration"]
            self.link_busy += xfer
            self.remote += 1
            push(run + (u["rmeta"] if u["pipelined"] else u["duration"]) + self.latency / 2,
                 "rmeta", i)
            push(arrive, "done", i)
            return True

        while finished < len(units):
            while ready and running < self.jobs:
                _, i = heapq.heappop(ready)
                u = units[i]
                running += 1
                # Farm first: while the farm has a free slot and more compiles are ready than
                # cores are free, a compile goes there unless it leads the critical path (a
                # local core runs that without overheads).
                longest = max(prio[j] for j in unfinished)
                farm_first = (self.policy == "farm-first" and self.farm and not u["local_only"]
                              and prio[i] < 0.9 * longest and len(ready) >= self.free_cores)
                if self.free_cores > 0 and not farm_first:
                    run_local(i)
                    continue
                if try_farm(i, farm_first):
                    continue
                if self.free_cores > 0:
                    run_local(i)
                else:
                    heapq.heappush(want_core, (-prio[i], i))
            if not events:
                sys.exit("the unit graph has a cycle or a unit that never becomes ready")
            now, _, kind, i = heapq.heappop(events)
            if kind.startswith("done"):
                running -= 1
                finished += 1
                unfinished.discard(i)
                end = max(end, now)
                if kind == "done-local":
                    self.free_cores += 1
                    if want_core:
                        run_local(heapq.heappop(want_core)[1])
                elif want_core:
                    # A farm slot freed: the waiting compile of highest priority goes there
                    # if it is done sooner than on the next free core (jetcc's
                    # `Placement::farm_now_sooner`).
                    for k, (p, j) in enumerate(sorted(want_core)):
                        if try_farm(j):
                            want_core.remove((p, j))
                            heapq.heapify(want_core)
                            break
            for j in dependents[i]:
                # A full edge waits for "done", a metadata edge for "rmeta".
                for d, full in units[j]["deps"]:
                    if d == i and full == kind.startswith("done"):
                        waiting_deps[j] -= 1
                        if waiting_deps[j] == 0:
                            heapq.heappush(ready, (-prio[j], j))
        return end


def topo(units):
    order, seen = [], set()
    deps = {u["i"]: [d for d, _ in u["deps"]] for u in units}

    def visit(i):
        stack = [(i, iter(deps[i]))]
        seen.add(i)
        while stack:
            node, it = stack[-1]
            nxt = next((d for d in it if d not in seen), None)
            if nxt is None:
                order.append(node)
                stack.pop()
            else:
                seen.add(nxt)
                stack.append((nxt, iter(deps[nxt])))

    for u in units:
        if u["i"] not in seen:
            visit(u["i"])
    return order


def critical_path(units):
    """The longest chain of compiles, pipelining included: no build is shorter."""
    units = expand_runs(units)
    ends = {}
    for i in topo(units):
        u = units[i]
        ready = max((ends[d] if full else ends[d] - units[d]["duration"] + units[d]["rmeta"]
                     for d, full in u["deps"]), default=0.0)
        ends[i] = ready + u["duration"]
    return max(ends.values())


def simulate(units, client_cores, workers, slots, link, costs, jobs=None, policy="local-first"):
    farm_slots = workers * slots
    sim = Sim(units, client_cores, farm_slots, jobs or client_cores + farm_slots, link, costs,
              policy)
    t = sim.run()
    return t, sim


def limit_of(units, sim, client_cores, farm_slots):
    """The lower bounds on the build's time; the largest is what limits it."""
    bounds = {
        "critical path": critical_path(units),
        "client CPU": sim.client_busy / client_cores,
        "client link": sim.link_busy,
        "all cores": sum(u["duration"] for u in units) / (client_cores + farm_slots),
    }
    name = max(bounds, key=bounds.get)
    return name, bounds


def predict(args):
    data = json.loads(Path(args.units).read_text())
    units = data["units"]
    costs = {k: getattr(args, k) for k in DEFAULTS}
    work = sum(u["duration"] for u in units)
    print(f"{data['project']}: {len(units)} units, {work:.1f} s of compile work, critical path "
          f"{critical_path(units):.1f} s; per remote job: client {costs['client_cpu_ms']:.0f} ms "
          f"CPU, worker {costs['worker_setup_ms']:.0f} ms setup, "
          f"{costs['client_rtts'] + costs['worker_rtts']} round trips")
    scenarios = [("split rig", 1, 1, 1, "loopback", 4)]
    for link in ["1gbit-lan", "20ms-link"]:
        for cores in args.client_cores:
            scenarios += [(f"4 x 8, {link}", cores, 4, 8, link, None),
                          (f"10 x 16, {link}", cores, 10, 16, link, None)]
    print(f"  {'':<20} {'client':>6} {'local-only':>10}  {'farm, local first':>22}  "
          f"{'farm, farm first':>22}  limit of the faster")
    for name, cores, workers, slots, link, jobs in scenarios:
        local, _ = simulate(units, cores, 0, 0, link, costs, jobs)
        cells, best = [], None
        for policy in ["local-first", "farm-first"]:
            t, sim = simulate(units, cores, workers, slots, link, costs, jobs, policy)
            cells.append(f"{t:6.1f} s {t / local:.3f}x {sim.remote:3d} rem")
            if best is None or t < best[0]:
                best = (t, sim)
        limit, bounds = limit_of(units, best[1], cores, workers * slots)
        print(f"  {name:<20} {cores:>4} c {local:8.1f} s  {cells[0]:>22}  {cells[1]:>22}  "
              f"{limit} ({bounds[limit]:.1f} s)")


def validate(args):
    data = json.loads(Path(args.units).read_text())
    costs = {k: getattr(args, k) for k in DEFAULTS}
    local, _ = simulate(data["units"], 1, 0, 0, "loopback", costs, 4)
    farm, sim = simulate(data["units"], 1, 1, 1, "loopback", costs, 4)
    print(f"split rig, {data['project']}: predicted local-only {local:.1f} s vs measured "
          f"{args.local:.1f} s ({(local - args.local) / args.local:+.1%}); predicted farm "
          f"{farm:.1f} s vs measured {args.farm:.1f} s ({(farm - args.farm) / args.farm:+.1%}); "
          f"ratio predicted {farm / local:.3f} vs measured {args.farm / args.local:.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("project")
    c.add_argument("--package")
    c.add_argument("--out", required=True)
    c.add_argument("--cpu", default="0", help="the CPU the build is pinned to")
    for name in ["predict", "validate"]:
        p = sub.add_parser(name)
        p.add_argument("units")
        p.add_argument("--client-cores", type=lambda v: [int(x) for x in v.split(",")],
                       default=[2, 8], help="comma-separated: the client's cores in each scenario")
        for k, v in DEFAULTS.items():
            p.add_argument(f"--{k.replace('_', '-')}", dest=k, type=type(v), default=v)
        if name == "validate":
            p.add_argument("--local", type=float, required=True)
            p.add_argument("--farm", type=float, required=True)
    args = ap.parse_args()
    {"collect": collect, "predict": predict, "validate": validate}[args.cmd](args)


if __name__ == "__main__":
    main()
