"""Checks of terraform/ and environments/ that need no Terraform binary (CI on GitHub also runs
`terraform fmt -check` and `validate`): every .tf parses, the invariants bluegreen depends on
hold, and every name in each environment's bluegreen.toml is one Terraform creates.

    python tools/checks/terraform_check.py      → one line per check, then "N passed, N failed"
"""

from __future__ import annotations

import pathlib
import re
import sys
import tomllib
from typing import Any, Callable

import hcl2

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODULES = ROOT / "terraform" / "modules"
ENVS = ROOT / "environments"

results: list[tuple[bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    results.append((ok, name))
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + detail}")


def normalize(v: Any) -> Any:
    """python-hcl2 8 quotes block labels; unquote every key, drop its bookkeeping keys."""
    if isinstance(v, dict):
        return {unquote(k): normalize(x) for k, x in v.items() if not k.startswith("__")}
    if isinstance(v, list):
        return [normalize(x) for x in v]
    return v


def parse_dir(d: pathlib.Path) -> dict[str, list[Any]]:
    merged: dict[str, list[Any]] = {}
    for f in sorted(d.glob("*.tf")):
        with open(f) as fh:
            doc = normalize(hcl2.load(fh))
        for k, v in doc.items():
            merged.setdefault(k, []).extend(v)
    return merged


def resources(doc: dict[str, list[Any]], rtype: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for block in doc.get("resource", []):
        for t, named in block.items():
            if t == rtype:
                out.update(named)
    return out


def unquote(v: Any) -> Any:
    if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1]
    return v


def first(v: Any) -> Any:
    return v[0] if isinstance(v, list) and v else v


def interpolate(template: str, lookup: Callable[[str], str]) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: lookup(m.group(1).strip()), unquote(template))


# ---- every file parses, every module is complete ----------------------------------------------

tf_dirs = sorted({p.parent for p in list(MODULES.rglob("*.tf")) + list(ENVS.rglob("*.tf")) + list((ROOT / "terraform" / "examples").rglob("*.tf"))})
parsed: dict[pathlib.Path, dict[str, list[Any]]] = {}
for d in tf_dirs:
    try:
        parsed[d] = parse_dir(d)
        check(f"{d.relative_to(ROOT)} parses", True)
    except Exception as e:  # the parser's message is the detail
        check(f"{d.relative_to(ROOT)} parses", False, str(e).splitlines()[0])

for m in sorted(p for p in MODULES.iterdir() if p.is_dir()):
    missing = [f for f in ["main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"] if not (m / f).exists()]
    check(f"module {m.name} has main.tf, variables.tf, outputs.tf, versions.tf, README.md", not missing, f"missing {missing}")

for d, doc in parsed.items():
    for block in doc.get("variable", []):
        for name, body in block.items():
            ok = "type" in body and bool(unquote(body.get("description", "")))
            check(f"{d.relative_to(ROOT)}: variable {name} is typed and described", ok, "add type and description")
    for block in doc.get("output", []):
        for name, body in block.items():
            check(f"{d.relative_to(ROOT)}: output {name} is described", bool(unquote(body.get("description", ""))))

# ---- the invariants of the region module ------------------------------------------------------

region = parsed[MODULES / "region"]
locals_ = {k: v for block in region.get("locals", []) for k, v in block.items()}
tgs = resources(region, "aws_lb_target_group")
check("region: one aws_lb_target_group, for each of exactly blue and green",
      list(tgs) == ["colour"] and "colours" in str(tgs["colour"].get("for_each")) and sorted(re.findall(r"blue|green", str(locals_.get("colours")))) == ["blue", "green"],
      f"{tgs.keys()} {locals_.get('colours')}")
health = first(tgs["colour"].get("health_check"))
check("region: target groups check /health every 10s, healthy after 2, deregistration delay 30s",
      unquote(health.get("path")) == "/health" and health.get("interval") == 10 and health.get("healthy_threshold") == 2
      and tgs["colour"].get("deregistration_delay") == 30, str(health))
check("region: target groups are of type ip", unquote(tgs["colour"].get("target_type")) == "ip")

listeners = resources(region, "aws_lb_listener")
for name in ["production", "test"]:
    lc = first(listeners[name].get("lifecycle", [{}]))
    ignored = str(lc.get("ignore_changes", ""))
    check(f"region: listener {name}'s weights are ignored by Terraform (bluegreen owns them)", "default_action" in ignored, ignored)
    fwd = first(first(listeners[name]["default_action"]).get("forward"))
    weights = [tg.get("weight") for tg in fwd.get("target_group", [])]
    check(f"region: listener {name} starts as a weighted forward 100/0", weights == [100, 0], str(weights))

svc = resources(region, "aws_ecs_service")["this"]
check("region: the ECS service uses the EXTERNAL deployment controller",
      unquote(first(svc.get("deployment_controller")).get("type")) == "EXTERNAL")
cluster = resources(region, "aws_ecs_cluster")["this"]
check("region: the cluster has Container Insights", "containerInsights" in str(cluster.get("setting")))
repo = resources(region, "aws_ecr_repository")["this"]
check("region: ECR tags are IMMUTABLE", unquote(repo.get("image_tag_mutability")) == "IMMUTABLE")
check("region: ECR scans on push", first(repo.get("image_scanning_configuration")).get("scan_on_push") is True)
check("region: ECR keeps the last N images (lifecycle policy)", "aws_ecr_lifecycle_policy" in str(region.get("resource")))
logs = resources(region, "aws_cloudwatch_log_group")["service"]
check("region: the log group's retention is a variable", "var.log_retention_days" in str(logs.get("retention_in_days")))
regioned = [(t, n) for block in region.get("resource", []) for t, named in block.items() for n, body in named.items()
            if not t.startswith("aws_iam") and t != "terraform_data" and "region" not in body]
check("region: every regional resource sets region (one multi-region style)", not regioned, str(regioned))

oidc = parsed[MODULES / "github-oidc"]
trust = [d for block in oidc.get("data", []) for t, named in block.items() if t == "aws_iam_policy_document" for n, d in named.items() if n == "trust"][0]
conds = trust["statement"][0]["condition"]
sub = [c for c in conds if c["variable"].endswith(':sub"') or c["variable"].endswith(":sub")]
check("github-oidc: trust is pinned to repo:<repo>:environment:<name> with StringEquals",
      bool(sub) and unquote(sub[0]["test"]) == "StringEquals" and "environment:${var.environment}" in str(sub[0]["values"]),
      str(sub))
deploy = [d for block in oidc.get("data", []) for t, named in block.items() if t == "aws_iam_policy_document" for n, d in named.items() if n == "deploy"][0]
passrole = [s for s in deploy["statement"] if "iam:PassRole" in str(s.get("actions"))]
check("github-oidc: iam:PassRole only for the task roles, only to ECS tasks",
      len(passrole) == 1 and "var.task_role_arns" in str(passrole[0]["resources"]) and "ecs-tasks.amazonaws.com" in str(passrole[0].get("condition")))

lock = parsed[MODULES / "deploy-lock"]
table = resources(lock, "aws_dynamodb_table")["this"]
check("deploy-lock: on demand, pk/sk strings, TTL, point-in-time recovery",
      unquote(table.get("billing_mode")) == "PAY_PER_REQUEST" and unquote(table.get("hash_key")) == "pk"
      and unquote(table.get("range_key")) == "sk" and first(table.get("point_in_time_recovery")).get("enabled") is True
      and first(table.get("ttl")).get("enabled") is True)

# ---- bluegreen.toml names exactly what Terraform creates --------------------------------------


def module_names(args: dict[str, Any], tfvars: dict[str, Any], root_defaults: dict[str, Any]) -> dict[str, Any]:
    """The names the region module gives its resources, evaluated from its own expressions."""
    def value(expr: str) -> str:
        expr = unquote(expr)
        if expr.startswith("${var.") or expr.startswith("var."):
            name = expr.strip("${}").split(".", 1)[1]
            return str(tfvars.get(name, root_defaults.get(name)))
        return expr

    inputs = {k: value(v) for k, v in args.items() if isinstance(v, str)}
    defaults = {k: unquote(v.get("default")) for block in region.get("variable", []) for k, v in block.items()}

    def var(name: str) -> str:
        return str(inputs.get(name, defaults.get(name)))

    prefix = interpolate(locals_["prefix"], lambda ref: var(ref.split(".", 1)[1]))

    def name_of(rtype: str, rname: str, attr: str, key: str = "") -> str:
        body = resources(region, rtype)[rname]
        return interpolate(body[attr], lambda ref: prefix if ref == "local.prefix" else key if ref == "each.key" else var(ref.split(".", 1)[1]))

    return {
        "cluster": name_of("aws_ecs_cluster", "this", "name"),
        "service": name_of("aws_ecs_service", "this", "name"),
        "load_balancer": name_of("aws_lb", "this", "name"),
        "blue_target_group": name_of("aws_lb_target_group", "colour", "name", "blue"),
        "green_target_group": name_of("aws_lb_target_group", "colour", "name", "green"),
        "alarms": {name_of("aws_cloudwatch_metric_alarm", a, "alarm_name", c) for a in ["target_5xx", "unhealthy"] for c in ["blue", "green"]},
        "listener_port": int(var("listener_port")) if var("certificate_arn") in ("None", "null") else 443,
        "test_listener_port": int(var("test_listener_port")),
        "repository": var("name"),
        "region": var("region"),
    }


for env_dir in sorted(p for p in ENVS.iterdir() if p.is_dir()):
    env = env_dir.name
    cfg = tomllib.loads((env_dir / "bluegreen.toml").read_text())
    tfvars = {k: unquote(v) for k, v in normalize(hcl2.loads((env_dir / "terraform.tfvars").read_text())).items()}
    root = parsed[env_dir]
    mods = {name: body for block in root.get("module", []) for name, body in block.items()}
    root_defaults = {k: unquote(v.get("default")) for block in root.get("variable", []) for k, v in block.items()}
    made = {}
    for name, body in mods.items():
        if unquote(body["source"]).endswith("modules/region"):
            n = module_names(body, tfvars, root_defaults)
            made[n["region"]] = n
    check(f"{env}: the regions of bluegreen.toml are the regions Terraform creates",
          set(cfg["regions"]) == set(made), f"{sorted(cfg['regions'])} vs {sorted(made)}")
    for r, rc in cfg["regions"].items():
        n = made.get(r)
        if n is None:
            continue
        for key in ["cluster", "service", "load_balancer", "blue_target_group", "green_target_group", "listener_port", "test_listener_port"]:
            check(f"{env}/{r}: {key} = {rc[key]!r} is what Terraform creates", rc[key] == n[key], f"Terraform makes {n[key]!r}")
        missing = set(rc.get("alarms", [])) - n["alarms"]
        check(f"{env}/{r}: every alarm in bluegreen.toml exists in Terraform", not missing, f"not created: {sorted(missing)}")
        check(f"{env}/{r}: target.repository is the ECR repository Terraform creates", cfg["target"]["repository"] == n["repository"])
    lock_mod = next(b for b in mods.values() if unquote(b["source"]).endswith("modules/deploy-lock"))
    check(f"{env}: lock.table is the table Terraform creates", cfg["lock"]["table"] == unquote(lock_mod["name"]))
    check(f"{env}: lock.region is the table's region", cfg["lock"]["region"] == str(tfvars[unquote(lock_mod["region"]).strip("${}").split(".", 1)[1]]))
    gh = next(b for b in mods.values() if unquote(b["source"]).endswith("modules/github-oidc"))
    check(f"{env}: role_arn is the deploy role Terraform creates",
          cfg.get("role_arn", "").endswith(":role/" + unquote(gh["role_name"])), f"{cfg.get('role_arn')} vs {gh['role_name']}")

passed = sum(1 for ok, _ in results if ok)
failed = len(results) - passed
print(f"terraform checks: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
