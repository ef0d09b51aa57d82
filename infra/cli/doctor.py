"""``backbone doctor``: says what is wrong with this machine's setup and how to fix it."""

from __future__ import annotations

import json
import shutil
import urllib.request
from dataclasses import asdict, dataclass

import click

from infra.cli._app import EXIT_FAILED, emit, json_option, main, settings
from infra.errors import PrerequisiteError
from infra.kafka.broker import MIN_JAVA, find_java, metadata_ok


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _java_check() -> Check:
    try:
        return Check("java", True, f"{find_java()} (>= {MIN_JAVA})")
    except PrerequisiteError as exc:
        return Check("java", False, str(exc), "install OpenJDK 17+")


def _kafka_check() -> Check:
    cfg = settings()
    if metadata_ok(cfg.kafka, timeout=3.0):
        return Check("kafka", True, f"{cfg.kafka.bootstrap} answers metadata requests")
    fix = (
        "check BACKBONE_KAFKA_BOOTSTRAP and that the cluster is reachable from here"
        if cfg.external_kafka
        else "start the local broker: `backbone kafka up` (or `make run`)"
    )
    return Check("kafka", False, f"{cfg.kafka.bootstrap} did not answer within 3 s", fix)


def _registry_check() -> Check:
    cfg = settings()
    url = cfg.registry.url.rstrip("/")
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=3.0) as response:
            subjects = json.loads(response.read())
        return Check("registry", True, f"{url} answers ({len(subjects)} subjects)")
    except (OSError, ValueError) as exc:
        fix = (
            "check BACKBONE_SCHEMA_REGISTRY_URL and that the registry is reachable from here"
            if cfg.external_registry
            else "start ours: `backbone registry` (needs Kafka) or `make run`"
        )
        return Check("registry", False, f"{url}/subjects failed: {exc}", fix)


def run_checks() -> list[Check]:
    mvn = shutil.which("mvn")
    return [
        _java_check(),
        Check(
            "maven",
            mvn is not None,
            mvn or "mvn not on PATH",
            "install Maven (apt-get install maven)",
        ),
        _kafka_check(),
        _registry_check(),
    ]


@main.command()
@json_option
def doctor(as_json: bool) -> None:
    """Check java, maven, the Kafka cluster and the schema registry."""
    checks = run_checks()

    def human() -> None:
        for check in checks:
            mark = click.style("ok  ", fg="green") if check.ok else click.style("FAIL", fg="red")
            click.echo(f"{mark} {check.name:<8} {check.detail}")
            if not check.ok and check.fix:
                click.echo(f"     fix: {check.fix}")

    emit([asdict(c) for c in checks], as_json, human)
    if not all(c.ok for c in checks):
        raise SystemExit(EXIT_FAILED)
