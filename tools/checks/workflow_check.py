"""Invariants of the GitHub workflows that actionlint does not check.

1. Every `uses:` is pinned to a full 40-hex commit SHA, with the version in a comment (local `./`
   actions excepted; `docker://` images by digest).
2. No `uses:` follows a branch (`@master`, `@main`).
3. Permissions: `contents: read` at workflow level and no `id-token` there; `id-token: write` only
   on jobs with a configure-aws-credentials step.
4. Concurrency: every job that runs `bluegreen promote`, `continue` or `rollback` has a job-level
   group without cancel-in-progress, and no rollback group can equal a deploy job's group in
   release.yml (a rollback must start while a promote holds its group).
5. Session length: every job that runs `bluegreen promote`, `continue` or `rollback` sets
   `role-duration-seconds` on a configure-aws-credentials step before it.

Prints one line per check ("ok   …" or "FAIL …" followed by the places, indented) and exits 1 if
any failed. `workflow_check.py [DIR]` checks another folder of workflows (default
.github/workflows), e.g. a copy with one thing broken.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SHA = re.compile(r"[0-9a-f]{40}")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# A `uses:` line as written in block style: `- uses: owner/repo@ref  # v1.2.3`.
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<q>['\"]?)(?P<ref>[^\s'\"#]+)(?P=q)\s*(?:#\s*(?P<comment>.*?))?\s*$")
BRANCH_REFS = {"master", "main", "HEAD", "develop", "trunk"}
CONFIGURE = "aws-actions/configure-aws-credentials"
# `bin/bluegreen promote …`, `bluegreen rollback …`, `"$BIN/bluegreen" continue …`: the commands
# that change an environment for as long as a rollout takes (`continue` finishes a promote).
RUNS_BLUEGREEN = re.compile(r"\bbluegreen['\"]?\s+(?P<cmd>promote|continue|rollback)\b")
DEPLOYS = {"promote", "continue"}
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class Workflow:
    path: Path
    lines: list[str]
    doc: dict

    @property
    def name(self) -> str:
        return self.path.name

    def jobs(self) -> dict:
        return self.doc.get("jobs") or {}

    def dispatch_options(self) -> dict[str, list[str]]:
        """workflow_dispatch choice inputs and their options (for expanding `inputs.X`)."""
        on = self.doc.get("on") or {}
        if not isinstance(on, dict):
            return {}
        inputs = ((on.get("workflow_dispatch") or {}).get("inputs")) or {}
        return {k: list(v.get("options") or []) for k, v in inputs.items() if isinstance(v, dict) and v.get("options")}


@dataclass
class Check:
    title: str
    problems: list[str] = field(default_factory=list)

    def fail(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")

    def report(self, ok_detail: str) -> bool:
        if not self.problems:
            print(f"ok   {self.title} ({ok_detail})")
            return True
        print(f"FAIL {self.title}")
        for p in self.problems:
            print(f"     {p}")
        return False


def load(folder: Path) -> list[Workflow]:
    flows = []
    for path in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]):
        text = path.read_text()
        # BaseLoader keeps every scalar a string: `on:` stays "on", `true` stays "true".
        doc = yaml.load(text, Loader=yaml.BaseLoader) or {}
        flows.append(Workflow(path, text.splitlines(), doc))
    return flows


def steps(job: dict) -> list[dict]:
    return [s for s in job.get("steps") or [] if isinstance(s, dict)]


def action(step: dict) -> str:
    return step.get("uses", "").split("@", 1)[0]


def bluegreen_commands(job: dict) -> list[tuple[int, str]]:
    """(step index, promote|continue|rollback) for every step that runs one."""
    return [
        (i, m.group("cmd"))
        for i, s in enumerate(steps(job))
        for m in RUNS_BLUEGREEN.finditer(s.get("run", ""))
    ]


def structural_uses(wf: Workflow) -> list[str]:
    found = []
    for job in wf.jobs().values():
        if isinstance(job, dict):
            if "uses" in job:
                found.append(job["uses"])
            found += [s["uses"] for s in steps(job) if "uses" in s]
    return found


def check_pinned(flows: list[Workflow]) -> bool:
    c = Check("every uses: pinned to a 40-hex commit SHA with the version in a comment")
    count = 0
    for wf in flows:
        seen = []
        for n, line in enumerate(wf.lines, 1):
            m = USES_LINE.match(line)
            if not m:
                continue
            ref, comment, where = m["ref"], (m["comment"] or "").strip(), f"{wf.name}:{n}"
            seen.append(ref)
            if ref.startswith("./"):
                continue
            count += 1
            if ref.startswith("docker://"):
                if not DIGEST.search(ref):
                    c.fail(where, f"{ref}: a docker image must be pinned by @sha256 digest")
                continue
            name, _, pin = ref.partition("@")
            if not SHA.fullmatch(pin):
                c.fail(where, f"{ref}: '{pin or '(nothing)'}' is not a 40-hex commit SHA")
            elif not comment:
                c.fail(where, f"{name}: no version comment after the SHA (`# v1.2.3`)")
        # Flow-style or multi-line `uses:` escape the line scan: make them visible.
        missing = sorted(set(structural_uses(wf)) - set(seen))
        for ref in missing:
            c.fail(wf.name, f"uses: {ref} is not written as a one-line `uses: ref  # version` this check can read")
    return c.report(f"{count} uses: in {len(flows)} workflows")


def check_no_branches(flows: list[Workflow]) -> bool:
    c = Check("no uses: follows a branch (@master, @main)")
    refs = 0
    for wf in flows:
        for n, line in enumerate(wf.lines, 1):
            m = USES_LINE.match(line)
            refs += bool(m)
            if m and m["ref"].partition("@")[2] in BRANCH_REFS:
                c.fail(f"{wf.name}:{n}", f"{m['ref']}: a branch moves under you; pin its commit")
    return c.report(f"{refs} refs")


def check_permissions(flows: list[Workflow]) -> bool:
    c = Check("permissions: contents: read per workflow; id-token: write only on jobs that configure AWS credentials")
    granted = 0
    for wf in flows:
        top = wf.doc.get("permissions")
        if top != {"contents": "read"}:
            c.fail(wf.name, f"workflow-level permissions are {top!r}, want exactly contents: read (grant more per job)")
        for name, job in wf.jobs().items():
            perms = job.get("permissions") if isinstance(job, dict) else None
            wants_token = perms == "write-all" or (isinstance(perms, dict) and perms.get("id-token") == "write")
            if not wants_token:
                continue
            granted += 1
            if not any(action(s) == CONFIGURE for s in steps(job)):
                c.fail(f"{wf.name} job {name}", "id-token: write without a configure-aws-credentials step")
    return c.report(f"id-token: write on {granted} jobs, each assuming a role")


def expand(group: str, options: dict[str, list[str]]) -> list[str]:
    """A concurrency group with its `inputs.X` choices expanded; any other expression becomes *."""
    values = [""]
    for i, part in enumerate(EXPR.split(group)):  # literal, expression, literal, …
        if i % 2 == 0:
            values = [v + part for v in values]
            continue
        key = re.fullmatch(r"(?:github\.event\.)?inputs\.(\w+)", part)
        choices = (options.get(key.group(1)) if key else None) or ["*"]
        values = [v + c for v in values for c in choices]
    return values


def may_equal(a: str, b: str) -> bool:
    """Whether two expanded groups (with * for unknown parts) can be the same string."""
    if "*" not in a and "*" not in b:
        return a == b
    if "*" not in b:
        a, b = b, a
    if "*" not in a:
        return re.fullmatch(".*".join(map(re.escape, b.split("*"))), a) is not None
    pa, pb = a.split("*", 1)[0], b.split("*", 1)[0]
    sa, sb = a.rsplit("*", 1)[1], b.rsplit("*", 1)[1]
    return (pa.startswith(pb) or pb.startswith(pa)) and (sa.endswith(sb) or sb.endswith(sa))


def job_group(job: dict) -> tuple[str | None, bool]:
    conc = job.get("concurrency")
    if isinstance(conc, str):
        return conc, False
    if isinstance(conc, dict):
        return conc.get("group"), str(conc.get("cancel-in-progress", "false")) != "false"
    return None, False


def check_concurrency(flows: list[Workflow]) -> bool:
    c = Check("deploy and rollback jobs: job-level concurrency, no cancel-in-progress, rollback apart from the deploy groups")
    deploys: list[tuple[str, str]] = []  # (where, expanded group) of release.yml's promote jobs
    rollbacks: list[tuple[str, str]] = []
    for wf in flows:
        for name, job in wf.jobs().items():
            cmds = {cmd for _, cmd in bluegreen_commands(job)} if isinstance(job, dict) else set()
            if not cmds:
                continue
            where = f"{wf.name} job {name}"
            group, cancels = job_group(job)
            if not group:
                c.fail(where, f"runs bluegreen {'/'.join(sorted(cmds))} without a job-level concurrency group")
                continue
            if cancels:
                c.fail(where, "cancel-in-progress would kill a rollout mid-way: leave it false")
            expanded = [(where, g) for g in expand(group, wf.dispatch_options())]
            if "rollback" in cmds:
                rollbacks += expanded
            if cmds & DEPLOYS and wf.name == "release.yml":
                deploys += expanded
    if not deploys:
        c.fail("release.yml", "no job runs bluegreen promote")
    if not rollbacks:
        c.fail("workflows", "no job runs bluegreen rollback")
    for rwhere, r in rollbacks:
        for dwhere, d in deploys:
            if may_equal(r, d):
                c.fail(rwhere, f"concurrency group {r!r} can be {dwhere}'s {d!r}: a rollback would wait for the promote it should stop")
    groups = sorted({g for _, g in deploys}) + sorted({g for _, g in rollbacks})
    return c.report(", ".join(groups))


def check_session_length(flows: list[Workflow]) -> bool:
    c = Check("role-duration-seconds on every job that runs bluegreen promote, continue or rollback")
    count = 0
    for wf in flows:
        for name, job in wf.jobs().items():
            cmds = bluegreen_commands(job) if isinstance(job, dict) else []
            if not cmds:
                continue
            count += 1
            where = f"{wf.name} job {name}"
            first = min(i for i, _ in cmds)
            configure = [(i, s) for i, s in enumerate(steps(job)) if action(s) == CONFIGURE]
            if not configure:
                c.fail(where, "runs bluegreen but configures no AWS credentials to size")
                continue
            for i, s in configure:
                seconds = str((s.get("with") or {}).get("role-duration-seconds", "")).strip()
                if not seconds:
                    c.fail(where, f"step {i + 1} (configure-aws-credentials) has no role-duration-seconds: the session ends after 1 h")
                if i > first:
                    c.fail(where, f"step {i + 1} configures credentials after bluegreen runs in step {first + 1}")
    return c.report(f"{count} jobs")


def main(argv: list[str]) -> int:
    folder = Path(argv[1]) if len(argv) > 1 else ROOT / ".github" / "workflows"
    flows = load(folder)
    if not flows:
        print(f"FAIL no workflows in {folder}")
        return 1
    results = [
        check_pinned(flows),
        check_no_branches(flows),
        check_permissions(flows),
        check_concurrency(flows),
        check_session_length(flows),
    ]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
