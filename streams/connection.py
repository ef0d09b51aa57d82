"""How every Kafka client Backbone creates connects: one function, so TLS and SASL settings reach
producers, consumers and admin clients alike (Faust gets the same through
:func:`agents.app.faust_credentials`)."""

from __future__ import annotations

import ssl
from typing import Any

from streams.errors import ConfigurationError
from streams.settings import KafkaSettings


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """A client TLS context from the CA and client certificate files (system CAs by default)."""
    try:
        context = ssl.create_default_context(
            cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None
        )
        if kafka.ssl_certfile is not None and kafka.ssl_keyfile is not None:
            context.load_cert_chain(str(kafka.ssl_certfile), str(kafka.ssl_keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the Kafka TLS files: {exc}") from exc
    return context


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and
    ``AIOKafkaAdminClient``: where the cluster is and how to authenticate to it."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.uses_tls:
        options["ssl_context"] = ssl_context(kafka)
    if kafka.uses_sasl:
        assert kafka.sasl_password is not None  # KafkaSettings checks it
        options.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=kafka.sasl_password.get_secret_value(),
        )
    return options
