"""Extension 15: the ALB's per-target-group CloudWatch metrics, counted from the data plane.

An ALB publishes, per target group and load balancer (dimensions `LoadBalancer` = `app/<name>/<id>`,
`TargetGroup` = `targetgroup/<name>/<id>`), `RequestCount`, `HTTPCode_Target_2XX..5XX_Count`,
`TargetConnectionErrorCount` and `TargetResponseTime` (seconds, percentiles allowed) in 60-second
periods, and only for periods that had requests. moto's CloudWatch stores only what PutMetricData
sent and has no percentiles, so `GetMetricData` queries in the `AWS/ApplicationELB` namespace are
answered here from what the data plane (dataplane.py) counted; every other query goes to moto.

Semantics kept from AWS: `Period` must be a multiple of the metric resolution (60 s on AWS; the
stand-in's `metric_period` setting shortens it for tests); StartTime and EndTime are rounded down
to the resolution; a datapoint covers [t, t + Period) from the rounded StartTime; a period of the
resolution is published `metric_delay` after it ended (AWS's newest minute is missing or still
growing for one to three minutes), never partly; a statistic with no samples in a period gives no
datapoint; percentiles are taken over every sample of the period.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any

from .world import Settings

NAMESPACE = "AWS/ApplicationELB"
COUNTS = {"RequestCount", "HTTPCode_Target_2XX_Count", "HTTPCode_Target_3XX_Count",
          "HTTPCode_Target_4XX_Count", "HTTPCode_Target_5XX_Count", "TargetConnectionErrorCount"}
TIMES = {"TargetResponseTime"}
PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{1,10})?|100)$")


class MetricError(ValueError):
    """A query AWS would refuse: answered as CloudWatch's ValidationError / InvalidParameterValue."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass
class Second:
    """What one target group of one load balancer served in one wall-clock second."""

    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    times: list[float] = dataclasses.field(default_factory=list)


def lb_dimension(lb_arn: str) -> str:
    return lb_arn.split(":loadbalancer/", 1)[-1]


def tg_dimension(tg_arn: str) -> str:
    return tg_arn.rsplit(":", 1)[-1]


class AlbMetrics:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        # (account, region, LoadBalancer, TargetGroup) → epoch second → Second
        self._series: dict[tuple[str, str, str, str], dict[int, Second]] = {}

    def record(self, account: str, region: str, lb_arn: str, tg_arn: str, *, status: int | None,
               seconds: float | None, connection_error: bool, now: float | None = None) -> None:
        """One request the listener routed to a target of `tg_arn`: the target's status (None when
        it never answered), the time from sending it to the target to its response headers."""
        sec = int(now if now is not None else time.time())
        key = (account, region, lb_dimension(lb_arn), tg_dimension(tg_arn))
        with self._lock:
            s = self._series.setdefault(key, {}).setdefault(sec, Second())
            _add(s.counts, "RequestCount")
            if connection_error:
                _add(s.counts, "TargetConnectionErrorCount")
            if status is not None and 200 <= status < 600:
                _add(s.counts, f"HTTPCode_Target_{status // 100}XX_Count")
            if seconds is not None:
                s.times.append(seconds)

    def answer(self, account: str, region: str, query: dict[str, Any], number: int,
               start: datetime, end: datetime, scan_by: str, now: float | None = None) -> dict[str, Any]:
        """One MetricStat query of GetMetricData, in moto's result shape."""
        stat = query["MetricStat"]
        metric = stat["Metric"]
        name = metric["MetricName"]
        resolution = max(1, int(self.settings.metric_period))
        period = int(stat["Period"])
        where = f"MetricDataQueries.member.{number}.MetricStat"
        if period <= 0 or period % resolution:
            raise MetricError("ValidationError",
                              f"The parameter {where}.Period must be a multiple of {resolution}.")
        statistic = stat["Stat"]
        if statistic not in {"Sum", "SampleCount", "Average", "Minimum", "Maximum"} \
                and not PERCENTILE.match(statistic):
            raise MetricError("InvalidParameterValue",
                              f"The value {statistic} for parameter {where}.Stat is not supported.")
        dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions") or []}
        first = _floor(start.timestamp(), resolution)
        last = _floor(end.timestamp(), resolution)
        # Only whole resolution periods that ended `metric_delay` ago are published.
        now = now if now is not None else time.time()
        published = _floor(now - self.settings.metric_delay, resolution)
        values, stamps = [], []
        t = first
        while t < last:
            upto = min(t + period, last, published)
            value = self._statistic(account, region, name, dims, statistic, t, upto)
            if value is not None:
                values.append(value)
                stamps.append(datetime.fromtimestamp(t, tz=timezone.utc))
            t += period
        if scan_by == "TimestampDescending":
            values.reverse()
            stamps.reverse()
        return {"id": query["Id"], "label": query.get("Label") or f"{name} {statistic}",
                "values": values, "timestamps": stamps, "status_code": "Complete"}

    def _statistic(self, account: str, region: str, name: str, dims: dict[str, str], statistic: str,
                   frm: int, upto: int) -> float | None:
        if upto <= frm or (name not in COUNTS and name not in TIMES):
            return None
        seconds = self._seconds(account, region, dims, frm, upto)
        if name in COUNTS:
            # A count metric is one sample per request that counted; a period with none has none.
            total = sum(s.counts.get(name, 0) for s in seconds)
            if total == 0:
                return None
            return {"Sum": float(total), "SampleCount": float(total)}.get(statistic, 1.0)
        samples = sorted(x for s in seconds for x in s.times)
        if not samples:
            return None
        if statistic == "Sum":
            return sum(samples)
        if statistic == "SampleCount":
            return float(len(samples))
        if statistic == "Average":
            return sum(samples) / len(samples)
        if statistic == "Minimum":
            return samples[0]
        if statistic == "Maximum":
            return samples[-1]
        return _percentile(samples, float(statistic[1:]))

    def _seconds(self, account: str, region: str, dims: dict[str, str], frm: int, upto: int) -> list[Second]:
        """The seconds the dimensions select: LoadBalancer + TargetGroup is one target group of
        one load balancer; LoadBalancer alone is all of that load balancer's target groups. Any
        other combination is one the ALB does not publish: no data, as on AWS."""
        keys = set(dims)
        with self._lock:
            if keys == {"LoadBalancer", "TargetGroup"}:
                series = [self._series.get((account, region, dims["LoadBalancer"], dims["TargetGroup"]), {})]
            elif keys == {"LoadBalancer"}:
                series = [v for (a, r, lb, _tg), v in self._series.items()
                          if (a, r, lb) == (account, region, dims["LoadBalancer"])]
            else:
                return []
            return [dataclasses.replace(s, counts=dict(s.counts), times=list(s.times))
                    for one in series for sec, s in one.items() if frm <= sec < upto]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {}
            for (account, region, lb, tg), seconds in self._series.items():
                totals: dict[str, int] = {}
                for s in seconds.values():
                    for k, v in s.counts.items():
                        totals[k] = totals.get(k, 0) + v
                out[f"{account}/{region}/{lb}/{tg}"] = totals
            return {"metric_period": self.settings.metric_period, "metric_delay": self.settings.metric_delay,
                    "target_groups": out}


def _add(counts: dict[str, int], name: str) -> None:
    counts[name] = counts.get(name, 0) + 1


def _floor(t: float, resolution: int) -> int:
    return int(t // resolution) * resolution


def _percentile(ordered: list[float], p: float) -> float:
    """The nearest-rank percentile: the smallest sample with at least p% of samples at or below it."""
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
