"""Errors of projections (part of the :class:`streams.errors.BackboneError` hierarchy).

::

    BackboneError
    └── ProjectionError            a projection could not run
        ├── ApplyFailed            ``apply`` raised on a record: the record is dead-lettered
        ├── RestoreFailed          the changelog could not be read back into the store (retriable)
        └── CheckpointFailed       a checkpoint's transaction did not complete in time (retriable):
                                   the runner is replaced, its batch applied again from the store
"""

from __future__ import annotations

from streams.errors import BackboneError


class ProjectionError(BackboneError):
    code = "projection_error"


class ApplyFailed(ProjectionError):  # noqa: N818 - reads as the dead letter's reason
    code = "projection_apply_failed"


class RestoreFailed(ProjectionError):  # noqa: N818
    retriable = True
    code = "projection_restore_failed"


class CheckpointFailed(ProjectionError):  # noqa: N818
    retriable = True
    code = "projection_checkpoint_failed"
