"""Rollout timings and API economy on the stand-in, for 1, 2, 4 and 8 regions in one wave.

Per region count, on a fresh stand-in (v1.1.0 live, 2 tasks per region, health checks every
0.2 s), with `bluegreen promote v1.2.0 --output json` baking at 50% in every region (poll 100 ms):

- API economy: AWS calls per region per gate poll over a 3 s window of the bake, from the
  stand-in's request log (extension 7). Goal <= 3.
- Rollback latency: one region's alarm is set to ALARM; from bluegreen's decision (the `failed`
  event's timestamp) to the answer of the last ModifyListener on a production listener, i.e.
  every production listener back at 100% on the previous colour. Against one ModifyListener
  round trip measured in the same run through bluegreen's own `set_weights` (`bench
  modify-listener`, median of 20).
  Goal <= 1.5x, flat in the region count. Then again with LATENCY_MS (50) of round trip added to
  every AWS call by the stand-in (extension 7's `delay_ms`).
- Detection latency (1 region, DETECT_RUNS times): one green task's process is SIGKILLed mid-bake;
  from the kill to the `failed` event. Goal <= one poll interval + the health-check interval.

    bash bench/rollout.sh      # COUNTS=1,2,4,8 DETECT_RUNS=5 ROLLBACK_RUNS=3 LATENCY_MS=50
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

from standin import ROOT, Standin, machine, say

SOURCE = "111111111111"
PROD = "222222222222"
ALL_REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2", "eu-central-1",
               "ap-northeast-1", "sa-east-1", "ca-central-1"]
COUNTS = [int(n) for n in os.environ.get("COUNTS", "1,2,4,8").split(",")]
DETECT_RUNS = int(os.environ.get("DETECT_RUNS", "5"))
ROLLBACK_RUNS = int(os.environ.get("ROLLBACK_RUNS", "3"))
LATENCY_MS = int(os.environ.get("LATENCY_MS", "50"))
POLL_MS = 100
HEALTH_INTERVAL_MS = 200
# PROFILE=debug runs the debug builds (`cargo build`), e.g. to try a driver without a release build.
PROFILE = os.environ.get("PROFILE", "release")
BLUEGREEN = os.path.join(ROOT, "target", PROFILE, "bluegreen")
BENCH = os.path.join(ROOT, "target", PROFILE, "examples", "bench")
SERVICE = os.path.join(ROOT, "target", PROFILE, "service")
OUT = os.path.join(ROOT, "bench", "results", "rollout.md")
ELB_ACTIONS = {"DescribeTargetHealth", "DescribeListeners", "DescribeLoadBalancers", "DescribeTargetGroups",
               "DescribeRules", "DescribeTags"}


def ts(rfc3339: str) -> float:
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


# The test route's secret in the bench's Parameter Store (Terraform generates one per environment).
TEST_SECRET = "benchTestSecret0123456789abcdef"


class Env:
    """A prod environment of `n` regions on a fresh stand-in."""

    # The traffic analysis is off here: these measure the gate's own calls and the rollback
    # (bench/analysis.py measures the analysis, with the stand-in's 1-second metric periods).
    STRATEGY = ('steps = [50, 100]\nbake = "60s"\nfinal_bake = "1s"\n'
                f'poll = "{POLL_MS}ms"\nready_timeout = "60s"\n\n[strategy.analysis]\nenabled = false\n')

    def __init__(self, n: int, strategy: str | None = None, standin_args: tuple[str, ...] = ()) -> None:
        self.regions = ALL_REGIONS[:n]
        self.aws = Standin(*standin_args)
        aws = self.aws
        aws.client("ecr", SOURCE, "us-east-1").create_repository(repositoryName="hello")
        seeded = {}
        for tag in ("v1.1.0", "v1.2.0"):
            seeded[tag] = aws.control("seed", {"account": SOURCE, "region": "us-east-1",
                                               "repository": "hello", "tag": tag,
                                               "argv": [SERVICE], "layers": 2, "layer_size": 4096})
        specs = [{"region": r, "cluster": f"hello-{r}", "service": "hello",
                  "load_balancer": f"hello-{r}", "listener_port": 18000, "test_listener_port": 18001,
                  "blue_target_group": f"hello-{r}-blue", "green_target_group": f"hello-{r}-green",
                  "alarms": [f"hello-{r}-5xx"], "desired_count": 2, "container_port": 8080}
                 for r in self.regions]
        out = aws.control("bootstrap", {"account": PROD, "image": seeded["v1.1.0"]["image"],
                                        "app_version": "v1.1.0", "repository": "hello",
                                        "lock_table": {"name": "bluegreen-prod", "region": "us-east-1"},
                                        "test_traffic": {"header": "X-Bluegreen-Test", "value": TEST_SECRET,
                                                         "parameter": "/bluegreen/hello-prod/test-header"},
                                        "regions": specs})
        self.dns = {r: out["regions"][r]["dns_name"] for r in self.regions}
        self.config_dir = tempfile.mkdtemp(prefix="bench-env-")
        os.makedirs(os.path.join(self.config_dir, "prod"))
        text = (f'account_id = "{PROD}"\nrole_arn = "arn:aws:iam::{PROD}:role/bluegreen-deploy-prod"\n'
                f'waves = [{json.dumps(self.regions)}]\n\n'
                f'[source]\naccount_id = "{SOURCE}"\nregion = "us-east-1"\nrepository = "hello"\n'
                f'role_arn = "arn:aws:iam::{SOURCE}:role/bluegreen-ecr-read-prod"\n\n'
                '[target]\nrepository = "hello"\n\n'
                '[test_traffic]\nheader = "X-Bluegreen-Test"\nparameter = "/bluegreen/hello-prod/test-header"\n\n')
        for r in self.regions:
            text += (f'[regions.{r}]\ncluster = "hello-{r}"\nservice = "hello"\nload_balancer = "hello-{r}"\n'
                     'listener_port = 18000\ntest_listener_port = 18001\n'
                     f'blue_target_group = "hello-{r}-blue"\ngreen_target_group = "hello-{r}-green"\n'
                     f'alarms = ["hello-{r}-5xx"]\n\n')
        text += (f'[strategy]\n{strategy or self.STRATEGY}\n'
                 '[lock]\ntable = "bluegreen-prod"\nregion = "us-east-1"\nlease = "10s"\n')
        with open(os.path.join(self.config_dir, "prod", "bluegreen.toml"), "w") as f:
            f.write(text)
        self.prod_listeners = set()
        for r in self.regions:
            elb = aws.client("elbv2", PROD, r)
            lb = elb.describe_load_balancers(Names=[f"hello-{r}"])["LoadBalancers"][0]["LoadBalancerArn"]
            for l in elb.describe_listeners(LoadBalancerArn=lb)["Listeners"]:
                if l["Port"] == 18000:
                    self.prod_listeners.add(l["ListenerArn"])
        self.settle("v1.1.0")

    def settle(self, version: str) -> None:
        """Every region's ALB answers only `version`, and every target is healthy."""
        deadline = time.monotonic() + 60
        for r in self.regions:
            while True:
                try:
                    with urllib.request.urlopen(f"http://{self.dns[r]}:18000/health", timeout=2) as res:
                        if json.load(res).get("version") == version and self.healthy(r):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{r} never settled on {version}")
                time.sleep(0.1)

    def healthy(self, r: str) -> bool:
        elb = self.aws.client("elbv2", PROD, r)
        for tg in elb.describe_target_groups()["TargetGroups"]:
            for d in elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])["TargetHealthDescriptions"]:
                if d["TargetHealth"]["State"] not in ("healthy",):
                    return False
        return True

    def alarm(self, firing: bool) -> None:
        """The last region's 5xx alarm to ALARM (`firing`) or OK, as CloudWatch would set it."""
        last = self.regions[-1]
        self.aws.client("cloudwatch", PROD, last).set_alarm_state(
            AlarmName=f"hello-{last}-5xx", StateValue="ALARM" if firing else "OK", StateReason="bench")

    def promote(self) -> "Run":
        return Run(self, [BLUEGREEN, "promote", "v1.2.0", "-e", "prod", "--config-dir", self.config_dir,
                          "--output", "json"])

    def stop(self) -> None:
        self.aws.stop()
        subprocess.run(["rm", "-rf", self.config_dir], check=False)


class Run:
    """A bluegreen process whose JSON events are collected as they come."""

    def __init__(self, env: Env, argv: list[str]) -> None:
        self.events: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(argv, env=dict(env.aws.env, BLUEGREEN_AWS_MAX_ATTEMPTS="1"),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.text: list[str] = []
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self.cond:
                self.text.append(line)
                try:
                    ev = json.loads(line)
                    if isinstance(ev, dict):
                        self.events.append(ev)
                except ValueError:
                    pass
                self.cond.notify_all()

    def wait_for(self, pred, what: str, timeout: float = 90) -> list[dict[str, Any]]:
        with self.cond:
            ok = self.cond.wait_for(lambda: pred(self.events) or self.proc.poll() is not None, timeout)
            if not ok or not pred(self.events):
                raise SystemExit(f"bluegreen never reached {what}:\n{''.join(self.text)[-4000:]}")
            return list(self.events)

    def finish(self) -> int:
        code = self.proc.wait(120)
        time.sleep(0.2)
        return code


def baking_everywhere(regions: list[str]):
    def pred(events: list[dict[str, Any]]) -> bool:
        return {e.get("region") for e in events if e.get("phase") == "bake"} >= set(regions)
    return pred


def failed(events: list[dict[str, Any]]) -> bool:
    return any(e.get("phase") == "failed" for e in events)


def measure(n: int) -> dict[str, Any]:
    say(f"{n} region(s): starting the stand-in and the environment")
    env = Env(n)
    aws = env.aws
    try:
        def flips(regions: list[str]) -> dict[str, Any]:
            return json.loads(subprocess.run(
                [BENCH, "modify-listener", PROD, ",".join(regions), "hello-", "18000", "18001", "20"],
                env=aws.env, check=True, capture_output=True, text=True).stdout)

        rtt = flips(env.regions[:1])
        rtt_all = flips(env.regions)
        run = env.promote()
        run.wait_for(baking_everywhere(env.regions), "the 50% bake in every region")
        time.sleep(0.5)  # past the first poll
        start = aws.control("requests?since=0")["next"]
        time.sleep(3.0)
        window = aws.control(f"requests?since={start}")["requests"]
        per_region: dict[str, dict[str, int]] = {}
        # The gate's calls; the lock's heartbeat (DynamoDB, once per deployment every third of
        # the lease) and credential refreshes (STS) are not per region and are counted apart.
        other = sum(1 for e in window if e["service"] in ("dynamodb", "sts"))
        # Whole polls only: a poll's calls go out together (within milliseconds) and polls are
        # POLL_MS apart, so each region's count runs from half an interval before its first
        # DescribeTargetHealth to half an interval before its last, over the polls in between.
        polls: dict[str, int] = {}
        for r in env.regions:
            beats = [e["t"] for e in window if e["region"] == r and e["action"] == "DescribeTargetHealth"]
            if len(beats) < 2:
                raise SystemExit(f"{r}: fewer than 2 gate polls in the 3 s window: {beats}")
            polls[r] = len(beats) - 1
            lo, hi = beats[0] - POLL_MS / 2000, beats[-1] - POLL_MS / 2000
            for e in window:
                if e["region"] == r and e["service"] not in ("dynamodb", "sts") and lo <= e["t"] < hi:
                    per_region.setdefault(r, {}).setdefault(e["action"], 0)
                    per_region[r][e["action"]] += 1
        calls = {r: sum(per_region.get(r, {}).values()) for r in env.regions}
        per_poll = max(calls[r] / max(polls[r], 1) for r in env.regions)
        elb_per_poll = max(sum(c for a, c in per_region.get(r, {}).items() if a in ELB_ACTIONS)
                           / max(polls[r], 1) for r in env.regions)
        economy_actions = per_region.get(env.regions[-1], {})

        samples = rollback_samples(env, run)
        mid = samples[len(samples) // 2]

        # The same with a network round trip on every AWS call, as from a runner to distant
        # regions: held calls overlap in the stand-in the way calls to separate regions do.
        aws.control("faults", {"action": "*", "delay_ms": LATENCY_MS, "times": -1})
        lat_rtt = flips(env.regions[:1])
        lat_samples = rollback_samples(env, None)
        lat_mid = lat_samples[len(lat_samples) // 2]
        return {"n": n, "rtt_ms": rtt["median_ms"], "rtt_all_ms": rtt_all["median_ms"],
                "rollback_ms": mid["latency_ms"], "rollback_all_ms": [x["latency_ms"] for x in samples],
                "ratio": mid["latency_ms"] / rtt["median_ms"], "alarm_to_decision_ms": mid["alarm_ms"],
                "lat_rtt_ms": lat_rtt["median_ms"], "lat_rollback_ms": lat_mid["latency_ms"],
                "lat_rollback_all_ms": [x["latency_ms"] for x in lat_samples],
                "lat_alarm_to_decision_ms": lat_mid["alarm_ms"], "lat_exit": lat_mid["exit"],
                "calls_per_poll": per_poll, "elb_per_poll": elb_per_poll, "other_calls": other,
                "polls": polls, "calls": calls,
                "actions": economy_actions, "exit": mid["exit"], "between": mid["between"]}
    finally:
        env.stop()


def rollback_samples(env: Env, run: "Run | None") -> list[dict[str, Any]]:
    """Rollback latency ROLLBACK_RUNS times, sorted: the last region's alarm fires during a bake
    in every region (`run`'s, if it is already baking, then fresh promotes)."""
    samples = []
    for _ in range(ROLLBACK_RUNS):
        if run is None:
            run = env.promote()
            run.wait_for(baking_everywhere(env.regions), "the 50% bake in every region")
            time.sleep(0.3)
        samples.append(rollback_once(env, run))
        run = None
        env.alarm(False)
        env.settle("v1.1.0")
    return sorted(samples, key=lambda x: x["latency_ms"])


def rollback_once(env: Env, run: Run) -> dict[str, Any]:
    """Fires the last region's alarm while `run` bakes everywhere; times decision to last flip."""
    aws, n = env.aws, len(env.regions)
    since = aws.control("requests?since=0")["next"]
    env.aws.client("cloudwatch", PROD, env.regions[-1])  # made before the clock starts
    fired = time.time()  # the gate cannot see the alarm before this call starts
    env.alarm(True)
    events = run.wait_for(failed, "the failed event")
    code = run.finish()
    decided = ts(next(e for e in events if e.get("phase") == "failed")["ts"])
    log = aws.control(f"requests?since={since}")["requests"]
    flips = [e for e in log if e["action"] == "ModifyListener" and e.get("listener") in env.prod_listeners
             and e["t"] >= decided - 0.005]
    if len({e["listener"] for e in flips}) != n:
        raise SystemExit(f"expected a rollback ModifyListener on each of {n} production listeners: {flips}")
    back = max(e["done"] for e in flips)
    between = [f"+{(e['t'] - decided) * 1000:.1f} ms {e['action']} {e['region']}"
               for e in log if decided - 0.05 <= e["t"] <= back]
    return {"latency_ms": (back - decided) * 1000, "alarm_ms": (decided - fired) * 1000, "exit": code,
            "between": between}


def detection() -> list[dict[str, float]]:
    say(f"detection: 1 region, {DETECT_RUNS} runs")
    env = Env(1)
    r = env.regions[0]
    out = []
    try:
        for _ in range(DETECT_RUNS):
            run = env.promote()
            run.wait_for(baking_everywhere(env.regions), "the 50% bake")
            time.sleep(0.3)
            live = [t for t in env.aws.control("status")["tasks"]
                    if t["alive"] and t["version"] == "v1.2.0" and t["region"] == r]
            if not live:
                raise SystemExit("no green task to kill")
            os.kill(live[0]["pid"], signal.SIGKILL)
            killed = time.time()
            events = run.wait_for(failed, "the failed event")
            run.finish()
            decided = ts(next(e for e in events if e.get("phase") == "failed")["ts"])
            reason = next(e for e in events if e.get("phase") == "failed")["message"]
            out.append({"ms": (decided - killed) * 1000, "reason": reason})
            env.settle("v1.1.0")
    finally:
        env.stop()
    return out


def main() -> int:
    for path in (BLUEGREEN, BENCH, SERVICE):
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: bench/rollout.sh builds it")
    rows = [measure(n) for n in COUNTS]
    det = detection()
    write(rows, det)
    return 0


def write(rows: list[dict[str, Any]], det: list[dict[str, Any]]) -> None:
    goal_det = POLL_MS + HEALTH_INTERVAL_MS
    lines = [
        "# Rollout: rollback latency, detection latency, API economy",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- command: `make bench` (or `bash bench/rollout.sh`), COUNTS={','.join(map(str, COUNTS))} "
        f"DETECT_RUNS={DETECT_RUNS} ROLLBACK_RUNS={ROLLBACK_RUNS} LATENCY_MS={LATENCY_MS}",
        f"- setup: a fresh stand-in per row; every region in one wave; 2 tasks per region; gate poll "
        f"{POLL_MS} ms; stand-in health checks every {HEALTH_INTERVAL_MS} ms (healthy/unhealthy "
        "threshold 2); release builds of bluegreen and the service",
        "",
        "## Rollback latency and API economy",
        "",
        f"Rollback latency (median of {ROLLBACK_RUNS} runs per row): from bluegreen's decision (the `failed` event, after one region's alarm "
        "went to ALARM) to the answer of the last ModifyListener on a production listener. "
        "ModifyListener: one round trip through the SDK to the same stand-in, median of 20, same run; "
        "and one per region at once (what a rollback sends), median of 20. The stand-in is one Python "
        "process: it answers concurrent calls one after another (~2 ms each), where AWS's regions are "
        "independent endpoints, so the second figure is the floor here for N regions.",
        "",
        "| regions | rollback latency, median (all runs) | one ModifyListener | ratio | one ModifyListener per region at once | ratio to that | alarm to decision | AWS calls per region per poll (ELBv2 of them) | lock heartbeats in 3 s | exit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['n']} | {r['rollback_ms']:.1f} ms ({', '.join(f'{x:.1f}' for x in r['rollback_all_ms'])}) | "
                     f"{r['rtt_ms']:.1f} ms | {r['ratio']:.2f}x | "
                     f"{r['rtt_all_ms']:.1f} ms | {r['rollback_ms'] / r['rtt_all_ms']:.2f}x | "
                     f"{r['alarm_to_decision_ms']:.0f} ms | {r['calls_per_poll']:.2f} ({r['elb_per_poll']:.2f}) | "
                     f"{r['other_calls']} | {r['exit']} |")
    lines += [
        "",
        f"With a {LATENCY_MS} ms round trip on every AWS call (stand-in extension 7, `delay_ms`), as from a "
        "runner to distant regions; the stand-in holds calls in parallel, as separate regions would, and "
        f"still does their work one after another. On the same stand-in as the row above, after it, median of {ROLLBACK_RUNS}:",
        "",
        "| regions | rollback latency, median (all runs) | one ModifyListener | ratio | alarm to decision | exit |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['n']} | {r['lat_rollback_ms']:.1f} ms "
                     f"({', '.join(f'{x:.1f}' for x in r['lat_rollback_all_ms'])}) | {r['lat_rtt_ms']:.1f} ms | "
                     f"{r['lat_rollback_ms'] / r['lat_rtt_ms']:.2f}x | {r['lat_alarm_to_decision_ms']:.0f} ms | "
                     f"{r['lat_exit']} |")
    lines += [
        "",
        "Goals: ratio <= 1.5x and flat in the region count; <= 3 calls per region per poll "
        "(so 16 regions stay under ELBv2's 10 Describe calls per second per account and region).",
        "",
        "Calls in one region over the whole polls of the 3 s window (the last region of the largest row): "
        + ", ".join(f"{a} {c}" for a, c in sorted(rows[-1]["actions"].items())) + ".",
        "",
        "AWS calls from 50 ms before the decision to the last production listener flip (largest row): "
        + "; ".join(rows[-1]["between"]) + ".",
        "",
        "## Detection latency",
        "",
        f"One green task SIGKILLed mid-bake; from the kill to the `failed` event. Goal <= "
        f"{goal_det} ms (one poll + one health-check interval).",
        "",
        "| run | detection | what the gate saw |",
        "|---|---|---|",
    ]
    for i, d in enumerate(det, 1):
        lines.append(f"| {i} | {d['ms']:.0f} ms | {d['reason'][:160]} |")
    ms = [d["ms"] for d in det]
    lines += ["", f"Median {statistics.median(ms):.0f} ms, max {max(ms):.0f} ms.", ""]
    with open(OUT, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
