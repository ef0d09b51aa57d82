from __future__ import annotations

from infra.config import load_settings
from infra.registry import ExternalRegistry, RegistryServer, registry_service


def test_our_registry_by_default_on_the_configured_port() -> None:
    settings = load_settings({"BACKBONE_REGISTRY_PORT": "18081", "BACKBONE_TOPIC_PREFIX": "dev."})
    assert not settings.external_registry
    assert settings.registry.url == "http://127.0.0.1:18081"
    service = registry_service(settings)
    assert isinstance(service, RegistryServer)
    assert service.port == 18081
    assert service.topic == "dev._schemas"


def test_a_configured_registry_is_used_not_started() -> None:
    settings = load_settings(
        {
            "BACKBONE_SCHEMA_REGISTRY_URL": "https://sr.example:443",
            "BACKBONE_SCHEMA_REGISTRY_USER": "key",
            "BACKBONE_SCHEMA_REGISTRY_PASSWORD": "s3cret",
        }
    )
    assert settings.external_registry
    assert settings.registry.username == "key"
    assert settings.registry.password is not None
    assert settings.registry.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    service = registry_service(settings)
    assert isinstance(service, ExternalRegistry)
    assert "sr.example" in service.describe()
