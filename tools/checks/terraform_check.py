"""Checks of terraform/ and environments/ that need no Terraform binary (CI on GitHub also runs
`terraform fmt -check` and `validate`): every .tf parses, the invariants bluegreen depends on
hold (the test route, no provisioners, alarm notifications, the deploy role's trust and session),
every name fits AWS's limit for the longest inputs the variable validations allow (the
validations are evaluated), and every name in each environment's bluegreen.toml, [test_traffic]
included, is one Terraform creates.

    python tools/checks/terraform_check.py      → one line per check, then "N passed, N failed"
"""

from __future__ import annotations

import fnmatch
import json
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


def ignores(body: dict[str, Any], attr: str) -> bool:
    """Whether the resource's lifecycle lists `attr` in ignore_changes."""
    return attr in [unquote(a) for a in (first(body.get("lifecycle", [{}])) or {}).get("ignore_changes", [])]


def forward_weights(action: dict[str, Any]) -> list[Any]:
    fwd = first(action.get("forward")) or {}
    return [tg.get("weight") for tg in fwd.get("target_group", [])]


prod_listener = listeners["production"]
check("region: listener production's weights are ignored by Terraform (bluegreen owns them)", ignores(prod_listener, "default_action"),
      str(prod_listener.get("lifecycle")))
weights = forward_weights(first(prod_listener["default_action"]))
check("region: listener production starts as a weighted forward 100/0", weights == [100, 0], str(weights))

# The test route: the test listener itself reaches no target group. A request gets to a colour only
# through a rule that matches the secret header, and that rule's action is bluegreen's.
test_default = first(listeners["test"]["default_action"])
fixed = first(test_default.get("fixed_response")) or {}
check("region: the test listener's default action is a fixed 404",
      unquote(test_default.get("type")) == "fixed-response" and unquote(fixed.get("status_code")) == "404"
      and "forward" not in test_default and "target_group_arn" not in test_default, str(test_default))
test_rules = {n: b for n, b in resources(region, "aws_lb_listener_rule").items() if "aws_lb_listener.test." in str(b.get("listener_arn"))}


def header_conditioned(rule: dict[str, Any]) -> bool:
    headers = [first(c.get("http_header")) for c in rule.get("condition", []) if c.get("http_header")]
    return any(unquote(h.get("http_header_name")) == "${var.test_header_name}" and h.get("values") == ["${var.test_header_value}"] for h in headers)


unguarded = [n for n, b in test_rules.items() if not (header_conditioned(b) and ignores(b, "action"))]
check("region: the only route to a target group on the test listener is a rule on the secret header whose action Terraform ignores",
      bool(test_rules) and not unguarded and unquote(test_default.get("type")) == "fixed-response",
      f"rules on the test listener: {sorted(test_rules)}; without the header condition or ignore_changes = [action]: {unguarded}")
for n, b in test_rules.items():
    weights = forward_weights(first(b.get("action")) or {})
    check(f"region: test rule {n} starts as a weighted forward 100/0", weights == [100, 0], str(weights))
check("region: output test_rule_arn is the test rule's ARN",
      any(f"aws_lb_listener_rule.{n}.arn" in str(body.get("value")) for block in region.get("output", []) for k, body in block.items()
          if k == "test_rule_arn" for n in test_rules), str([b for b in region.get("output", []) if "test_rule_arn" in b]))
region_vars = {k: v for block in region.get("variable", []) for k, v in block.items()}
check("region: test_header_value is sensitive", region_vars.get("test_header_value", {}).get("sensitive") is True)

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
regioned = [f"{d.relative_to(ROOT)}: {t}.{n}" for d, doc in parsed.items() for block in doc.get("resource", []) for t, by_name in block.items()
            for n, body in by_name.items() if t.startswith("aws_") and not t.startswith("aws_iam") and "region" not in body]
check("every regional AWS resource, in modules and roots, sets region (one multi-region style)", not regioned, str(regioned))

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

# ---- what bluegreen and on call rely on beyond the region module -------------------------------

everything = [(d, t, n, body) for d, doc in parsed.items() for block in doc.get("resource", []) for t, named in block.items() for n, body in named.items()]


def has_key(v: Any, key: str) -> bool:
    if isinstance(v, dict):
        return key in v or any(has_key(x, key) for x in v.values())
    if isinstance(v, list):
        return any(has_key(x, key) for x in v)
    return False


provisioned = [f"{d.relative_to(ROOT)}: {t}.{n}" for d, t, n, body in everything if t in ("terraform_data", "null_resource") or has_key(body, "provisioner")]
check("no terraform_data, null_resource or provisioner (local-exec) anywhere: an apply needs nothing but Terraform", not provisioned, str(provisioned))

alarms = [(d, n, body) for d, t, n, body in everything if t == "aws_cloudwatch_metric_alarm"]
silent = [f"{d.relative_to(ROOT)}: {n}" for d, n, body in alarms
          if not ("aws_sns_topic." in str(body.get("alarm_actions")) and "aws_sns_topic." in str(body.get("ok_actions")))]
check("every alarm notifies an SNS topic on ALARM and on OK (alarm_actions, ok_actions)", bool(alarms) and not silent, str(silent))
topics = resources(region, "aws_sns_topic")
keys = resources(region, "aws_kms_key")
check("region: the alarm topic is encrypted with a key whose policy lets CloudWatch publish",
      bool(topics) and all("aws_kms_key." in str(t.get("kms_master_key_id")) for t in topics.values())
      and all("cloudwatch.amazonaws.com" in str(keys.get(str(t.get("kms_master_key_id")).split(".")[1], {}).get("policy")) for t in topics.values()),
      str({n: t.get("kms_master_key_id") for n, t in topics.items()}))

oidc_vars = {k: v for block in oidc.get("variable", []) for k, v in block.items()}
oidc_data = {(t, n): b for block in oidc.get("data", []) for t, named in block.items() for n, b in named.items()}
created = resources(oidc, "aws_iam_openid_connect_provider").get("github", {})
looked_up = oidc_data.get(("aws_iam_openid_connect_provider", "github"), {})
oidc_locals = {k: v for block in oidc.get("locals", []) for k, v in block.items()}
check("github-oidc: the OIDC provider is optional: created with create_provider (default false), otherwise looked up by its URL",
      oidc_vars.get("create_provider", {}).get("default") is False
      and re.fullmatch(r"\$\{var\.create_provider \? 1 : 0\}", str(created.get("count"))) is not None
      and re.fullmatch(r"\$\{var\.create_provider \? 0 : 1\}", str(looked_up.get("count"))) is not None
      and interpolate(str(looked_up.get("url")), lambda ref: unquote(oidc_locals[ref.split(".", 1)[1]])) == "https://token.actions.githubusercontent.com"
      and "data.aws_iam_openid_connect_provider.github" in str(oidc_locals.get("provider_arn")),
      f"count {created.get('count')} / {looked_up.get('count')}, url {looked_up.get('url')}, provider_arn {oidc_locals.get('provider_arn')}")
ops = oidc_vars.get("operator_principals", {})
check("github-oidc: operator_principals is a list(string), described, default []",
      "list(string)" in str(ops.get("type")) and bool(unquote(ops.get("description", ""))) and ops.get("default") == [], str(ops))
operator_statements = [d["statement"] for d in trust.get("dynamic", []) if "statement" in d]
check("github-oidc: operators assume the role only when listed: account root + ArnLike aws:PrincipalArn on var.operator_principals, only when non-empty",
      any("length(var.operator_principals) > 0" in str(s.get("for_each"))
          and any('"sts:AssumeRole"' == a for c in s["content"] for a in c.get("actions", []))
          and any(unquote(cond.get("test")) == "ArnLike" and unquote(cond.get("variable")) == "aws:PrincipalArn" and cond.get("values") == "${var.operator_principals}"
                  for c in s["content"] for cond in c.get("condition", []))
          and any(str(i).endswith(':root"') for c in s["content"] for p in c.get("principals", []) for i in p.get("identifiers", []))
          for s in operator_statements), str(operator_statements))
session = oidc_vars.get("max_session_duration", {})
check("github-oidc: the deploy role's max_session_duration is a variable (3600-43200 s, default 4 h)",
      "var.max_session_duration" in str(resources(oidc, "aws_iam_role")["deploy"].get("max_session_duration")) and session.get("default") == 14400
      and "3600" in str(session.get("validation")) and "43200" in str(session.get("validation")), str(session))

# Every module call passes every variable the module requires and nothing it does not declare, so
# a root or example left behind by a module change fails here rather than at `terraform plan`.
META = {"source", "count", "for_each", "providers", "depends_on", "version"}
for d, doc in parsed.items():
    for block in doc.get("module", []):
        for mname, body in block.items():
            target = (d / unquote(body["source"])).resolve()
            mod = parsed.get(target)
            if mod is None:
                check(f"{d.relative_to(ROOT)}: module {mname}'s source is a module here", False, str(target))
                continue
            declared = {k: v for b in mod.get("variable", []) for k, v in b.items()}
            unknown = set(body) - META - set(declared)
            missing = {k for k, v in declared.items() if "default" not in v} - set(body)
            check(f"{d.relative_to(ROOT)}: module {mname} passes every required variable of {target.name} and no other",
                  not unknown and not missing, f"unknown {sorted(unknown)}, missing {sorted(missing)}")

# ---- every name fits AWS's limit, for the longest inputs the validations allow -----------------
# Each validation condition of the variables a name uses is evaluated (a small subset of Terraform's
# expression language), over candidate values of every length; the names are then evaluated from
# their own expressions with the longest accepted inputs.

# The longest partition and region codes (us-isof-south-1, 15) and a 12-digit account: SSM's
# limit counts the parameter's ARN.
ARN_PARTITION = "aws-us-gov"
REGION_CODES = ["us-isof-south-1", "us-isob-east-1", "eu-isoe-west-1", "eusc-de-east-1", "ap-southeast-5", "ap-northeast-3",
                "cn-northwest-1", "us-gov-west-1", "eu-central-2", "us-east-1"]
LIMITS = {  # resource type: (attribute holding the name, AWS's limit, what it is)
    "aws_lb": ("name", 32, "ALB name"),
    "aws_lb_target_group": ("name", 32, "target group name"),
    "aws_iam_role": ("name", 64, "IAM role name"),
    "aws_iam_role_policy": ("name", 128, "IAM inline policy name"),
    "aws_ecs_cluster": ("name", 255, "ECS cluster name"),
    "aws_ecs_service": ("name", 255, "ECS service name"),
    "aws_ecs_task_definition": ("family", 255, "task definition family"),
    "aws_ecr_repository": ("name", 256, "ECR repository name"),
    "aws_cloudwatch_log_group": ("name", 512, "log group name"),
    "aws_cloudwatch_metric_alarm": ("alarm_name", 255, "alarm name"),
    "aws_cloudwatch_dashboard": ("dashboard_name", 255, "dashboard name"),
    "aws_sns_topic": ("name", 256, "SNS topic name"),
    "aws_kms_alias": ("name", 256, "KMS alias"),
    "aws_security_group": ("name", 255, "security group name"),
    "aws_appautoscaling_policy": ("name", 256, "scaling policy name"),
    "aws_dynamodb_table": ("name", 255, "DynamoDB table name"),
    "aws_ssm_parameter": ("name", 1011, "SSM parameter name (counted with its ARN)"),
}


class Unevaluable(Exception):
    """An expression outside the subset evaluated here: the check that needs it fails, saying so."""


def scan_string(s: str, i: int) -> tuple[int, list[tuple[str, str]]]:
    """s[i] is '"': the index after the closing quote, and the literal and ${...} parts."""
    parts: list[tuple[str, str]] = []
    buf: list[str] = []
    i += 1
    while i < len(s):
        if s[i] == "\\":
            buf.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(s[i + 1], "\\" + s[i + 1]))
            i += 2
        elif s[i] == '"':
            return i + 1, parts + [("lit", "".join(buf))]
        elif s.startswith("${", i):
            parts.append(("lit", "".join(buf)))
            buf = []
            j = close_brace(s, i + 1)
            parts.append(("expr", s[i + 2:j]))
            i = j + 1
        else:
            buf.append(s[i])
            i += 1
    raise Unevaluable(f"unterminated string in {s!r}")


def close_brace(s: str, i: int) -> int:
    """s[i] is '{': the index of its matching '}'."""
    depth = 0
    while i < len(s):
        if s[i] == '"':
            i, _ = scan_string(s, i)
            continue
        depth += {"{": 1, "}": -1}.get(s[i], 0)
        if depth == 0:
            return i
        i += 1
    raise Unevaluable(f"unbalanced braces in {s!r}")


def bare(expr: str) -> str:
    """python-hcl2 writes an expression as ${...}; unwrap it."""
    e = str(expr).strip()
    return e[2:-1] if e.startswith("${") and close_brace(e, 1) == len(e) - 1 else e


FUNCS = {"length": "len", "can": "_can", "regex": "_regex", "startswith": "_startswith", "endswith": "_endswith",
         "contains": "_contains", "lower": "_lower", "upper": "_upper", "floor": "_floor"}


def to_python(expr: str) -> str:
    """A Terraform expression (the operators, literals, templates and functions validations use)
    as Python over V, the variables."""
    e, out, i = bare(expr), [], 0
    while i < len(e):
        if e[i] == '"':
            i, parts = scan_string(e, i)
            pieces = [repr(t) if kind == "lit" else f"_str({to_python(t)})" for kind, t in parts if t]
            out.append("(" + (" + ".join(pieces) or "''") + ")")
            continue
        word = re.match(r"[A-Za-z_][A-Za-z0-9_.]*|\d+(\.\d+)?", e[i:])
        if word:
            w = word.group(0)
            i += len(w)
            if w.startswith("var."):
                out.append(f"V[{w[4:]!r}]")
            elif w in ("true", "false", "null"):
                out.append({"true": "True", "false": "False", "null": "None"}[w])
            elif w[0].isdigit():
                out.append(w)
            elif w == "can" and e[i:].lstrip().startswith("("):
                i = e.index("(", i) + 1
                out.append("_can(lambda: ")
            elif w in FUNCS:
                out.append(FUNCS[w])
            else:
                raise Unevaluable(w)
            continue
        op = next((o for o in ["&&", "||", "!=", "==", "<=", ">=", "!", "<", ">", "(", ")", ",", "+", "-", "[", "]", " "] if e.startswith(o, i)), None)
        if op is None:
            raise Unevaluable(e[i:])
        out.append({"&&": " and ", "||": " or ", "!": " not "}.get(op, op))
        i += len(op)
    return "".join(out)


def _can(f: Callable[[], Any]) -> bool:
    try:
        f()
        return True
    except Exception:  # Terraform's can() turns any error into false
        return False


def _regex(pattern: str, s: str) -> str:
    m = re.search(pattern, s)
    if m is None:
        raise ValueError("no match")
    return m.group(0)


def _str(v: Any) -> str:
    if v is None:
        raise ValueError("null in a template")
    return {True: "true", False: "false"}.get(v, str(v)) if isinstance(v, bool) else str(v)


HELPERS = {"_can": _can, "_regex": _regex, "_str": _str, "len": len, "_startswith": str.startswith, "_endswith": str.endswith,
           "_contains": lambda c, v: v in c, "_lower": str.lower, "_upper": str.upper, "_floor": lambda x: int(x // 1)}


def condition(expr: str) -> Callable[[dict[str, Any]], bool]:
    try:
        code = compile(to_python(expr).strip(), "<validation>", "eval")
    except SyntaxError as e:
        raise Unevaluable(f"{expr}: {e.msg}") from e
    return lambda values: bool(eval(code, {"__builtins__": {}, **HELPERS, "V": values}))


# operator_principals: the validation's regex, read by Python's re as _regex reads the other
# validations' (the pattern uses no RE2-only syntax), against what it must refuse and every
# documented example; ArnLike matches like fnmatch here (* spans "/", there is no [...] in ARNs).
op_conditions = [str(v.get("condition")) for v in ops.get("validation", [])]
op_regex = next((m.group(1).replace('\\"', '"').replace("\\\\", "\\") for c in op_conditions
                 for m in [re.search(r'regex\("((?:[^"\\]|\\.)*)",\s*p\)', c)] if m), None)


def op_accepts(arn: str) -> bool:
    return op_regex is not None and _can(lambda: _regex(op_regex, arn))


OP_GOOD = ["arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/*AWSReservedSSO_Deployer_*",
           "arn:aws-us-gov:iam::123456789012:user/alice", "arn:aws-cn:iam::123456789012:role/on-call"]
OP_BAD = ["arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Deployer_0123456789abcdef/alice",
          "arn:aws:iam::*:role/on-call", "arn:aws:iam::123456789012:root", "arn:aws:iam::123456789012:role/",
          "arn:aws:iam::123456789012:group/deployers", "arn:aws:iam::12345:role/on-call"]
check("github-oidc: operator_principals' validation accepts only IAM role or user ARNs of a 12-digit account (no sts ARNs, no * account)",
      op_regex is not None and all(op_accepts(a) for a in OP_GOOD) and not any(op_accepts(a) for a in OP_BAD),
      f"regex {op_regex!r}: refuses {[a for a in OP_GOOD if not op_accepts(a)]}, accepts {[a for a in OP_BAD if op_accepts(a)]}")
check("github-oidc: operator_principals' error message says what it accepts and gives the IAM Identity Center example",
      all(w in str(ops.get("validation")) for w in ("role/", "user/", "sts", "aws:PrincipalArn", "sso.amazonaws.com/*AWSReservedSSO_")), str(ops.get("validation")))
readme_examples = [a for line in (ROOT / "terraform" / "README.md").read_text().splitlines()
                   if re.match(r"\s*operator_principals\s*=\s*\[", line) for a in re.findall(r'"([^"]+)"', line)]
check("terraform/README.md: the operator_principals example (On call) is accepted by the module's validation",
      bool(readme_examples) and all(op_accepts(a) for a in readme_examples), f"regex {op_regex!r}, examples {readme_examples}")
# Every documented Identity Center pattern: accepted, and matching the permission set's role both
# for an instance in us-east-1 (no region path segment) and elsewhere (…/sso.amazonaws.com/<region>/).
documented = {f: [re.sub(r"\.$", "", a).replace("<account>", "123456789012")
                  for a in re.findall(r"arn:[^\s\"'`,\]]*sso\.amazonaws\.com[^\s\"'`,\]]*", f.read_text())]
              for f in [ROOT / "terraform" / "README.md", MODULES / "github-oidc" / "variables.tf", MODULES / "github-oidc" / "README.md",
                        *ENVS.glob("*/variables.tf"), *ENVS.glob("*/terraform.tfvars")]}


def sso_role(pattern: str, region: str) -> str:
    account = pattern.split(":")[4]
    return f"arn:aws:iam::{account}:role/aws-reserved/sso.amazonaws.com/{region}AWSReservedSSO_Deployer_0123456789abcdef"


wrong = [f"{f.relative_to(ROOT)}: {a}" for f, arns in documented.items() for a in arns
         if not (op_accepts(a) and fnmatch.fnmatchcase(sso_role(a, ""), a) and fnmatch.fnmatchcase(sso_role(a, "eu-west-1/"), a))]
check("every documented IAM Identity Center pattern for operator_principals is accepted and matches the role with and without the region path segment",
      sum(map(len, documented.values())) >= 6 and not wrong, f"{wrong or documented}")


def candidates() -> list[str]:
    """One value per length and shape (plain, region-like), up to 300 characters."""
    out = list(REGION_CODES)
    for n in range(1, 301):
        out.append("a" * n)
        if n > 5:
            out.append("us-" + "a" * (n - 5) + "-1")
    return out


def longest_inputs(doc: dict[str, list[Any]], wanted: set[str], fixed: dict[str, str]) -> list[dict[str, str]]:
    """The combinations of the variables `wanted` that the module's validations accept and no other
    accepted combination outgrows (every value at least as long, one longer); `fixed` holds the
    values of variables the caller sets."""
    declared = {k: v for block in doc.get("variable", []) for k, v in block.items()}
    conds = [(set(re.findall(r"var\.(\w+)", str(v["condition"]))), condition(v["condition"]))
             for name in wanted | set(fixed) for v in declared.get(name, {}).get("validation", [])]
    unbounded = [n for n in wanted if not declared.get(n, {}).get("validation")]
    if unbounded:
        raise Unevaluable(f"var.{', var.'.join(sorted(unbounded))} has no validation to bound it")
    accepted: dict[str, list[str]] = {}
    for n in wanted:
        seen: dict[int, str] = {}
        for c in candidates():
            values = {**fixed, n: c}
            if len(c) not in seen and all(ok(values) for refs, ok in conds if refs <= {n} | set(fixed)):
                seen[len(c)] = c
        accepted[n] = list(seen.values())
    # Variables tied by a validation that names several of them are tried together; any other
    # variable alone. Then every group's combinations are joined.
    groups: list[set[str]] = [{n} for n in wanted]
    for refs, _ in conds:
        tied = [g for g in groups if g & refs]
        groups = [g for g in groups if not g & refs] + [set().union(*tied)] if tied else groups
    combos: list[dict[str, str]] = [dict(fixed)]
    for g in groups:
        found: list[dict[str, str]] = [{}]
        for n in sorted(g):
            found = [{**f, n: c} for f in found for c in accepted[n]]
        found = [f for f in found if all(ok({**fixed, **f}) for refs, ok in conds if refs & g and refs <= g | set(fixed))]
        found = [f for f in found if not any(all(len(o[k]) >= len(f[k]) for k in f) and any(len(o[k]) > len(f[k]) for k in f) for o in found)]
        combos = [{**c, **f} for c in combos for f in found]
    return combos


def local_values(doc: dict[str, list[Any]]) -> dict[str, Any]:
    return {k: v for block in doc.get("locals", []) for k, v in block.items()}


def named(doc: dict[str, list[Any]]) -> list[tuple[str, str, str, int, str, list[str]]]:
    """(type, name, the name's template, limit, what, for_each keys) of every resource LIMITS knows."""
    loc = local_values(doc)
    out = []
    for block in doc.get("resource", []):
        for t, by_name in block.items():
            if t not in LIMITS:
                continue
            attr, limit, what = LIMITS[t]
            for n, body in by_name.items():
                each = body.get("for_each")
                keys = [""]
                if each is not None:
                    ref = re.fullmatch(r"\$\{local\.(\w+)\}", str(each))
                    keys = re.findall(r'"([^"]+)"', str(loc.get(ref.group(1)))) if ref else []
                out.append((t, n, str(body.get(attr, "")), limit, what, keys))
    return out


def evaluate(template: str, doc: dict[str, list[Any]], values: dict[str, str], key: str) -> str:
    loc = local_values(doc)

    def lookup(ref: str) -> str:
        if ref.startswith("var.") and ref[4:] in values:
            return values[ref[4:]]
        if ref.startswith("local.") and ref[6:] in loc:
            return interpolate(str(loc[ref[6:]]), lookup)
        if ref == "each.key" and key:
            return key
        if ref == "count.index":
            return "9"
        raise Unevaluable(ref)

    return interpolate(template, lookup)


def measure(t: str, name: str, region_code: str) -> int:
    if t == "aws_ssm_parameter":
        return len(f"arn:{ARN_PARTITION}:ssm:{region_code}:123456789012:parameter") + len(name)
    return len(name)


def inputs_of(doc: dict[str, list[Any]]) -> set[str]:
    """The variables the module's limited names use, directly or through a local."""
    items = named(doc)
    wanted = {v for _, _, tpl, _, _, _ in items for v in re.findall(r"var\.(\w+)", tpl)}
    for local in {m for _, _, tpl, _, _, _ in items for m in re.findall(r"local\.(\w+)", tpl)}:
        wanted |= set(re.findall(r"var\.(\w+)", str(local_values(doc).get(local, ""))))
    return wanted


def check_names(label: str, doc: dict[str, list[Any]], combos: list[dict[str, str]], bounded_by: str) -> tuple[int, str] | None:
    """Checks every limited name of `doc` for each combination of inputs; returns the smallest
    headroom and that name with <variable> placeholders."""
    check(f"{label}: the validations accept some input", bool(combos), "no candidate value passes them")
    tightest: tuple[int, str] | None = None
    for t, n, tpl, limit, what, keys in named(doc):
        try:
            worst = max(((measure(t, name, values.get("region", REGION_CODES[0])), name) for values in combos for key in keys or [""]
                         for name in [evaluate(tpl, doc, {"home_region": REGION_CODES[0], **values}, key)]), default=(0, ""))
            placeholder = evaluate(tpl, doc, {k: f"<{k}>" for k in set().union(*combos, {"home_region"})}, max(keys or [""], key=len))
        except Unevaluable as e:
            check(f"{label}: {t}.{n}'s {what} fits {limit}", False, f"cannot evaluate {tpl}: {e} (give it a validation)")
            continue
        check(f"{label}: {t}.{n}'s {what} fits {limit} for {bounded_by}", worst[0] <= limit, f"{worst[1]!r} is {worst[0]} characters")
        if t == "aws_ssm_parameter":
            check(f"{label}: {t}.{n}'s hierarchy is at most 15 levels", worst[1].count("/") <= 15, worst[1])
        if tightest is None or limit - worst[0] < tightest[0]:
            tightest = (limit - worst[0], placeholder)
    return tightest


# The environment module's names (its SSM parameter, its dashboard) are bounded by what the roots pass
# it, which the region modules' validations bound: checked with the roots below.
environment = parsed[MODULES / "environment"]
for label, doc in [("region", region), ("github-oidc", oidc), ("deploy-lock", lock)]:
    wanted = inputs_of(doc)
    try:
        combos = longest_inputs(doc, wanted, {})
    except Unevaluable as e:
        check(f"{label}: every derived name fits its AWS limit", False, f"cannot evaluate the validations: {e}")
        continue
    tightest = check_names(label, doc, combos, "the longest inputs the validations allow")
    if doc is region and tightest is not None:
        declared = {k: v for block in doc.get("variable", []) for k, v in block.items()}
        messages = " ".join(str(v.get("error_message")) for k in wanted for v in declared.get(k, {}).get("validation", []))
        check(f"region: a validation's error message names the name closest to its limit ({tightest[1]})", tightest[1] in messages,
              "no error message of " + ", ".join(f"var.{k}" for k in sorted(wanted)) + f" says {tightest[1]}")



def calls(doc: dict[str, list[Any]], module: str) -> dict[str, dict[str, Any]]:
    """The calls of terraform/modules/<module> in a root: name → arguments."""
    return {n: b for block in doc.get("module", []) for n, b in block.items() if unquote(b["source"]).endswith(f"modules/{module}")}


def called_with(doc: dict[str, list[Any]], args: dict[str, Any], wanted: set[str], lookup: Callable[[str], str]) -> dict[str, str]:
    """The values of the module's variables `wanted` in one call: each argument evaluated in the
    caller (`lookup` resolves the caller's references), or the variable's default."""
    defaults = {k: v.get("default") for block in doc.get("variable", []) for k, v in block.items()}
    return {k: interpolate(str(args[k]), lookup) if k in args else str(unquote(defaults.get(k))) for k in wanted if k in args or defaults.get(k) is not None}


def root_input(values: dict[str, str]) -> Callable[[str], str]:
    """Resolves a root's var.X from `values`; any other reference is unevaluable."""
    def lookup(ref: str) -> str:
        if ref.startswith("var.") and ref[4:] in values:
            return values[ref[4:]]
        raise Unevaluable(ref)
    return lookup


# The roots: their own names use var.name, which the region modules they call bound; so do the names
# of the environment module, evaluated with the arguments the root gives it.
for d in sorted(p for p in parsed if p.parent in (ENVS, ROOT / "terraform" / "examples")):
    envs = {unquote(b.get("environment")) for b in calls(parsed[d], "region").values()}
    for env_name in sorted(envs):
        if "${" in env_name:
            check(f"{d.relative_to(ROOT)}: its region modules' environment is a literal", False, env_name)
            continue
        combos = longest_inputs(region, {"name"}, {"environment": env_name})
        check_names(str(d.relative_to(ROOT)), parsed[d], combos, "the longest name the region module allows")
        for mname, args in calls(parsed[d], "environment").items():
            try:
                passed = [called_with(environment, args, inputs_of(environment) | {"region"}, root_input({"home_region": REGION_CODES[0], **c}))
                          for c in combos]
            except Unevaluable as e:
                check(f"{d.relative_to(ROOT)}: module.{mname}'s names fit their AWS limits", False, f"cannot evaluate its argument {e} in the root")
                continue
            check_names(f"{d.relative_to(ROOT)}: module.{mname}", environment, passed, "the longest name the region module allows")

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
        "task_family": name_of("aws_ecs_task_definition", "initial", "family"),
        "test_header": var("test_header_name"),
        "test_header_value": str(args.get("test_header_value")),
        "repository": var("name"),
        "region": var("region"),
    }


def seconds(d: str) -> float:
    """A bluegreen.toml duration (30s, 5m, 1h30m, 250ms, 0) in seconds."""
    parts = re.findall(r"(\d+)(ms|s|m|h)", d)
    if d.strip() != "0" and "".join(n + u for n, u in parts) != d.strip():
        raise ValueError(f"{d!r} is not a duration this check reads")
    return sum(int(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u] for n, u in parts)


def rust_const_seconds(name: str) -> int:
    m = re.search(rf"const {name}: Duration = [^;]*?\((\d+)\);", (ROOT / "bluegreen" / "src" / "config.rs").read_text())
    if m is None:
        raise ValueError(f"bluegreen/src/config.rs has no `const {name}: Duration` in seconds")
    return int(m.group(1))


def worst_case(cfg: dict[str, Any]) -> float:
    """bluegreen's worst-case rollout time, as Plan::worst_case in bluegreen/src/config.rs counts it:
    the scan wait, each wave's ready timeout, test-traffic window and bakes with a poll each, plus
    the time outside the waves."""
    st = cfg["strategy"]
    bakes = sum(seconds(st["final_bake"] if s == 100 else st["bake"]) + seconds(st["poll"]) for s in st["steps"])
    wave = seconds(st["ready_timeout"]) + rust_const_seconds("TEST_TRAFFIC_WINDOW") + bakes
    scanning = str(st.get("scan_threshold", "none")).lower() != "none"
    scan = (seconds(st["scan_wait"]) if "scan_wait" in st else rust_const_seconds("DEFAULT_SCAN_WAIT")) if scanning else 0
    return scan + wave * len(cfg["waves"]) + rust_const_seconds("OUTSIDE_WAVES")


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
    for r, own in cfg["regions"].items():
        rc = {**cfg.get("defaults", {}), **own}  # a region's keys over [defaults], as bluegreen reads them
        n = made.get(r)
        if n is None:
            continue
        for key in ["cluster", "service", "load_balancer", "blue_target_group", "green_target_group", "listener_port", "test_listener_port", "task_family"]:
            check(f"{env}/{r}: {key} = {rc.get(key)!r} is what Terraform creates", rc.get(key) == n[key], f"Terraform makes {n[key]!r}")
        missing = set(rc.get("alarms", [])) - n["alarms"]
        check(f"{env}/{r}: every alarm in bluegreen.toml exists in Terraform", not missing, f"not created: {sorted(missing)}")
        check(f"{env}/{r}: target.repository is the ECR repository Terraform creates", cfg["target"]["repository"] == n["repository"])
    lock_mod = next(b for b in mods.values() if unquote(b["source"]).endswith("modules/deploy-lock"))
    check(f"{env}: lock.table is the table Terraform creates", cfg["lock"]["table"] == unquote(lock_mod["name"]))
    check(f"{env}: lock.region is the table's region", cfg["lock"]["region"] == str(tfvars[unquote(lock_mod["region"]).strip("${}").split(".", 1)[1]]))
    gh = next(b for b in mods.values() if unquote(b["source"]).endswith("modules/github-oidc"))
    check(f"{env}: role_arn is the deploy role Terraform creates",
          cfg.get("role_arn", "").endswith(":role/" + unquote(gh["role_name"])), f"{cfg.get('role_arn')} vs {gh['role_name']}")

    # The test route: the header every region's rule matches, and the SSM parameter (in the lock's
    # region) holding the very value those rules compare. The parameter, its secret and the dashboard
    # are the environment module's: its expressions are followed with the arguments the root gives it.
    def root_var(ref: str, tfvars: dict[str, Any] = tfvars, defaults: dict[str, Any] = root_defaults) -> str:
        name = ref.split(".", 1)[1]
        return str(tfvars.get(name, defaults.get(name)))

    env_calls = calls(root, "environment")
    check(f"{env}: the root calls the environment module once (the test route's secret, the dashboard)", len(env_calls) == 1, str(sorted(env_calls)))
    env_call = next(iter(env_calls.values()), {})
    env_outputs = {k: v for block in environment.get("output", []) for k, v in block.items()}

    def env_var(ref: str, args: dict[str, Any] = env_call) -> str:
        """var.X of the environment module: the root's argument, evaluated in the root."""
        return next(iter(called_with(environment, args, {ref.split(".", 1)[1]}, root_var).values()), "None")

    def through(expr: Any, env_calls: dict[str, Any] = env_calls, env_outputs: dict[str, Any] = env_outputs) -> str:
        """A root expression `module.<environment call>.<output>` → that output's expression in the module."""
        m = re.fullmatch(r"\$\{module\.(\w+)\.(\w+)\}", str(expr))
        if m and m.group(1) in env_calls and m.group(2) in env_outputs:
            return str(env_outputs[m.group(2)].get("value"))
        return str(expr)

    tt = cfg.get("test_traffic", {})
    regions_made = list(made.values())
    check(f"{env}: test_traffic.header is the header every region's test rule matches",
          bool(regions_made) and all(tt.get("header") == n["test_header"] for n in regions_made),
          f"{tt.get('header')!r} vs {sorted({n['test_header'] for n in regions_made})}")
    params = resources(environment, "aws_ssm_parameter")
    pname, param = next(iter(params.items()), ("?", {}))
    check(f"{env}: test_traffic.parameter is the SecureString Terraform creates in the lock's region",
          len(params) == 1 and tt.get("parameter") == interpolate(str(param.get("name")), env_var)
          and unquote(param.get("type")) == "SecureString" and interpolate(str(param.get("region")), env_var) == cfg["lock"]["region"],
          f"{tt.get('parameter')!r} vs {param.get('name')} in {param.get('region')} (module environment, called with {env_call})")
    secret_refs = {through(n["test_header_value"]) for n in regions_made}
    password = resources(environment, "random_password").get(str(param.get("value", "")).removeprefix("${random_password.").split(".")[0], {})
    check(f"{env}: the parameter holds the value every region's test rule compares (one random_password, 16-128 letters and digits)",
          len(secret_refs) == 1 and secret_refs == {str(param.get("value"))} and str(param.get("value")).startswith("${random_password.")
          and password.get("special") is False and 16 <= int(password.get("length", 0)) <= 128,
          f"parameter value {param.get('value')}, rules compare {sorted(secret_refs)}, password {password}")
    # The region modules take the secret from the environment module, which takes their
    # metric_dimensions: no cycle only while the secret's output depends on no region.
    fed = [re.fullmatch(r"\$\{module\.(\w+)\.(\w+)\}", n["test_header_value"]) for n in regions_made]
    outs = [env_outputs.get(m.group(2), {}) if m and m.group(1) in env_calls else {} for m in fed]
    check(f"{env}: every region module's test_header_value is a sensitive output of the environment module that depends on no region",
          bool(outs) and all(o.get("sensitive") is True and re.fullmatch(r"\$\{random_password\.\w+\.result\}", str(o.get("value"))) for o in outs)
          and "var." not in str(password) and "local." not in str(password),
          f"region modules get {sorted({n['test_header_value'] for n in regions_made})}; "
          f"outputs {({m.group(2): env_outputs.get(m.group(2)) for m in fed if m} if any(fed) else '-')}; password {password}")
    root_outputs = {k: v for block in root.get("output", []) for k, v in block.items()}
    check(f"{env}: output test_header_parameter is the parameter's name",
          through(root_outputs.get("test_header_parameter", {}).get("value")) == f"${{aws_ssm_parameter.{pname}.name}}",
          str(root_outputs.get("test_header_parameter")))

    # `bluegreen init` reads the root's bluegreen output; the fixture its tests read
    # (bluegreen/tests/fixtures/terraform/<env>.json) is what this Terraform outputs.
    bg_expr = str(root_outputs.get("bluegreen", {}).get("value"))
    for ref in ["data.aws_caller_identity.", "module.github.role_arn", "module.lock.table_name", "var.home_region",
                "module.environment.test_header_parameter_name", "local.regions", ".names"]:
        check(f"{env}: output bluegreen uses {ref}", ref in bg_expr, bg_expr)
    fixture_path = ROOT / "bluegreen" / "tests" / "fixtures" / "terraform" / f"{env}.json"
    fx = json.loads(fixture_path.read_text())["bluegreen"]["value"]
    region_outputs = {k: v for block in region.get("output", []) for k, v in block.items()}
    names_keys = set(region_outputs.get("names", {}).get("value") or {})
    init_keys = {"cluster", "service", "task_family", "load_balancer", "listener_port", "test_listener_port",
                 "blue_target_group", "green_target_group", "alarms", "repository", "test_header"}
    check("region: output names has every key bluegreen init reads", init_keys <= names_keys, f"missing {sorted(init_keys - names_keys)}")
    check(f"{env}: the init fixture's regions are the regions Terraform creates", set(fx["regions"]) == set(made), f"{sorted(fx['regions'])} vs {sorted(made)}")
    for r, n in made.items():
        got = fx["regions"].get(r, {})
        for key in sorted(init_keys - {"alarms"}):
            check(f"{env}/{r}: the init fixture's {key} is Terraform's", got.get(key) == n[key], f"{got.get(key)!r} vs {n[key]!r}")
        alarm_order = [a for kind in ["5xx", "unhealthy"] for a in sorted(n["alarms"]) if a.endswith(kind)]
        check(f"{env}/{r}: the init fixture's alarms are Terraform's, in the names output's order (5xx, then unhealthy)",
              got.get("alarms") == alarm_order, f"{got.get('alarms')} vs {alarm_order}")
    check(f"{env}: the init fixture's lock is Terraform's", fx["lock"] == {"table": cfg["lock"]["table"], "region": cfg["lock"]["region"]}
          and fx["lock"]["table"] == unquote(lock_mod["name"]), str(fx["lock"]))
    check(f"{env}: the init fixture's role_arn is the deploy role", fx["role_arn"].endswith(":role/" + unquote(gh["role_name"])), fx["role_arn"])
    check(f"{env}: the init fixture's test_header_parameter is the parameter's name",
          fx["test_header_parameter"] == interpolate(str(param.get("name")), env_var), fx["test_header_parameter"])
    if "source_repository_arn" in tfvars:
        m = re.fullmatch(r"arn:[^:]+:ecr:([a-z0-9-]+):(\d{12}):repository/(.+)", str(tfvars["source_repository_arn"]))
        want = {"region": m.group(1), "account_id": m.group(2), "repository": m.group(3), "role_arn": tfvars.get("source_read_role_arn")} if m else {}
        check(f"{env}: the init fixture's source is the repository and role terraform.tfvars names", fx["source"] == want, f"{fx['source']} vs {want}")
    else:
        check(f"{env}: the init fixture's source is this account's own repository (no role)",
              fx["source"]["role_arn"] is None and fx["source"]["account_id"] == fx["account_id"]
              and fx["source"]["repository"] in {n["repository"] for n in made.values()}, str(fx["source"]))

    # Everything that lists the regions (deploy policy, dashboard) goes through local.regions.
    listed = set(re.findall(r"module\.(\w+)", str(local_values(root).get("regions"))))
    region_mods = {name for name, body in mods.items() if unquote(body["source"]).endswith("modules/region")}
    check(f"{env}: local.regions lists every region module", listed == region_mods, f"{sorted(listed)} vs {sorted(region_mods)}")
    check(f"{env}: the deploy role gets every region's test rule and the test header's parameter",
          "local.regions" in str(gh.get("test_rule_arns")) and "test_rule_arn" in str(gh.get("test_rule_arns"))
          and any(through(a) == f"${{aws_ssm_parameter.{pname}.arn}}" for a in gh.get("test_header_parameter_arns") or []),
          f"{gh.get('test_rule_arns')} / {gh.get('test_header_parameter_arns')}")
    dashboards = resources(environment, "aws_cloudwatch_dashboard")
    widgets = str(local_values(environment)) + str(dashboards)
    wanted_metrics = ["RequestCount", "HTTPCode_Target_5XX_Count", "TargetResponseTime", "HealthyHostCount", "RunningTaskCount"]
    over = str(env_call.get("regions"))
    check(f"{env}: one dashboard in the home region over local.regions with {', '.join(wanted_metrics)}",
          len(dashboards) == 1 and all(interpolate(str(d.get("region")), env_var) == root_var("var.home_region") for d in dashboards.values())
          and "var.regions" in widgets and "local.regions" in over and "metric_dimensions" in over and all(m in widgets for m in wanted_metrics),
          f"{sorted(dashboards)} in {[d.get('region') for d in dashboards.values()]}; regions = {over}; "
          f"missing {[m for m in wanted_metrics + ['var.regions'] if m not in widgets]}")
    check(f"{env}: output dashboard_url is the dashboard's",
          bool(dashboards) and f"aws_cloudwatch_dashboard.{next(iter(dashboards), '?')}.dashboard_name" in through(root_outputs.get("dashboard_url", {}).get("value")),
          str(root_outputs.get("dashboard_url")))
    try:
        need = worst_case(cfg)
        have = gh.get("max_session_duration")
        check(f"{env}: the deploy role's session ({have} s) covers bluegreen's worst case ({need:.0f} s)",
              isinstance(have, int) and have >= need, "raise max_session_duration in the github module call")
    except (KeyError, ValueError) as e:
        check(f"{env}: the deploy role's session covers bluegreen's worst case", False, str(e))

passed = sum(1 for ok, _ in results if ok)
failed = len(results) - passed
print(f"terraform checks: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
