"""Application keys: what the gateway shares with its routes and with extensions."""

from __future__ import annotations

from aiohttp import web

from connectors.gateway.settings import GatewaySettings
from streams.producer import Publisher
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

SETTINGS = web.AppKey("backbone.gateway_settings", GatewaySettings)
KAFKA = web.AppKey("backbone.kafka", KafkaSettings)
REGISTRY = web.AppKey("backbone.registry", RegistrySettings)
CATALOGUE = web.AppKey("backbone.catalogue", Catalogue)
#: Started by the gateway's cleanup context; available to handlers (not while building the app).
PUBLISHER = web.AppKey("backbone.publisher", Publisher)
REGISTRY_CLIENT = web.AppKey("backbone.registry_client", RegistryClient)
#: OpenAPI path items extensions add to ``/openapi.json`` (``{path: path item}``).
OPENAPI_PATHS = web.AppKey("backbone.openapi_paths", dict)
