"""`make demo`: the whole release story on one machine, with real traffic.

Starts the local AWS stand-in, seeds four releases into preprod's registry (v1.1.0 live everywhere,
v1.2.0 good, v1.2.1 bad: its /health answers 500, v1.2.2 bad: 5% of its answers are 500 while its
/health is fine), creates preprod (one region) and prod (three regions in two waves, another
account) from tools/demo/environments, starts users' traffic against every ALB, then runs bluegreen
as an operator would and curls every region's ALB address after each step. Every step checks its exit
code; any surprise stops the demo with a non-zero exit. Everything it started is stopped on exit,
Ctrl-C and SIGTERM included. With --keep the stand-in stays up after the story, for you to try
commands by hand, until Ctrl-C or SIGTERM (exit 0); if it stops by itself meanwhile, the demo exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import threading
import tomllib
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from localaws.launch import Launched  # noqa: E402
ENVS = ROOT / "tools" / "demo" / "environments"
BIN = ROOT / "target" / "debug"
STATE = ROOT / ".state" / "demo"
TTY = sys.stdout.isatty()


def say(msg: str) -> None:
    print(f"\n\033[1m==> {msg}\033[0m" if TTY else f"\n==> {msg}", flush=True)


def note(msg: str) -> None:
    print(f"    {msg}", flush=True)


class Demo:
    def __init__(self, port: int, state: pathlib.Path) -> None:
        self.port = port
        self.state = state
        self.endpoint = ""
        self.standin: Launched | None = None
        self.albs: dict[str, dict[str, str]] = {}
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "BLUEGREEN_AWS_MAX_ATTEMPTS": "2",
        }

    # ---- the stand-in -----------------------------------------------------------------------
    def start(self) -> None:
        shutil.rmtree(self.state / "localaws", ignore_errors=True)
        self.state.mkdir(parents=True, exist_ok=True)
        # --exit-with-parent: should this process be SIGKILLed, the stand-in still stops.
        # ALB metrics in 1-second periods, published a second after they end (AWS: 60 s, and a
        # minute or more), so the traffic analysis judges in seconds; the demo files match.
        self.standin = Launched(str(self.state / "localaws"), str(self.state / "localaws.log"), env=self.env,
                                port=self.port, extra=("--exit-with-parent", "--metric-period", "1",
                                                       "--metric-delay", "1"))
        self.endpoint = self.standin.endpoint
        self.env["AWS_ENDPOINT_URL"] = self.endpoint
        note(f"AWS endpoint {self.endpoint} (moto + real tasks, registries and ALBs)")

    def stop(self) -> None:
        if self.standin:
            self.standin.stop()

    def control(self, path: str, body: dict) -> dict:
        return self.standin.control(path, body, timeout=120)

    def keep(self) -> None:
        """--keep: how to reach the stand-in, then wait for Ctrl-C or SIGTERM (KeyboardInterrupt)."""
        bluegreen = shlex.quote(str(BIN / "bluegreen"))
        envs = shlex.quote(str(ENVS))
        # The config files as for the demo's own commands (/dev/null): nothing in ~/.aws can send them elsewhere.
        exports = {k: self.env[k] for k in ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                             "AWS_EC2_METADATA_DISABLED", "AWS_CONFIG_FILE",
                                             "AWS_SHARED_CREDENTIALS_FILE"]}
        say(f"The stand-in keeps running at {self.endpoint}; try it from another shell (Ctrl-C here stops everything):")
        note("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in exports.items()))
        note(f"{bluegreen} status -e prod --config-dir {envs}")
        note(f"{bluegreen} promote v1.2.0 -e prod --config-dir {envs}")
        note(f"curl http://{self.albs['prod']['eu-west-1']}/   # prod eu-west-1")
        code = self.standin.proc.wait()
        how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
        sys.exit(f"demo: the stand-in stopped by itself ({how}); see {self.standin.log_path}")

    # ---- set-up -------------------------------------------------------------------------------
    def seed(self) -> dict[str, str]:
        images = {}
        for tag, argv, what in [
            ("v1.1.0", [str(BIN / "service")], "the release live everywhere"),
            ("v1.2.0", [str(BIN / "service")], "a good release"),
            ("v1.2.1", [sys.executable, str(ROOT / "tools" / "localaws" / "badapp.py")], "a bad release: /health answers 500"),
            ("v1.2.2", [sys.executable, str(ROOT / "tools" / "localaws" / "badapp.py")],
             "a bad release: /health is fine, 5% of other answers are 500"),
        ]:
            env = {"BAD_MODE": "errors", "ERROR_RATE": "0.05"} if tag == "v1.2.2" else {}
            out = self.control("seed", {"account": "111111111111", "region": "us-east-1", "repository": "hello",
                                        "tag": tag, "argv": argv, "env": env, "layers": 3, "layer_size": 65536,
                                        "platforms": ["linux/amd64", "linux/arm64"]})
            images[tag] = out["image"]
            note(f"hello:{tag} {out['digest'][:19]}  ({what})")
        return images

    def bootstrap(self, env: str, image: str) -> None:
        cfg = tomllib.loads((ENVS / env / "bluegreen.toml").read_text())
        # A region's keys over [defaults], as bluegreen reads them.
        resolved = {r: {**cfg.get("defaults", {}), **own} for r, own in cfg["regions"].items()}
        regions = [{"region": r, "cluster": c["cluster"], "service": c["service"],
                    "load_balancer": c["load_balancer"], "listener_port": c["listener_port"],
                    "test_listener_port": c["test_listener_port"], "blue_target_group": c["blue_target_group"],
                    "green_target_group": c["green_target_group"], "alarms": c.get("alarms", []),
                    "desired_count": 2, "family": c.get("task_family")} for r, c in resolved.items()]
        # The test route's secret: Terraform generates one per environment; the demo makes its own.
        secret = secrets.token_hex(20)
        out = self.control("bootstrap", {"account": cfg["account_id"], "image": image, "app_version": "v1.1.0",
                                         "repository": cfg["target"]["repository"],
                                         "lock_table": {"name": cfg["lock"]["table"], "region": cfg["lock"]["region"]},
                                         "test_traffic": {**cfg["test_traffic"], "value": secret},
                                         "regions": regions})
        self.albs[env] = {r: f"{x['dns_name']}:{resolved[r]['listener_port']}" for r, x in out["regions"].items()}
        note(f"{env}: account {cfg['account_id']}, " + ", ".join(f"{r} ALB {a}" for r, a in self.albs[env].items()))

    # ---- the story ---------------------------------------------------------------------------
    def bluegreen(self, *args: str, expect: int) -> None:
        cmd = [str(BIN / "bluegreen"), *args, "--config-dir", str(ENVS)]
        print(f"$ bluegreen {' '.join(args)}", flush=True)
        code = subprocess.run(cmd, env=self.env, stdin=subprocess.DEVNULL).returncode
        if code != expect:
            sys.exit(f"demo: `bluegreen {' '.join(args)}` exited {code}, expected {expect}")
        note(f"exit code {code}")

    def wait_serving(self, env: str) -> None:
        """Until every region's ALB answers 200 (tasks started, registered, healthy)."""
        for region, addr in self.albs[env].items():
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://{addr}/health", timeout=5) as res:
                        if res.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    sys.exit(f"demo: {env} {region} ({addr}) did not start serving in 60s")
                time.sleep(0.2)

    def decided(self, env: str) -> None:
        """What `history` kept of the newest deployment: the message that decided it."""
        cmd = [str(BIN / "bluegreen"), "history", "-e", env, "--limit", "1", "--output", "json",
               "--config-dir", str(ENVS)]
        out = subprocess.run(cmd, env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"demo: bluegreen history exited {out.returncode}: {out.stderr}")
        latest = json.loads(out.stdout.strip().splitlines()[-1])["deployments"][0]
        message = latest.get("message") or ""
        if "traffic analysis failed" not in message:
            sys.exit(f"demo: the rollback was not the analysis's: {message}")
        if not message.startswith("us-east-1: "):
            sys.exit(f"demo: the analysis did not stop the release in wave 1 (us-east-1): {message}")
        note("what decided it, as `bluegreen history` keeps it (the new colour | the previous one):")
        note(f"  {message}")

    def curl(self, env: str, want: str) -> None:
        for region, addr in self.albs[env].items():
            seen: dict[str, int] = {}
            for _ in range(10):
                with urllib.request.urlopen(f"http://{addr}/", timeout=5) as res:
                    body = json.load(res)
                seen[body["version"]] = seen.get(body["version"], 0) + 1
            answer = ", ".join(f"{v} ×{n}" for v, n in seen.items())
            print(f"$ curl http://{addr}/   # {env} {region}: {answer}", flush=True)
            if list(seen) != [want]:
                sys.exit(f"demo: {env} {region} answered {seen}, expected only {want}")


class Users:
    """Background traffic: threads sending GET / to every ALB back to back, as users would, counting
    the answers per status, so the traffic analysis has real requests on both colours to compare."""

    def __init__(self, albs: dict[str, dict[str, str]], per_alb: int = 2) -> None:
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.answers: dict[int, int] = {}
        self.threads = [threading.Thread(target=self._run, args=(addr,), daemon=True)
                        for regions in albs.values() for addr in regions.values() for _ in range(per_alb)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _run(self, addr: str) -> None:
        while not self.stop_event.is_set():
            try:
                with urllib.request.urlopen(f"http://{addr}/", timeout=5) as res:
                    res.read()
                    status = res.status
            except urllib.error.HTTPError as e:
                status = e.code
            except OSError:
                status = 0
            with self.lock:
                self.answers[status] = self.answers.get(status, 0) + 1

    def take(self) -> dict[int, int]:
        """The answers so far, by status, and a fresh count from here."""
        with self.lock:
            out, self.answers = self.answers, {}
        return out

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keep", action="store_true",
                   help="after the story, keep the stand-in running until Ctrl-C or SIGTERM")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "4566")))
    p.add_argument("--state-dir", type=pathlib.Path, default=STATE,
                   help="the stand-in's state goes to DIR/localaws (wiped first) and its log to DIR/localaws.log "
                        "(default: %(default)s)")
    args = p.parse_args()

    def terminated(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the demo as Ctrl-C does, stand-in included

    signal.signal(signal.SIGTERM, terminated)
    demo = Demo(args.port, args.state_dir.resolve())
    users: Users | None = None
    try:
        say("Starting the local AWS stand-in")
        demo.start()
        say("Seeding four releases into preprod's registry (account 111111111111, us-east-1)")
        images = demo.seed()
        say("Creating preprod and prod as Terraform would, v1.1.0 live everywhere")
        for env in ["preprod", "prod"]:
            demo.bootstrap(env, images["v1.1.0"])
        for env in ["preprod", "prod"]:
            demo.wait_serving(env)
        demo.curl("preprod", "v1.1.0")
        demo.curl("prod", "v1.1.0")
        users = Users(demo.albs)
        users.start()
        note(f"users: {len(users.threads)} clients send GET / to every ALB from now on")

        say("1. Promote v1.2.0 to preprod, then to prod (us-east-1 first, then eu-west-1 and ap-southeast-2)")
        demo.bluegreen("promote", "v1.2.0", "-e", "preprod", expect=0)
        demo.bluegreen("promote", "v1.2.0", "-e", "prod", expect=0)
        say("2. Every region's ALB answers v1.2.0")
        demo.curl("preprod", "v1.2.0")
        demo.curl("prod", "v1.2.0")

        say("3. Promote the bad v1.2.1 to prod: the gate catches it in wave 1")
        demo.bluegreen("promote", "v1.2.1", "-e", "prod", expect=3)
        note("exit 3 = the deployment failed and every region it touched is back on its previous release;")
        note("wave 2 (eu-west-1, ap-southeast-2) was never touched.")
        demo.curl("prod", "v1.2.0")

        say("4. Promote v1.2.2 to prod: /health is fine, but 5% of users' requests get 500;")
        note("the traffic analysis compares green with blue on the same traffic and rolls it back in wave 1")
        users.take()
        demo.bluegreen("promote", "v1.2.2", "-e", "prod", expect=3)
        seen = users.take()
        note("users' answers during it: " + ", ".join(f"HTTP {k} ×{v}" for k, v in sorted(seen.items())))
        demo.decided("prod")
        demo.curl("prod", "v1.2.0")

        say("5. Roll prod back to the release before v1.2.0")
        demo.bluegreen("rollback", "-e", "prod", expect=0)
        demo.curl("prod", "v1.1.0")

        say("6. What happened, and what runs where")
        demo.bluegreen("history", "-e", "prod", expect=0)
        demo.bluegreen("status", "-e", "prod", expect=0)
        say("Done: every step behaved as expected")

        if args.keep:
            try:
                demo.keep()
            except KeyboardInterrupt:
                print("\nstopping the stand-in", flush=True)
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", flush=True)
        return 130
    finally:
        if users:
            users.stop()
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())
