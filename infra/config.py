"""Configuration: the one place that reads the environment (``BACKBONE_*``) and the config file.

Precedence: environment variables > the TOML file named by ``BACKBONE_CONFIG`` > defaults.
Nothing here runs at import time; call :func:`load_settings`.

=================================  ===============================================================
variable                           meaning
=================================  ===============================================================
BACKBONE_KAFKA_BOOTSTRAP           use this cluster instead of starting the local broker
BACKBONE_KAFKA_PORT                port of the local broker (default 9092)
BACKBONE_KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL
BACKBONE_KAFKA_SASL_MECHANISM      PLAIN (default), SCRAM-SHA-256 or SCRAM-SHA-512
BACKBONE_KAFKA_SASL_USERNAME       SASL user (with a SASL_* protocol)
BACKBONE_KAFKA_SASL_PASSWORD       SASL password
BACKBONE_KAFKA_SSL_CAFILE          CA bundle that signed the brokers' certificates (default: system)
BACKBONE_KAFKA_SSL_CERTFILE        client certificate for mutual TLS (with the key below)
BACKBONE_KAFKA_SSL_KEYFILE         its private key
BACKBONE_KAFKA_REPLICATION_FACTOR  replication of topics we create (default min(3, brokers))
BACKBONE_TOPIC_PREFIX              prefix for every catalogue topic (default none)
BACKBONE_SCHEMA_REGISTRY_URL       use this Confluent-compatible registry instead of ours
BACKBONE_SCHEMA_REGISTRY_USER      basic-auth user of that registry (hosted registries)
BACKBONE_SCHEMA_REGISTRY_PASSWORD  basic-auth password of that registry
BACKBONE_REGISTRY_PORT             port `backbone up` / `backbone registry` serve ours on (8081)
BACKBONE_CACHE_DIR                 where the Kafka jars are cached (default ~/.cache/backbone)
BACKBONE_STATE_DIR                 where `backbone kafka up` keeps its broker (default .backbone)
BACKBONE_GATEWAY_HOST              where the HTTP gateway listens (default 127.0.0.1)
BACKBONE_GATEWAY_PORT              its port (default 8080)
BACKBONE_GATEWAY_TOKENS            bearer tokens per client: ``client=token,client2=token2``
BACKBONE_GATEWAY_GRANTS            internal event types a client may write besides the public ones:
                                   ``ops=call.started|monitoring.*,admin=*`` (default: none)
BACKBONE_GATEWAY_RATE              requests per second per client (default 200)
BACKBONE_GATEWAY_BURST             requests a client may burst above the rate (default 400)
BACKBONE_GATEWAY_MAX_BODY          largest JSON body in bytes (default 1 MiB)
BACKBONE_GATEWAY_MAX_BATCH         largest NDJSON batch body in bytes (default 8 MiB)
BACKBONE_GATEWAY_PUBLISH_TIMEOUT   seconds to wait for Kafka's ack before answering 503 (10)
BACKBONE_GATEWAY_LINGER_MS         linger of the gateway's producers, /v1/calls and /webhooks too (default 0 ms)
BACKBONE_GATEWAY_WORKERS           gateway processes sharing its port (SO_REUSEPORT; default 1)
BACKBONE_GATEWAY_EVENT_LOOP        ``uvloop`` (default) or ``asyncio``, for `backbone gateway`
BACKBONE_SERVICE_<NAME>_API_KEY    API key of external service <name> ([[calls.services]])
BACKBONE_CONFIG                    a TOML file with the same keys, in lower case without prefix
BACKBONE_WEBHOOK_SOURCES           inbound webhook sources as JSON:
                                   ``{"github": {"scheme": "github", "secrets": ["..."]}}``
BACKBONE_WEBHOOK_ALLOW_NETWORKS    CIDRs outbound deliveries may reach despite the SSRF guard
                                   (comma-separated; for local demos and tests only)
BACKBONE_WEBHOOK_RETRY_DELAYS      outbound retry delays in seconds, comma-separated
                                   (default Svix's 5,300,1800,7200,18000,36000,36000)
BACKBONE_WS_JWT_KEY                key verifying websocket tokens (HMAC secret or PEM public key);
                                   unset: every ``/ws`` connection is refused (4001)
BACKBONE_WS_JWT_SIGNING_KEY        key `backbone ws token` signs with, if not BACKBONE_WS_JWT_KEY
BACKBONE_WS_JWT_ALGORITHMS         accepted token algorithms, comma-separated (default HS256)
BACKBONE_WS_ALLOWED_ORIGINS        ``Origin`` values allowed on ``/ws``, comma-separated, or ``*``
                                   (default http://127.0.0.1:8080,http://localhost:8080)
BACKBONE_WS_AUTH_TIMEOUT           seconds a connection has to authenticate (default 10)
BACKBONE_WS_MAX_CONNECTIONS_PER_TOKEN  open connections per token (default 16)
BACKBONE_ALERTS_RULES              alert rules as a JSON list of ``[[alerts.rules]]`` tables
                                   (replaces the defaults; see agents.alerts.rules)
BACKBONE_ALERTS_LOOKBACK_S         seconds of windows the evaluator re-reads on start (10800)
BACKBONE_LEDGER_WINDOW             the call ledger's dedupe window in seconds (default 2592000,
                                   30 days: the calls topics' retention)
BACKBONE_LEDGER_DIR                where the call ledger's store lives (default <state dir>/ledger)
BACKBONE_WORKER_EVENT_LOOP         ``uvloop`` or ``asyncio`` (default), for `backbone worker`
=================================  ===============================================================

Alert rules live under ``[[alerts.rules]]`` (fields of :class:`agents.alerts.rules.AlertRule`).

In the TOML file, webhooks live under ``[webhooks.ingress]`` / ``[webhooks.ingress.sources.NAME]``
and ``[webhooks.delivery]`` (fields of :class:`connectors.webhooks.settings.WebhookSettings`);
projections under ``[projections]`` (:class:`agents.projections.settings.ProjectionSettings`);
websocket settings under ``[realtime]`` (:class:`connectors.realtime.settings.RealtimeSettings`).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from agents.alerts.rules import AlertSettings
from agents.projections.settings import ProjectionSettings
from agents.settings import WorkerSettings
from connectors.gateway.settings import GatewaySettings
from connectors.realtime.settings import RealtimeSettings
from connectors.webhooks.settings import WebhookSettings
from streams.errors import ConfigurationError
from streams.settings import KafkaSettings, RegistrySettings


class LocalStackSettings(BaseModel):
    """How `backbone up` / `backbone kafka up` run things on this machine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka_port: int = 9092
    kafka_heap: str = "512m"
    registry_port: int = 8081
    state_dir: Path = Path(".backbone")


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka: KafkaSettings = KafkaSettings()
    registry: RegistrySettings = RegistrySettings()
    local: LocalStackSettings = LocalStackSettings()
    gateway: GatewaySettings = GatewaySettings()
    webhooks: WebhookSettings = WebhookSettings()
    #: The websocket fan-out on the gateway (``GET /ws``): tokens, origins, per-connection caps.
    realtime: RealtimeSettings = RealtimeSettings()
    #: The call worker and the external services it calls (``[calls]``, ``[[calls.services]]``).
    calls: WorkerSettings = WorkerSettings()
    #: Alert rules and the evaluator (``[alerts]``, ``[[alerts.rules]]``).
    alerts: AlertSettings = AlertSettings()
    #: Projections and their local stores (``[projections]``).
    projections: ProjectionSettings = ProjectionSettings()
    #: True when BACKBONE_KAFKA_BOOTSTRAP names a cluster we must not start ourselves.
    external_kafka: bool = False
    #: True when BACKBONE_SCHEMA_REGISTRY_URL names a registry, so `backbone up` does not run ours.
    external_registry: bool = False


_ENV: dict[str, tuple[str, str]] = {
    "BACKBONE_KAFKA_BOOTSTRAP": ("kafka", "bootstrap"),
    "BACKBONE_KAFKA_SECURITY_PROTOCOL": ("kafka", "security_protocol"),
    "BACKBONE_KAFKA_SASL_MECHANISM": ("kafka", "sasl_mechanism"),
    "BACKBONE_KAFKA_SASL_USERNAME": ("kafka", "sasl_username"),
    "BACKBONE_KAFKA_SASL_PASSWORD": ("kafka", "sasl_password"),
    "BACKBONE_KAFKA_SSL_CAFILE": ("kafka", "ssl_cafile"),
    "BACKBONE_KAFKA_SSL_CERTFILE": ("kafka", "ssl_certfile"),
    "BACKBONE_KAFKA_SSL_KEYFILE": ("kafka", "ssl_keyfile"),
    "BACKBONE_KAFKA_REPLICATION_FACTOR": ("kafka", "replication_factor"),
    "BACKBONE_TOPIC_PREFIX": ("kafka", "topic_prefix"),
    "BACKBONE_SCHEMA_REGISTRY_URL": ("registry", "url"),
    "BACKBONE_SCHEMA_REGISTRY_USER": ("registry", "username"),
    "BACKBONE_SCHEMA_REGISTRY_PASSWORD": ("registry", "password"),
    "BACKBONE_KAFKA_PORT": ("local", "kafka_port"),
    "BACKBONE_KAFKA_HEAP": ("local", "kafka_heap"),
    "BACKBONE_REGISTRY_PORT": ("local", "registry_port"),
    "BACKBONE_STATE_DIR": ("local", "state_dir"),
    "BACKBONE_GATEWAY_HOST": ("gateway", "host"),
    "BACKBONE_GATEWAY_PORT": ("gateway", "port"),
    "BACKBONE_GATEWAY_TOKENS": ("gateway", "tokens"),
    "BACKBONE_GATEWAY_GRANTS": ("gateway", "grants"),
    "BACKBONE_GATEWAY_RATE": ("gateway", "rate_per_s"),
    "BACKBONE_GATEWAY_BURST": ("gateway", "burst"),
    "BACKBONE_GATEWAY_MAX_BODY": ("gateway", "max_body_bytes"),
    "BACKBONE_GATEWAY_MAX_BATCH": ("gateway", "max_batch_bytes"),
    "BACKBONE_GATEWAY_PUBLISH_TIMEOUT": ("gateway", "publish_timeout_s"),
    "BACKBONE_GATEWAY_LINGER_MS": ("gateway", "linger_ms"),
    "BACKBONE_GATEWAY_WORKERS": ("gateway", "workers"),
    "BACKBONE_GATEWAY_EVENT_LOOP": ("gateway", "event_loop"),
    "BACKBONE_WS_JWT_KEY": ("realtime", "jwt_key"),
    "BACKBONE_WS_JWT_SIGNING_KEY": ("realtime", "jwt_signing_key"),
    "BACKBONE_WS_JWT_ALGORITHMS": ("realtime", "jwt_algorithms"),
    "BACKBONE_WS_ALLOWED_ORIGINS": ("realtime", "allowed_origins"),
    "BACKBONE_WS_AUTH_TIMEOUT": ("realtime", "auth_timeout_s"),
    "BACKBONE_WS_MAX_CONNECTIONS_PER_TOKEN": ("realtime", "max_connections_per_token"),
    "BACKBONE_ALERTS_LOOKBACK_S": ("alerts", "lookback_s"),
    "BACKBONE_LEDGER_WINDOW": ("calls", "ledger_window_s"),
    "BACKBONE_LEDGER_DIR": ("calls", "ledger_dir"),
    "BACKBONE_WORKER_EVENT_LOOP": ("calls", "event_loop"),
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    tree: dict[str, dict[str, Any]] = {
        "kafka": {},
        "registry": {},
        "local": {},
        "gateway": {},
        "webhooks": {},
        "calls": {},
        "realtime": {},
        "alerts": {},
        "projections": {},
    }
    if path := env.get("BACKBONE_CONFIG"):
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read BACKBONE_CONFIG={path}: {exc}") from exc
        for section, values in data.items():
            if section not in tree or not isinstance(values, dict):
                raise ConfigurationError(f"{path}: unknown section [{section}]")
            tree[section].update(values)
    for var, (section, key) in _ENV.items():
        if var in env:
            tree[section][key] = env[var]
    _webhooks_from_env(env, tree["webhooks"])
    _service_secrets(env, tree["calls"])
    if raw := env.get("BACKBONE_ALERTS_RULES"):
        try:
            tree["alerts"]["rules"] = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(f"BACKBONE_ALERTS_RULES is not JSON: {exc}") from exc
    # projection stores live under the stack's state dir unless placed elsewhere
    state_dir = Path(str(tree["local"].get("state_dir", ".backbone")))
    tree["projections"].setdefault("store_dir", str(state_dir / "projections"))
    tree["calls"].setdefault("ledger_dir", str(state_dir / "ledger"))
    tree["webhooks"].setdefault("ingress", {}).setdefault("seen_dir", str(state_dir / "webhooks"))
    external = "bootstrap" in tree["kafka"]
    if not external:
        tree["kafka"]["bootstrap"] = f"127.0.0.1:{tree['local'].get('kafka_port', 9092)}"
    external_registry = "url" in tree["registry"]
    if not external_registry:
        tree["registry"]["url"] = f"http://127.0.0.1:{tree['local'].get('registry_port', 8081)}"
    try:
        return Settings(**tree, external_kafka=external, external_registry=external_registry)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}".removeprefix(": ")
            for e in exc.errors(include_url=False)
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from exc


def _webhooks_from_env(env: Mapping[str, str], tree: dict[str, Any]) -> None:
    ingress = tree.setdefault("ingress", {})
    delivery = tree.setdefault("delivery", {})
    if raw := env.get("BACKBONE_WEBHOOK_SOURCES"):
        try:
            ingress["sources"] = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(f"BACKBONE_WEBHOOK_SOURCES is not JSON: {exc}") from exc
    if raw := env.get("BACKBONE_WEBHOOK_ALLOW_NETWORKS"):
        delivery["allow_networks"] = tuple(n.strip() for n in raw.split(",") if n.strip())
    if raw := env.get("BACKBONE_WEBHOOK_RETRY_DELAYS"):
        try:
            delivery["retry_delays_s"] = tuple(float(d) for d in raw.split(",") if d.strip())
        except ValueError as exc:
            raise ConfigurationError(f"BACKBONE_WEBHOOK_RETRY_DELAYS: {exc}") from exc


def _service_secrets(env: Mapping[str, str], calls: dict[str, Any]) -> None:
    """``BACKBONE_SERVICE_<NAME>_API_KEY`` sets the key of service <name> (``-``/``.`` as ``_``)."""
    services = calls.get("services") or []
    if not isinstance(services, list):
        raise ConfigurationError("[calls] services must be a list of tables ([[calls.services]])")
    for service in services:
        if not isinstance(service, dict) or "name" not in service:
            raise ConfigurationError("every [[calls.services]] entry needs a name")
        var = (
            "BACKBONE_SERVICE_"
            + re.sub(r"[^A-Za-z0-9]", "_", str(service["name"])).upper()
            + "_API_KEY"
        )
        if var in env:
            service["api_key"] = env[var]
