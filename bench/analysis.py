"""The traffic analysis on the stand-in: how fast it catches releases that only real traffic shows,
against an alarm on the target group's 5xx count, and how often it fails a good release.

One region, v1.1.0 live (the hello service), the stand-in's ALB metrics in 1-second periods
published 1 s after they end (`--metric-period 1 --metric-delay 1`; AWS: 60-second periods, a minute
or two late), and users: THREADS clients sending GET / to production at RATE requests per second
in all, for the whole run.

- Detection, per fault (badapp.py: 1%, 5% and 20% of answers 500 with /health fine; +100 ms and
  +300 ms on every answer), two promotes in the same run:
  * the analysis (defaults but for the 1-second period and settle): from the first exposure (the
    10% step's `bake` event) to bluegreen's `failed` event;
  * the CodeDeploy/ECS way, `--analysis off` with an alarm instead: a watcher evaluates, as
    CloudWatch would, Terraform's alarm (`HTTPCode_Target_5XX_Count` Sum >= 5 in one period) and a
    latency alarm one would set by hand (`TargetResponseTime` p99 >= 250 ms in one period) on the
    new colour, from the same GetMetricData the analysis reads, and sets the region's alarm to
    ALARM when one breaches; bluegreen's gate reads it.
  Steps [10, 100], each baking BAKE s: a fault not caught at 10% meets 100%.
- False rollbacks: GOOD_RUNS promotes of good releases (alternately v1.2.0 and v1.1.0, the same
  service), steps [10, 50, 100], the analysis on.

Times are stand-in seconds with 1-second periods: on AWS each period is 60 s and the newest
minute or two are not read, so multiply the periods, not the seconds.

    bash bench/analysis.sh    # RATE=150 THREADS=6 BAKE=30 GOOD_RUNS=20
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from rollout import BLUEGREEN, PROD, PROFILE, SOURCE, Env, Run, ts
from standin import ROOT, machine, say

RATE = float(os.environ.get("RATE", "150"))
THREADS = int(os.environ.get("THREADS", "6"))
BAKE = int(os.environ.get("BAKE", "30"))
GOOD_RUNS = int(os.environ.get("GOOD_RUNS", "20"))
OUT = os.path.join(ROOT, "bench", "results", "analysis.md")
BADAPP = [os.path.join(ROOT, ".venv", "bin", "python"), os.path.join(ROOT, "tools", "localaws", "badapp.py")]
FAULTS = [
    ("1% errors", "v2.0.1", {"BAD_MODE": "errors", "ERROR_RATE": "0.01"}),
    ("5% errors", "v2.0.5", {"BAD_MODE": "errors", "ERROR_RATE": "0.05"}),
    ("20% errors", "v2.0.20", {"BAD_MODE": "errors", "ERROR_RATE": "0.20"}),
    ("+100 ms", "v2.1.100", {"BAD_MODE": "slow", "DELAY_MS": "100"}),
    ("+300 ms", "v2.1.300", {"BAD_MODE": "slow", "DELAY_MS": "300"}),
]
ALARM_5XX = 5
ALARM_P99 = 0.250
ANALYSIS = '\n[strategy.analysis]\nperiod = "1s"\nsettle = "1s"\n'


def strategy(steps: str, bake: int, final: int) -> str:
    return (f'steps = {steps}\nbake = "{bake}s"\nfinal_bake = "{final}s"\npoll = "250ms"\n'
            f'ready_timeout = "60s"\n{ANALYSIS}')


class Users:
    """THREADS clients at RATE requests per second in all, to one production address."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop_event = threading.Event()
        self.sent = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(THREADS)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        gap = THREADS / RATE
        due = time.monotonic()
        while not self.stop_event.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=5) as res:
                    res.read()
            except (urllib.error.URLError, OSError):
                pass
            with self.lock:
                self.sent += 1
            due += gap
            time.sleep(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=10)


class AlarmWatcher:
    """CloudWatch's evaluation of the two alarms on the new colour, one period at a time, from
    GetMetricData; sets the region's gate alarm to ALARM at the first breaching period."""

    def __init__(self, env: Env, region: str) -> None:
        self.env, self.region = env, region
        self.cw = env.aws.client("cloudwatch", PROD, region)
        elb = env.aws.client("elbv2", PROD, region)
        lb = elb.describe_load_balancers(Names=[f"hello-{region}"])["LoadBalancers"][0]["LoadBalancerArn"]
        self.lb = lb.split(":loadbalancer/", 1)[1]
        self.groups = {g["TargetGroupName"].rsplit("-", 1)[1]: g["TargetGroupArn"].rsplit(":", 1)[1]
                       for g in elb.describe_target_groups()["TargetGroups"]}
        self.stop_event = threading.Event()
        self.fired: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self, colour: str) -> None:
        self.colour, self.since = colour, int(time.time()) + 1
        self.thread.start()

    def _query(self, qid: str, metric: str, stat: str) -> dict[str, Any]:
        return {"Id": qid, "MetricStat": {"Metric": {
            "Namespace": "AWS/ApplicationELB", "MetricName": metric,
            "Dimensions": [{"Name": "LoadBalancer", "Value": self.lb},
                           {"Name": "TargetGroup", "Value": self.groups[self.colour]}]},
            "Period": 1, "Stat": stat}}

    def _run(self) -> None:
        while not self.stop_event.is_set() and self.fired is None:
            out = self.cw.get_metric_data(
                MetricDataQueries=[self._query("e5", "HTTPCode_Target_5XX_Count", "Sum"),
                                   self._query("p99", "TargetResponseTime", "p99")],
                StartTime=datetime.datetime.fromtimestamp(self.since, datetime.timezone.utc),
                EndTime=datetime.datetime.fromtimestamp(time.time() + 1, datetime.timezone.utc))
            values = {r["Id"]: r["Values"] for r in out["MetricDataResults"]}
            if any(v >= ALARM_5XX for v in values.get("e5", [])):
                self.fired = f"HTTPCode_Target_5XX_Count >= {ALARM_5XX} in one period"
            elif any(v >= ALARM_P99 for v in values.get("p99", [])):
                self.fired = f"TargetResponseTime p99 >= {ALARM_P99 * 1000:.0f} ms in one period"
            if self.fired:
                self.cw.set_alarm_state(AlarmName=f"hello-{self.region}-5xx", StateValue="ALARM",
                                        StateReason=self.fired)
                return
            time.sleep(0.25)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)
        self.cw.set_alarm_state(AlarmName=f"hello-{self.region}-5xx", StateValue="OK", StateReason="bench")


def promote(env: Env, version: str, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    run = Run(env, [BLUEGREEN, "promote", version, "-e", "prod", "--config-dir", env.config_dir,
                    "--output", "json", *extra])
    code = run.finish()
    return code, run.events, "".join(run.text)


def exposure_to_failure(events: list[dict[str, Any]]) -> tuple[float | None, str, str]:
    """(seconds from the first production step to the `failed` event, the step, the reason)."""
    first = next((e for e in events if e.get("phase") in ("bake", "final-bake")), None)
    failed = next((e for e in events if e.get("phase") == "failed"), None)
    if not first or not failed:
        return None, "", ""
    step = failed["message"].split(" at ", 1)[1].split("%", 1)[0] + "%" if " at " in failed["message"] else "?"
    return ts(failed["ts"]) - ts(first["ts"]), step, failed["message"]


def set_strategy(env: Env, text: str) -> None:
    path = os.path.join(env.config_dir, "prod", "bluegreen.toml")
    with open(path) as f:
        body = f.read()
    head, _, tail = body.partition("[strategy]\n")
    _, _, lock = tail.partition("[lock]\n")
    with open(path, "w") as f:
        f.write(f"{head}[strategy]\n{text}\n[lock]\n{lock}")


def live(env: Env, region: str) -> str:
    with urllib.request.urlopen(f"http://{env.dns[region]}:18000/health", timeout=5) as res:
        return json.load(res)["version"]


def main() -> int:
    say("starting the stand-in (1-second ALB metric periods) and one region")
    env = Env(1, strategy=strategy("[10, 100]", BAKE, BAKE),
              standin_args=("--metric-period", "1", "--metric-delay", "1"))
    region = env.regions[0]
    aws = env.aws
    for _name, tag, bad_env in FAULTS:
        aws.control("seed", {"account": SOURCE, "region": "us-east-1", "repository": "hello", "tag": tag,
                             "argv": BADAPP, "env": bad_env, "layers": 2, "layer_size": 4096})
    users = Users(f"http://{env.dns[region]}:18000/")
    started, sent0 = time.monotonic(), users.sent
    rows = []
    try:
        for name, tag, _ in FAULTS:
            row: dict[str, Any] = {"fault": name}
            say(f"{name}: the analysis")
            code, events, text = promote(env, tag)
            row["analysis"] = (code, *exposure_to_failure(events))
            if code != 3:
                say(f"  not caught (exit {code}); rolling back")
                env_rollback(env)
            say(f"{name}: --analysis off, the alarm")
            # Requests still in flight when the previous run rolled back finish, and are counted,
            # after it: the alarm starts from a clean period.
            time.sleep(3)
            watcher = AlarmWatcher(env, region)
            watcher.start("green" if live_colour(env, region) == "blue" else "blue")
            code, events, text = promote(env, tag, "--analysis", "off")
            watcher.stop()
            row["alarm"] = (code, *exposure_to_failure(events))
            if code != 3:
                env_rollback(env)
            rows.append(row)
            say(f"  {row}")
        rate = (users.sent - sent0) / (time.monotonic() - started)
        say(f"good releases: {GOOD_RUNS} promotes with the analysis on")
        set_strategy(env, strategy("[10, 50, 100]", 8, 4))
        good = []
        for i in range(GOOD_RUNS):
            version = "v1.2.0" if live(env, region) == "v1.1.0" else "v1.1.0"
            code, events, text = promote(env, version)
            looks = [e["analysis"] for e in events if e.get("phase") == "analysis" and "analysis" in e]
            verdicts = [a["verdict"] for a in looks]
            good.append({"exit": code, "version": version, "looks": len(looks),
                         "pass": verdicts.count("pass"), "fail": verdicts.count("fail"),
                         "not_enough": verdicts.count("not-enough"),
                         "failed": next((e["message"] for e in events if e.get("phase") == "failed"), None)})
            say(f"  run {i + 1}: {good[-1]}")
    finally:
        users.stop()
        env.stop()
    write(rows, good, rate)
    return 0


def env_rollback(env: Env) -> None:
    Run(env, [BLUEGREEN, "rollback", "-e", "prod", "--config-dir", env.config_dir, "--yes"]).finish()


def live_colour(env: Env, region: str) -> str:
    elb = env.aws.client("elbv2", PROD, region)
    lb = elb.describe_load_balancers(Names=[f"hello-{region}"])["LoadBalancers"][0]["LoadBalancerArn"]
    for listener in elb.describe_listeners(LoadBalancerArn=lb)["Listeners"]:
        if listener["Port"] == 18000:
            for g in listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]:
                if g.get("Weight", 0) == 100:
                    return g["TargetGroupArn"].split("targetgroup/", 1)[1].split("/", 1)[0].rsplit("-", 1)[1]
    raise SystemExit("no colour carries production")


def cell(result: tuple[Any, ...]) -> str:
    code, seconds, step, _ = result
    if code != 3 or seconds is None:
        return f"not caught (exit {code})"
    return f"{seconds:.1f} s at {step}"


def write(rows: list[dict[str, Any]], good: list[dict[str, Any]], rate: float) -> None:
    false = [g for g in good if g["exit"] != 0]
    lines = [
        "# Traffic analysis: detection and false rollbacks",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}Z",
        f"- Machine: {machine()}",
        f"- Command: `bash bench/analysis.sh` (bench/analysis.py), {PROFILE} builds",
        f"- One region, 2 tasks a colour; users: {THREADS} clients, {rate:.0f} requests/s to production in all "
        f"(about {rate * 0.1:.0f}/s on the new colour at the 10% step); ALB metrics in 1-second periods published "
        "1 s after they end (AWS: 60 s, one to three minutes late).",
        f"- Steps [10, 100], each baking {BAKE} s; the analysis with its defaults but `period = \"1s\"`, "
        "`settle = \"1s\"` (min_requests 100, confidence 0.99, error_increase_pct 0.5, latency 1.5× and +50 ms).",
        f"- The alarm: `--analysis off`, with Terraform's 5xx alarm (`HTTPCode_Target_5XX_Count` Sum >= {ALARM_5XX} in "
        f"one period) and a hand-set latency alarm (`TargetResponseTime` p99 >= {ALARM_P99 * 1000:.0f} ms in one "
        "period) on the new colour, evaluated from the same metrics as CloudWatch would.",
        "",
        "Time from the first exposure (the 10% step) to the rollback decision:",
        "",
        "| fault | the analysis | the alarm |",
        "|---|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['fault']} | {cell(r['analysis'])} | {cell(r['alarm'])} |")
    lines += ["", "Reasons given:", ""]
    for r in rows:
        for how in ("analysis", "alarm"):
            reason = r[how][3]
            if reason:
                lines.append(f"- {r['fault']}, {how}: `{reason[:400]}`")
    judged = [g["pass"] + g["fail"] for g in good]
    lines += [
        "",
        f"Good releases: {len(good) - len(false)} of {len(good)} promotes passed (false rollbacks: {len(false)}); "
        f"{sum(g['pass'] for g in good)} passing looks in all, {sum(g['fail'] for g in good)} failing, "
        f"{sum(g['not_enough'] for g in good)} with not enough data yet; judged looks per run "
        f"{min(judged, default=0)}–{max(judged, default=0)} (median {statistics.median(judged) if judged else 0}).",
    ]
    for g in false:
        lines.append(f"- false rollback: {g['version']}: {g['failed']}")
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
