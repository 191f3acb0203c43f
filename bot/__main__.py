"""incidentbot command line: run | migrate | playbooks validate/import | rbac | sudoers | send-test-alert | sandbox."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from bot.core.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="incidentbot",
        description="Slack incident bot: Alertmanager/PagerDuty in, incident channels, runbooks and approved remediation out.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="run the bot (HTTP server, workers, timers); applies migrations first")
    sub.add_parser("migrate", help="apply pending database migrations and exit")

    playbooks = sub.add_parser("playbooks", help="validate or import playbooks")
    pb_sub = playbooks.add_subparsers(dest="playbooks_command", required=True, metavar="ACTION")
    validate = pb_sub.add_parser("validate", help="validate every playbook and policy.yaml in DIR")
    validate.add_argument("dir", nargs="?", help="playbooks directory (default: PLAYBOOKS_DIR or bundled)")
    imp = pb_sub.add_parser("import", help="turn a markdown runbook into draft playbooks")
    imp.add_argument("runbook", help="markdown runbook file")
    imp.add_argument("-o", "--output", help="write YAML here instead of standard output")

    from bot.tools.rbac import add_parser as add_rbac_parser

    add_rbac_parser(sub)

    from bot.tools.sudoers import add_parser as add_sudoers_parser

    add_sudoers_parser(sub)

    alert = sub.add_parser("send-test-alert", help="post a realistic Alertmanager webhook to a running bot")
    alert.add_argument("alertname")
    alert.add_argument("--url", default=None, help="bot base URL (default http://127.0.0.1:HTTP_PORT)")
    alert.add_argument("--label", action="append", default=[], metavar="K=V", help="extra label (repeatable)")
    alert.add_argument("--resolve", action="store_true", help="send the alert as resolved")
    alert.add_argument("--token", default=None, help="bearer token (default ALERTMANAGER_WEBHOOK_TOKEN)")
    alert.add_argument(
        "--starts-at",
        default=None,
        help="alert start, ISO 8601 (default: the start of the current hour, so a later --resolve matches)",
    )

    sandbox = sub.add_parser("sandbox", help="run the bot against local sandbox Slack/Kubernetes/PagerDuty")
    sandbox.add_argument("--port", type=int, default=8080, help="bot HTTP port (default 8080)")
    sandbox.add_argument("--no-demo", action="store_true", help="do not fire the sample alerts")
    sandbox.add_argument(
        "--web-port",
        type=int,
        default=8090,
        help="web view port on 127.0.0.1 (default 8090; 0 = any free port)",
    )
    sandbox.add_argument("--exit-after-demo", action="store_true", help="stop once the demo story has played")
    return parser


async def _run() -> None:
    from bot.app import build
    from bot.config.settings import load_settings
    from bot.obs import logs
    from bot.obs.runtime import tune_gc

    settings = load_settings()
    logs.configure(settings.log_format)
    server = await build(settings)
    await server.start()
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


async def _migrate() -> None:
    from bot.app import migrate
    from bot.config.settings import load_settings

    applied = await migrate(load_settings(http_mode_required=False))
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))


def _send_test_alert(args: argparse.Namespace) -> int:
    from bot.config.settings import load_settings
    from bot.tools.testalert import build_payload

    labels: dict[str, str] = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--label must look like key=value, got {item!r}")
        labels[key] = value
    token = args.token
    url = args.url
    if token is None or url is None:
        settings = load_settings(http_mode_required=False)
        token = token or settings.alertmanager_webhook_token.get_secret_value()
        url = url or f"http://127.0.0.1:{settings.http_port}"
    now = datetime.now(UTC)
    if args.starts_at:
        try:
            starts_at = datetime.fromisoformat(args.starts_at.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"--starts-at must be ISO 8601, got {args.starts_at!r}") from None
        if starts_at.tzinfo is None:
            starts_at = starts_at.replace(tzinfo=UTC)
    else:
        starts_at = now.replace(minute=0, second=0, microsecond=0)
    payload = build_payload(args.alertname, labels, resolve=args.resolve, starts_at=starts_at, now=now)
    request = urllib.request.Request(
        url.rstrip("/") + "/webhooks/alertmanager",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(f"{response.status} {response.read().decode()}")
            return 0
    except urllib.error.HTTPError as exc:
        print(f"{exc.code} {exc.read().decode()}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        raise ConfigError(f"cannot reach the bot at {url}: {exc.reason}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            asyncio.run(_run())
            return 0
        if args.command == "migrate":
            asyncio.run(_migrate())
            return 0
        if args.command == "send-test-alert":
            return _send_test_alert(args)
        if args.command == "playbooks":
            from bot.tools.playbooks_cli import run_playbooks_command

            return int(run_playbooks_command(args))
        if args.command == "rbac":
            from bot.tools.rbac import run as run_rbac

            return run_rbac(args)
        if args.command == "sudoers":
            from bot.tools.sudoers import run as run_sudoers

            return run_sudoers(args)
        if args.command == "sandbox":
            run_sandbox = _sandbox_runner()
            return int(
                run_sandbox(
                    port=args.port,
                    demo=not args.no_demo,
                    exit_after_demo=args.exit_after_demo,
                    web_port=args.web_port,
                )
            )
    except ConfigError as exc:
        print(f"incidentbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1


def _sandbox_runner() -> Callable[..., int]:
    """The sandbox lives in a checkout of the repository, not in the production image."""
    try:
        from sandbox.runner import run_sandbox
    except ModuleNotFoundError as exc:
        if exc.name not in ("sandbox", "sandbox.runner"):
            raise
        raise ConfigError(
            "the sandbox is not part of this installation; run `make sandbox` in a checkout of the repository"
        ) from None
    return run_sandbox


if __name__ == "__main__":
    sys.exit(main())
