"""The seam between the service and its protocols: what a ``Codec`` is given and gives."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Tuple

import numpy as np

from .._compat import Protocol
from .signature import Signature


class Signatures(Protocol):
    """What a codec needs of the model: its signatures by name ('' is the default)."""

    default_signature: str
    signatures: Dict[str, Signature]

    def signature(self, name: str) -> Signature: ...


class Call(NamedTuple):
    """What the URL said about a request: the model name and version it named (V2 replies
    repeat them) and the verb (TF Serving's ``predict``, ``classify``, ``regress``)."""

    model: str = ""
    version: str = ""
    verb: str = "predict"


class Decoded(NamedTuple):
    sig: Signature
    feeds: Dict[str, np.ndarray]
    outputs: List[str]
    form: Any = None  # what the codec's ``encode`` needs to shape this request's reply


class Codec(Protocol):
    name: str  # the ``protocol`` label in /metrics; messages.JSON_ERRORS says by it how errors read

    def decode(self, body: bytes, headers: Mapping[str, str], model: Signatures,
               call: Call) -> Decoded: ...

    def encode(self, outputs: Dict[str, np.ndarray], decoded: Decoded,
               call: Call) -> Tuple[bytes, Dict[str, str]]: ...
