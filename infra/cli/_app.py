"""The root ``backbone`` group: lazy command loading and the one error-reporting path.

Exit codes (every command)::

    0    success
    1    the operation failed, or a check found a problem
    2    bad usage: unknown option, unknown name (topic, event type, group, endpoint), bad value
    3    Kafka (or the schema registry) is unreachable
    130  interrupted (Ctrl-C)

Errors are printed as one line, ``error: <what> (<how to fix>)``, on stderr; a traceback is only
shown with ``backbone --debug`` (or ``BACKBONE_DEBUG=1``).

Importing this module costs only ``click``: each command's module is imported when that command
runs, so ``backbone --help`` and simple commands do not pay for Kafka, Avro or Faust.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from infra.config import Settings

T = TypeVar("T")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

#: command name -> (module that registers it on ``main``, its one-line help for ``--help``).
#: ``tests/unit/test_cli_app.py`` checks each summary against the command's own docstring.
COMMANDS: dict[str, tuple[str, str]] = {
    "alerts": (
        "infra.cli.alerts",
        "Alerts raised from the integration metrics, and the rules behind them.",
    ),
    "calls": ("infra.cli.calls", "A call's state, read from the log."),
    "dlq": ("infra.cli.calls", "Dead letters of external calls: list, show, re-drive."),
    "doctor": ("infra.cli.doctor", "Check java, maven, the Kafka cluster and the schema registry."),
    "gateway": (
        "infra.cli.gateway",
        "Run the HTTP gateway against the configured cluster and registry; Ctrl-C stops it.",
    ),
    "groups": ("infra.cli.events", "Consumer groups: list, describe (with lag), reset."),
    "kafka": (
        "infra.cli.kafka",
        "The local Kafka broker (fetched from Maven Central, run with java).",
    ),
    "plugins": (
        "infra.cli.plugins",
        "Third-party plugins: install (validated in a sandbox process), list, remove.",
    ),
    "produce": (
        "infra.cli.events",
        "Publish EVENT_TYPE events; each line is validated against the event model first.",
    ),
    "projections": (
        "infra.cli.projections",
        "Read models kept from the log, with durable checkpointed state (docs/monitoring.md).",
    ),
    "registry": (
        "infra.cli.registry",
        "Serve the schema registry REST API; schemas are stored in the `_schemas` topic.",
    ),
    "replay": (
        "infra.cli.replay",
        "Copy a slice of a topic into another, keeping keys and timestamps; resumable.",
    ),
    "report": (
        "infra.cli.report",
        "A performance report per service and model, with trends and recommendations.",
    ),
    "schemas": (
        "infra.cli.schemas",
        "The event contract: .avsc files, drift check, evolution gate.",
    ),
    "tail": ("infra.cli.events", "Print TOPIC's records, decoded; like `kcat -C`."),
    "topics": (
        "infra.cli.topics",
        "The topic catalogue, and the topics' live state in the cluster.",
    ),
    "up": (
        "infra.cli.stack",
        "Start the local stack (broker, topics and services); Ctrl-C stops it all.",
    ),
    "webhooks": ("infra.cli.webhooks", "Outbound webhooks: endpoints, recovery, delivery history."),
    "ws": ("infra.cli.ws", "The websocket fan-out (GET /ws): tokens for development."),
    "worker": (
        "infra.cli.calls",
        "Run the call agents (router, priority lanes, executor, retry tiers) until Ctrl-C / SIGTERM.",
    ),
}

#: Longest summary shown by ``--help`` (click's default of 45 cuts sentences short).
SUMMARY_LIMIT = 120

#: Commands that run services: their logging is the stack's (infra), not silenced here.
SERVICE_COMMANDS = frozenset({"up", "worker", "gateway", "registry"})

#: Libraries whose log lines are noise in a command's output (they retry, then we report once).
QUIET_LOGGERS = ("aiokafka", "kafka", "aiohttp.client", "asyncio")


class BackboneGroup(click.Group):
    """Loads a command's module on first use and reports every error through :func:`report`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(COMMANDS[cmd_name][0])
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            refuse_unknown("command", name, self.list_commands(ctx))
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        rows += [
            (n, c.get_short_help_str(SUMMARY_LIMIT))
            for n, c in self.commands.items()
            if n not in COMMANDS
        ]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Click's own usage errors are one line too: ``error: ... (see `backbone tail --help`)``."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            hint = ""
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                hint = f" (see `{exc.ctx.command_path} --help`)"
            fail(exc.format_message() + hint, exc.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:
            report(exc)


def debugging() -> bool:
    return os.environ.get("BACKBONE_DEBUG", "") not in ("", "0")


def report(exc: BaseException) -> NoReturn:
    """Print ``exc`` as one line naming the fix and exit with its code (traceback with --debug)."""
    if debugging():
        traceback.print_exception(exc)
    message, code = describe_error(exc)
    fail(message, code)


def describe_error(exc: BaseException) -> tuple[str, int]:
    from infra.errors import CommandLineError
    from streams.errors import BackboneError, KafkaUnavailableError, RegistryUnavailableError

    text = str(exc) or type(exc).__name__
    if isinstance(exc, CommandLineError):
        return text, EXIT_USAGE
    if isinstance(exc, KafkaUnavailableError):
        return f"{text} (is the broker running? `backbone doctor` checks)", EXIT_UNAVAILABLE
    if isinstance(exc, RegistryUnavailableError):
        return (
            f"{text} (is the schema registry running? `backbone doctor` checks)",
            EXIT_UNAVAILABLE,
        )
    if isinstance(exc, BackboneError):
        return text, EXIT_FAILED
    if type(exc).__module__.startswith("aiokafka"):
        name = type(exc).__name__
        detail = text.removeprefix(f"{name}: ").strip()
        if "Connection" in name or "NodeNotReady" in name:
            return (
                f"cannot reach Kafka: {detail} (is the broker running? `backbone doctor` checks)",
                EXIT_UNAVAILABLE,
            )
        return f"Kafka refused the request: {name}: {detail}", EXIT_FAILED
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or text}: {exc.filename}", EXIT_FAILED
    return (
        f"unexpected {type(exc).__name__}: {text} "
        "(a bug in backbone; `backbone --debug ...` shows the traceback)",
        EXIT_FAILED,
    )


def unknown_name(kind: str, name: str, known: Iterable[str]) -> str:
    """``unknown topic 'calls.result'; did you mean 'calls.results'?`` (or the known names)."""
    choices = sorted(set(known))
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    close += [c for c in choices if name and name in c and c not in close][: 3 - len(close)]
    if close:
        return f"unknown {kind} {name!r}; did you mean {' or '.join(map(repr, close))}?"
    if not choices:
        return f"unknown {kind} {name!r} (there are none)"
    shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
    return f"unknown {kind} {name!r}; known: {shown}"


def refuse_unknown(kind: str, name: str, known: Iterable[str]) -> NoReturn:
    from infra.errors import CommandLineError

    raise CommandLineError(unknown_name(kind, name, known))


def _quiet_libraries() -> None:
    """Kafka client log lines never reach a command's output: our error says it once."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.CRITICAL + 1)
        logger.propagate = False


@click.group(cls=BackboneGroup)
@click.option(
    "--debug", is_flag=True, help="Show tracebacks and Kafka client logs (or BACKBONE_DEBUG=1)."
)
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Backbone: event-sourced streaming backbone on Apache Kafka.

    Exit codes: 0 success, 1 failed, 2 bad usage or unknown name, 3 Kafka or registry
    unreachable, 130 interrupted. Errors are one line; --debug shows the traceback.
    """
    ctx.obj = None  # settings are loaded lazily so `--help` never touches the environment
    if debug:
        os.environ["BACKBONE_DEBUG"] = "1"
    if not debugging() and ctx.invoked_subcommand not in SERVICE_COMMANDS:
        _quiet_libraries()


#: What ``backbone version`` reports: ours, then what we are built on.
DISTRIBUTIONS = (
    "backbone-streams",
    "aiokafka",
    "faust-streaming",
    "fastavro",
    "pydantic",
    "aiohttp",
)


@main.command()
def version() -> None:
    """Print the installed versions of Backbone and the libraries it is built on."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    for name in DISTRIBUTIONS:
        try:
            found = installed(name)
        except PackageNotFoundError:
            found = "not installed"
        click.echo(f"{name:<18} {found}")


def settings() -> Settings:
    from infra.config import Settings, load_settings

    ctx = click.get_current_context()
    root = ctx.find_root()
    if root.obj is None:
        root.obj = load_settings()
    assert isinstance(root.obj, Settings)
    return root.obj


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def run(
    coro: Coroutine[Any, Any, T],
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Run a command's coroutine; its errors reach the one reporting path in :class:`BackboneGroup`.
    ``loop_factory``: another event loop (``backbone gateway`` runs on uvloop). A command that arms
    :mod:`infra.shutdown` when it starts to stop exits by the deadline, the Runner's close included."""
    from infra import shutdown

    with shutdown.enabled(), asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coro)


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        human()


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
