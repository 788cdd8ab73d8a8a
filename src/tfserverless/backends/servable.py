"""The model seam: what the service needs of a loaded model, whatever runs it
(``backends.tensorflow.Model``, ``backends.litert.LiteModel``)."""

from __future__ import annotations

from typing import Any, Dict, Sequence

from .._compat import Protocol
from ..protocol.signature import Signature


class Servable(Protocol):
    """What the service needs of a loaded model (``model.Model`` is one)."""

    path: str
    signatures: Dict[str, Signature]
    default_signature: str
    tf_version: str  # "" when the backend is not TensorFlow
    runtime: str  # what runs it, with its version ("tensorflow 2.21.0", "ai-edge-litert 2.3.0")
    import_seconds: float  # the cold start's runtime import, then load
    load_seconds: float

    def signature(self, name: str) -> Signature: ...

    def run(self, sig: Signature, feeds: Dict[str, Any], outputs: Sequence[str]) -> Dict[str, Any]: ...

    def close(self) -> None: ...


__all__ = ["Servable"]
