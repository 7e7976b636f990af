"""The stage contract: each reversible step has ``encode`` and ``decode`` in one class.

The edge calls ``encode``, the cloud calls ``decode`` on what arrives; because both live
side by side (CompressAI's ``compress``/``decompress`` pair), the two ends cannot drift.
A stage that produces bytes records them in the :class:`~semcom.types.RateLedger` of the
:class:`~semcom.types.Payload` it returns, under its own ``name``. Docstrings state the
shapes and dtypes of inputs and outputs.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from semcom.types import Payload


@runtime_checkable
class Stage(Protocol):
    name: ClassVar[str]

    def encode(self, x: Any, **context: Any) -> Payload:
        """Edge side: input to bytes (payload, side info) with the bits in the ledger."""
        ...

    def decode(self, payload: Payload, **context: Any) -> Any:
        """Cloud side: the exact inverse of :meth:`encode` (up to quantisation)."""
        ...
