"""The V2 gRPC service's small replies (grpc_service.proto, model_config.proto), as bytes:
liveness and readiness, server and model metadata, Triton's model configuration (answered from
the signature) and statistics extension.  The requests they answer hold a model name and
version (``v2_grpc.read_model``) or nothing.  Imports no TensorFlow.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Sequence, Tuple

from .dtypes import DTYPES, dtype_name
from .grpc_wire import ints_field, message_field, string_field, strings_field, uint_field
from .signature import Signature, TensorSpec

PLATFORM = "tensorflow_savedmodel"  # Triton's name for the platform (metadata and config)
#: model_config.proto's DataType enum, by V2 datatype (TYPE_INVALID: 0)
CONFIG_TYPES: Dict[str, int] = {
    "BOOL": 1, "UINT8": 2, "UINT16": 3, "UINT32": 4, "UINT64": 5, "INT8": 6, "INT16": 7,
    "INT32": 8, "INT64": 9, "FP16": 10, "FP32": 11, "FP64": 12, "BYTES": 13, "BF16": 14,
}


def server_live(live: bool) -> bytes:
    """``ServerLiveResponse``."""
    return uint_field(1, live)


def server_ready(ready: bool) -> bytes:
    """``ServerReadyResponse``."""
    return uint_field(1, ready)


def model_ready(ready: bool) -> bytes:
    """``ModelReadyResponse``."""
    return uint_field(1, ready)


def server_metadata(name: str, version: str, extensions: Sequence[str]) -> bytes:
    """``ServerMetadataResponse``."""
    return string_field(1, name) + string_field(2, version) + strings_field(3, extensions)


def datatype(spec: TensorSpec) -> str:
    """A signature tensor's V2 datatype (a dtype the protocol has no name for: its DT_ name)."""
    dt = DTYPES.get(spec.dtype)
    return dt.v2 if dt else dtype_name(spec.dtype)


def dims(spec: TensorSpec) -> Tuple[int, ...]:
    """A signature tensor's shape as V2 says it: -1 for an unknown dimension, [-1] for an
    unknown rank (as ``GET /v2/models/<name>`` says it)."""
    return spec.shape if spec.shape is not None else (-1,)


def _sorted(specs: Dict[str, TensorSpec]) -> List[TensorSpec]:
    return [s for _, s in sorted(specs.items())]


def model_metadata(name: str, versions: Sequence[str], sig: Signature,
                   platform: str = PLATFORM) -> bytes:
    """``ModelMetadataResponse`` for ``sig`` (inputs and outputs by name)."""

    def tensor(spec: TensorSpec) -> bytes:
        return string_field(1, spec.name) + string_field(2, datatype(spec)) + ints_field(3, dims(spec))

    return b"".join([string_field(1, name), strings_field(2, versions), string_field(3, platform),
                     *(message_field(4, tensor(s)) for s in _sorted(sig.inputs)),
                     *(message_field(5, tensor(s)) for s in _sorted(sig.outputs))])


def batchable(sig: Signature) -> bool:
    """Whether every input and output of ``sig`` has a leading unknown dimension: a batch
    Triton's config would leave out of ``dims`` (``max_batch_size`` > 0)."""
    specs = [*sig.inputs.values(), *sig.outputs.values()]
    return bool(specs) and all(s.shape is not None and len(s.shape) > 0 and s.shape[0] < 0
                               for s in specs)


def model_config(name: str, sig: Signature, max_batch_size: int = 0,
                 platform: str = PLATFORM) -> bytes:
    """``ModelConfigResponse``: ``ModelConfig`` for ``sig``.  With ``max_batch_size`` > 0 and
    a ``batchable`` signature the leading batch dimension leaves every tensor's ``dims``, as
    Triton writes it; otherwise ``max_batch_size`` is 0 and ``dims`` are the full shapes."""
    batch = max_batch_size if max_batch_size > 0 and batchable(sig) else 0

    def tensor(spec: TensorSpec, dims_field: int) -> bytes:
        shape = dims(spec)[1:] if batch else dims(spec)
        return (string_field(1, spec.name) + uint_field(2, CONFIG_TYPES.get(datatype(spec), 0))
                + ints_field(dims_field, shape))

    # dims: ModelInput's field 4, ModelOutput's field 3
    config = b"".join([string_field(1, name), string_field(2, platform), uint_field(4, batch),
                       *(message_field(5, tensor(s, 4)) for s in _sorted(sig.inputs)),
                       *(message_field(6, tensor(s, 3)) for s in _sorted(sig.outputs))])
    return message_field(1, config)


class Duration(NamedTuple):
    """``StatisticDuration``: how many (its ``count``; ``count`` is a tuple method), and
    their total time in nanoseconds."""

    n: int = 0
    ns: int = 0


class ModelStats(NamedTuple):
    """One model version's counters (``ModelStatistics``): times in nanoseconds,
    ``last_inference`` in milliseconds since the epoch (0: never)."""

    name: str
    version: str
    last_inference: int = 0
    inference_count: int = 0  # inferences (a batch of n rows counts n)
    execution_count: int = 0  # model executions (batched requests share one)
    success: Duration = Duration()
    fail: Duration = Duration()
    queue: Duration = Duration()
    compute_input: Duration = Duration()
    compute_infer: Duration = Duration()
    compute_output: Duration = Duration()


_STAT_FIELDS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


def _duration(d: Duration) -> bytes:
    return uint_field(1, d.n) + uint_field(2, d.ns)


def model_statistics(stats: Sequence[ModelStats]) -> bytes:
    """``ModelStatisticsResponse`` with one ``ModelStatistics`` per entry of ``stats``."""

    def one(s: ModelStats) -> bytes:
        infer = b"".join(message_field(i + 1, _duration(getattr(s, f)))
                         for i, f in enumerate(_STAT_FIELDS))  # InferStatistics fields 1..6
        return b"".join([string_field(1, s.name), string_field(2, s.version),
                         uint_field(3, s.last_inference), uint_field(4, s.inference_count),
                         uint_field(5, s.execution_count), message_field(6, infer)])

    return b"".join(message_field(1, one(s)) for s in stats)


__all__ = ["CONFIG_TYPES", "PLATFORM", "Duration", "ModelStats", "batchable", "datatype", "dims",
           "model_config", "model_metadata", "model_ready", "model_statistics", "server_live",
           "server_metadata", "server_ready"]
