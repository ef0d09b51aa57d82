"""Errors raised by the ``streams`` library.

Hierarchy::

    BackboneError                  root of every error Backbone raises
    ├── ConfigurationError         bad or missing settings (never retriable)
    ├── KafkaUnavailableError      the cluster cannot be reached or did not acknowledge (retriable)
    ├── PublishRejectedError       the cluster refused a record for good (e.g. too large)
    ├── OffsetCommitError          a consumer lost its partitions before committing (redelivered)
    └── TopicCatalogueError        a topic is unknown or cannot be aligned with the catalogue

Retry behaviour is data on the class: code that decides between retry and dead letter reads
``error.retriable`` instead of chaining ``isinstance`` checks.
"""

from __future__ import annotations


class BackboneError(Exception):
    """Root of every error Backbone raises."""

    retriable: bool = False
    #: Short machine-readable name used in dead letters and API error bodies.
    code: str = "backbone_error"


class ConfigurationError(BackboneError):
    """A setting is missing or invalid."""

    code = "configuration_error"


class KafkaUnavailableError(BackboneError):
    """The Kafka cluster could not be reached or did not acknowledge a write in time."""

    retriable = True
    code = "kafka_unavailable"


class PublishRejectedError(BackboneError):
    """The cluster refused a record in a way retrying cannot fix (too large, not authorised...)."""

    code = "publish_rejected"


class OffsetCommitError(BackboneError):
    """A commit was refused (the group rebalanced): the records will be delivered again."""

    code = "offset_commit_failed"


class TopicCatalogueError(BackboneError):
    """A topic is not in the catalogue, or the cluster cannot be aligned with it."""

    code = "topic_catalogue_error"
