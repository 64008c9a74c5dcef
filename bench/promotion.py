"""Image promotion: bluegreen's copy against `skopeo copy --all`, same registries, same run.

A 2-platform index, 5 layers of LAYER_MIB MiB per platform, is seeded in the source account's
registry (preprod). Each round copies it to three regions of a target account (prod): bluegreen
in one process (`bluegreen/examples/bench.rs copy`, the promote's own copy with its parallelism),
skopeo as three processes at once (one per region, its best case). Each tool has its own target
account, so neither finds the other's blobs; skopeo's blob-info cache is removed before each of
its runs, so it cannot mount blobs it saw in an earlier round. Rounds alternate which tool goes
first. Then: the re-run where everything is present (bytes moved), and a single-layer image of
BIG_MIB MiB (peak memory).

    bash bench/promotion.sh      # ROUNDS=3 LAYER_MIB=40 BIG_MIB=1024
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import statistics
import sys

from standin import ROOT, Standin, finish, machine, say, timed

SOURCE = ("111111111111", "us-east-1")
BLUEGREEN_ACCOUNT = "222222222222"
SKOPEO_ACCOUNT = "333333333333"
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]
BENCH = os.path.join(ROOT, "target", "release", "examples", "bench")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
LAYER_MIB = int(os.environ.get("LAYER_MIB", "40"))
BIG_MIB = int(os.environ.get("BIG_MIB", "1024"))
OUT = os.path.join(ROOT, "bench", "results", "promotion.md")


def skopeo_cache_clear() -> None:
    for path in glob.glob("/var/lib/containers/cache/blob-info-cache*") + \
            glob.glob(os.path.expanduser("~/.local/share/containers/cache/blob-info-cache*")):
        os.unlink(path)


def skopeo_copy(aws: Standin, src: tuple[str, str], repo: str, tag: str,
                dst_repo: str, regions: list[str], clear_cache: bool = True) -> dict:
    """One skopeo process per region, all at once; wall time of the slowest, summed CPU."""
    if clear_cache:
        skopeo_cache_clear()
    procs = []
    for r in regions:
        host, creds = aws.registry(SKOPEO_ACCOUNT, r)
        procs.append(timed(["skopeo", "--insecure-policy", "copy", "--all", "--retry-times", "0",
                            "--src-tls-verify=false", "--dest-tls-verify=false",
                            "--src-creds", src[1], "--dest-creds", creds,
                            f"docker://{src[0]}/{repo}:{tag}", f"docker://{host}/{dst_repo}:{tag}"],
                           aws.env))
    stats = [finish(p) for p in procs]
    lines = [l for s in stats for l in (s["stdout"] + s["stderr"]).splitlines() if "Copying blob" in l]
    return {"sample": lines[0].strip() if lines else "",
            "wall_s": max(s["wall_s"] for s in stats),
            "rss_kib": max(s["rss_kib"] for s in stats),
            "rss_sum_kib": sum(s["rss_kib"] for s in stats),
            "cpu_s": sum(float(s["user_s"]) + float(s["sys_s"]) for s in stats)}


def bluegreen_copy(aws: Standin, repo: str, tag: str, account: str, dst_repo: str,
                   regions: list[str]) -> dict:
    s = finish(timed([BENCH, "copy", SOURCE[0], SOURCE[1], repo, tag, account, ",".join(regions),
                      dst_repo], aws.env))
    report = json.loads(s["stdout"].strip().splitlines()[-1])
    return {"wall_s": s["wall_s"], "rss_kib": s["rss_kib"],
            "cpu_s": float(s["user_s"]) + float(s["sys_s"]), "blob_bytes": report["blob_bytes"],
            "report": report}


def create_repos(aws: Standin, account: str, repo: str) -> None:
    for r in REGIONS:
        aws.client("ecr", account, r).create_repository(repositoryName=repo)


def mib_s(nbytes: int, seconds: float) -> float:
    return nbytes / 1048576 / seconds


def main() -> int:
    if not os.path.exists(BENCH):
        raise SystemExit(f"{BENCH} is missing: bench/promotion.sh builds it")
    aws = Standin()
    try:
        return run(aws)
    finally:
        aws.stop()


def run(aws: Standin) -> int:
    src_host, src_creds = aws.registry(*SOURCE)
    aws.client("ecr", SOURCE[0], SOURCE[1]).create_repository(repositoryName="hello")
    say(f"seeding hello:v1.2.0: 2 platforms x 5 layers x {LAYER_MIB} MiB")
    seeded = aws.control("seed", {"account": SOURCE[0], "region": SOURCE[1], "repository": "hello",
                                  "tag": "v1.2.0", "argv": ["true"], "layers": 5,
                                  "layer_size": LAYER_MIB * 1048576,
                                  "platforms": ["linux/amd64", "linux/arm64"]})
    image_bytes = seeded["blob_bytes"]
    moved = image_bytes * len(REGIONS)
    for account in (BLUEGREEN_ACCOUNT, SKOPEO_ACCOUNT):
        for r in REGIONS:  # start every target registry before timing anything
            aws.registry(account, r)

    rounds = []
    for i in range(1, ROUNDS + 1):
        repo = f"hello-r{i}"
        create_repos(aws, BLUEGREEN_ACCOUNT, repo)
        create_repos(aws, SKOPEO_ACCOUNT, repo)
        order = ["bluegreen", "skopeo"] if i % 2 else ["skopeo", "bluegreen"]
        row = {}
        for tool in order:
            say(f"round {i}: {tool}")
            if tool == "bluegreen":
                row[tool] = bluegreen_copy(aws, "hello", "v1.2.0", BLUEGREEN_ACCOUNT, repo, REGIONS)
                assert row[tool]["blob_bytes"] == moved, row[tool]
            else:
                row[tool] = skopeo_copy(aws, (src_host, src_creds), "hello", "v1.2.0", repo, REGIONS)
        rounds.append(row)

    say("re-run with everything present")
    again_bg = bluegreen_copy(aws, "hello", "v1.2.0", BLUEGREEN_ACCOUNT, "hello-r1", REGIONS)
    # skopeo keeps its blob-info cache here: its best case for a re-run.
    again_sk = skopeo_copy(aws, (src_host, src_creds), "hello", "v1.2.0", "hello-r1", REGIONS,
                           clear_cache=False)

    say(f"single {BIG_MIB} MiB layer")
    aws.control("seed", {"account": SOURCE[0], "region": SOURCE[1], "repository": "hello",
                         "tag": "big", "argv": ["true"], "layers": 1,
                         "layer_size": BIG_MIB * 1048576})
    create_repos(aws, BLUEGREEN_ACCOUNT, "big")
    create_repos(aws, SKOPEO_ACCOUNT, "big")
    big_bg = bluegreen_copy(aws, "hello", "big", BLUEGREEN_ACCOUNT, "big", ["eu-west-1"])
    big_sk = skopeo_copy(aws, (src_host, src_creds), "hello", "big", "big", ["eu-west-1"])

    write(rounds, again_bg, again_sk, big_bg, big_sk, image_bytes, moved)
    return 0


def write(rounds, again_bg, again_sk, big_bg, big_sk, image_bytes, moved) -> None:
    bg_t = [r["bluegreen"]["wall_s"] for r in rounds]
    sk_t = [r["skopeo"]["wall_s"] for r in rounds]
    bg_tp = statistics.median(mib_s(moved, t) for t in bg_t)
    sk_tp = statistics.median(mib_s(moved, t) for t in sk_t)
    lines = [
        "# Image promotion: bluegreen vs skopeo",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        "- command: `make bench` (or `bash bench/promotion.sh`), "
        f"ROUNDS={ROUNDS} LAYER_MIB={LAYER_MIB} BIG_MIB={BIG_MIB}",
        f"- image: OCI index, 2 platforms x 5 layers x {LAYER_MIB} MiB of random bytes, "
        f"{image_bytes / 1048576:.1f} MiB of blobs; copied from account 111111111111/us-east-1 to "
        f"3 regions of another account, {moved / 1048576:.1f} MiB moved per run",
        "- bluegreen: `target/release/examples/bench copy` (the promote's copy, one process, "
        "4 regions x 4 blobs in flight, every blob hashed on the way through)",
        f"- skopeo: {os.popen('skopeo --version').read().strip()} (Debian), "
        "`skopeo copy --all`, one process per region, all three at once; "
        "blob-info cache removed before each run",
        "- registries: Debian docker-registry (distribution 2.8) per account and region, "
        "on loopback, behind ECR tokens from the stand-in",
        "",
        "| round | bluegreen wall | bluegreen MiB/s | bluegreen peak RSS | bluegreen CPU | "
        "skopeo wall | skopeo MiB/s | skopeo peak RSS (max / sum of 3) | skopeo CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rounds, 1):
        b, s = r["bluegreen"], r["skopeo"]
        lines.append(
            f"| {i} | {b['wall_s']:.2f} s | {mib_s(moved, b['wall_s']):.0f} | "
            f"{b['rss_kib'] / 1024:.1f} MiB | {b['cpu_s']:.2f} s | {s['wall_s']:.2f} s | "
            f"{mib_s(moved, s['wall_s']):.0f} | {s['rss_kib'] / 1024:.1f} / "
            f"{s['rss_sum_kib'] / 1024:.1f} MiB | {s['cpu_s']:.2f} s |")
    lines += [
        "",
        f"**Throughput (median of {len(rounds)}): bluegreen {bg_tp:.0f} MiB/s, skopeo {sk_tp:.0f} MiB/s: "
        f"{bg_tp / sk_tp:.2f}x skopeo** (goal >= 1.0x).",
        "",
        "## Re-run, everything present",
        "",
        "| tool | wall | blob bytes moved |",
        "|---|---|---|",
        f"| bluegreen | {again_bg['wall_s']:.2f} s | {again_bg['blob_bytes']} "
        f"(tag already on the digest in all 3 regions: "
        f"{all(x['already_present'] for x in again_bg['report']['regions'])}) |",
        f"| skopeo (blob-info cache kept) | {again_sk['wall_s']:.2f} s | not in its log: without a "
        f"terminal skopeo prints one line per blob (`{again_sk['sample'][:30]}…`) whether it moves it or "
        f"not; {again_sk['wall_s']:.2f} s is too short for {moved / 1048576:.0f} MiB |",
        "",
        f"## One {BIG_MIB} MiB layer, one region",
        "",
        "| tool | wall | MiB/s | peak RSS |",
        "|---|---|---|---|",
        f"| bluegreen | {big_bg['wall_s']:.2f} s | {mib_s(big_bg['blob_bytes'], big_bg['wall_s']):.0f} | "
        f"{big_bg['rss_kib'] / 1024:.1f} MiB |",
        f"| skopeo | {big_sk['wall_s']:.2f} s | {mib_s(big_bg['blob_bytes'], big_sk['wall_s']):.0f} | "
        f"{big_sk['rss_kib'] / 1024:.1f} MiB |",
        "",
        f"Goal: peak RSS under 64 MiB for bluegreen: "
        f"{'met' if big_bg['rss_kib'] < 64 * 1024 else 'NOT met'} ({big_bg['rss_kib'] / 1024:.1f} MiB).",
        "",
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
