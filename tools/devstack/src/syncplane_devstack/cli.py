"""The ``syncplane`` command: run the platform locally, and the operator chores around it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from syncplane_devstack.devjwt import mint_token
from syncplane_devstack.stack import Stack, write_state

DEFAULT_STATE = Path(".state/stack.json")


def _print_urls(state: dict[str, Any]) -> None:
    print("syncplane is up")
    print(f"  gateway   {state['gateway_url']}")
    print(f"  console   {state['console_url']}")
    print(f"  sandbox   {state['sandbox_url'] or '(not started)'}")
    print(f"  nats      {state['nats_url']}")
    print(f"  postgres  {state['database_url']}")
    for name, svc in state["services"].items():
        print(f"  {name:<16} {svc['url']}  pid {svc['pid']}")
    print(f"  state     {state.get('_state_file', '')}")


async def _serve(args: argparse.Namespace) -> int:
    state_file: Path = args.state_file
    state_file.parent.mkdir(parents=True, exist_ok=True)
    stack = Stack.create(with_sandbox=not args.no_sandbox)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        start = asyncio.create_task(stack.start(ready_timeout=args.timeout))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({start, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if start not in done:
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await start
            return 130
        stopper.cancel()
        start.result()
        state = {**stack.state(), "ready": True}
        write_state(state_file, state)
        _print_urls({**state, "_state_file": str(state_file)})
        print("Ctrl-C stops everything.", flush=True)
        await _watch(stack, stop)
        return 0
    except Exception as err:
        print(f"syncplane up failed: {err}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        state_file.unlink(missing_ok=True)  # noqa: ASYNC240 - at exit, nothing else runs
        print("syncplane stopped", flush=True)


async def _watch(stack: Stack, stop: asyncio.Event) -> None:
    """Wait for Ctrl-C; a service that dies takes the stack down rather than limping on."""
    while not stop.is_set():
        for child in stack.children:
            if child.proc.poll() is not None:
                print(
                    f"{child.name} exited with {child.proc.returncode}; see {child.log}",
                    file=sys.stderr,
                )
                return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


def cmd_up(args: argparse.Namespace) -> int:
    if args.detach:
        return _up_detached(args)
    return asyncio.run(_serve(args))


def _up_detached(args: argparse.Namespace) -> int:
    state_file: Path = args.state_file.resolve()
    state_file.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        state_file.unlink()
    log = state_file.with_suffix(".log")
    cmd = [sys.executable, "-m", "syncplane_devstack", "up", "--state-file", str(state_file)]
    cmd += ["--timeout", str(args.timeout)]
    if args.no_sandbox:
        cmd.append("--no-sandbox")
    # A new session: the stack outlives this command and ignores the terminal's Ctrl-C.
    proc = subprocess.Popen(
        cmd,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + args.timeout + 30
    while time.monotonic() < deadline:
        if state_file.exists():
            state = json.loads(state_file.read_text())
            _print_urls({**state, "_state_file": str(state_file)})
            return 0
        if proc.poll() is not None:
            print(f"syncplane up failed; see {log}:\n{log.read_text()[-3000:]}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    proc.terminate()
    print(f"syncplane up timed out; see {log}", file=sys.stderr)
    return 1


def cmd_down(args: argparse.Namespace) -> int:
    state_file: Path = args.state_file
    if not state_file.exists():
        print(f"no running stack: {state_file} does not exist", file=sys.stderr)
        return 1
    state = json.loads(state_file.read_text())
    pid = int(state["supervisor_pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        state_file.unlink(missing_ok=True)
        print("stack was not running; state file removed")
        return 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            print("syncplane stopped")
            return 0
        time.sleep(0.1)
    print(f"stack (pid {pid}) did not stop within {args.timeout}s", file=sys.stderr)
    return 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes: it only waits for its parent to reap it.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def cmd_migrate(args: argparse.Namespace) -> int:
    from syncplane_common.migrations import migrate_all
    from syncplane_common.migrations_registry import service_migrations

    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        print(
            "DATABASE_URL is required (an admin role that may create schemas and roles)",
            file=sys.stderr,
        )
        return 2
    applied = asyncio.run(migrate_all(dsn, service_migrations()))
    for service, names in applied.items():
        print(f"{service}: {', '.join(names) if names else 'up to date'}")
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    from syncplane_common.provision import provision

    url = os.environ.get("NATS_URL")
    if not url:
        print("NATS_URL is required", file=sys.stderr)
        return 2
    report = asyncio.run(provision(url))
    for label in report.created:
        print(f"created   {label}")
    for label in report.updated:
        print(f"updated   {label}")
    for label in report.unchanged:
        print(f"unchanged {label}")
    return 0


def cmd_rotate_keys(_: argparse.Namespace) -> int:
    # token-service owns the key material and the rows; the command runs its code.
    from token_service.cli import main as token_service_main

    return token_service_main(["rotate-keys"])


def cmd_token(args: argparse.Namespace) -> int:
    secret = os.environ.get("API_JWT_SECRET")
    if not secret:
        if not args.state_file.exists():
            print(
                f"no API_JWT_SECRET in the environment and no stack state at {args.state_file}",
                file=sys.stderr,
            )
            return 1
        secret = json.loads(args.state_file.read_text())["dev_secrets"]["API_JWT_SECRET"]
    print(mint_token(secret, args.user, admin=args.admin))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from syncplane_devstack import demo

    return asyncio.run(demo.run(users=args.users))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="syncplane", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the platform (embedded NATS/Postgres unless set)")
    up.add_argument("--detach", action="store_true", help="start in the background and return")
    up.add_argument("--state-file", type=Path, default=DEFAULT_STATE)
    up.add_argument("--no-sandbox", action="store_true", help="do not start the provider sandbox")
    up.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for readiness")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop a stack started with --detach")
    down.add_argument("--state-file", type=Path, default=DEFAULT_STATE)
    down.add_argument("--timeout", type=float, default=60.0)
    down.set_defaults(func=cmd_down)

    mig = sub.add_parser("migrate", help="apply every service's SQL migrations (DATABASE_URL)")
    mig.set_defaults(func=cmd_migrate)

    prov = sub.add_parser("provision", help="create/update streams, consumers, KV (NATS_URL)")
    prov.set_defaults(func=cmd_provision)

    rot = sub.add_parser(
        "rotate-keys",
        help="re-encrypt every stored token under TOKEN_ACTIVE_KEY_ID (DATABASE_URL, TOKEN_KEYS)",
    )
    rot.set_defaults(func=cmd_rotate_keys)

    tok = sub.add_parser("token", help="print an API JWT for the running stack")
    tok.add_argument("--user", required=True)
    tok.add_argument("--admin", action="store_true")
    tok.add_argument("--state-file", type=Path, default=DEFAULT_STATE)
    tok.set_defaults(func=cmd_token)

    demo = sub.add_parser(
        "demo", help="the whole story on embedded servers and the sandbox, then a summary"
    )
    demo.add_argument("--users", type=int, default=20, help="how many users connect")
    demo.set_defaults(func=cmd_demo)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
