"""Wire bytes <-> numpy, one module per client ecosystem; imports no TensorFlow.

* ``eas``: PAI-EAS's TensorFlow protocol (``proto/predict.proto``, hand-decoded protobuf)
* ``tfserving``: TF Serving's REST API (``/v1/models/...``, row and columnar JSON)
* ``tfs_grpc``: TF Serving's gRPC ``PredictionService`` messages (``tensor_proto``: TensorFlow's
  ``TensorProto``; ``tfs_examples``: Classify, Regress, MultiInference; ``tfs_messages``:
  ModelSpec, GetModelMetadata, GetModelStatus), hand-decoded protobuf
* ``v2``: the Open Inference Protocol (KServe, Triton), JSON and the binary tensor extension
* ``tfrecord``: TF Serving's warm-up file (TFRecord of ``PredictionLog``)

``dtypes`` is the one dtype table all of them convert through (and the ``Layout`` of each
array message), ``eas_array`` the one decoder of array messages, ``wire`` the protobuf
primitives (``runs``: unpacked repeated fields), ``signature`` the checks every request
passes before the model.  A protocol is a ``Codec``: ``decode`` a body into a signature, feeds
and outputs; ``encode`` the model's outputs into a reply body.
"""

from __future__ import annotations

from .base import Call, Codec, Decoded, Signatures
from .dtypes import DTYPES, FIELD_NAMES, DType, dtype_for_numpy, dtype_name
from .eas import (
    EAS,
    WireRequest,
    decode_request,
    decode_response,
    encode_array,
    encode_request,
    encode_response,
)
from .eas_array import MAX_INPUTS, MAX_OUTPUT_FILTER, MAX_PARTS, WireArray
from .signature import (
    Signature,
    TensorSpec,
    feeds_for_signature,
    fits_shape,
    output_names,
    signature_json,
    signature_json_bytes,
)
from .wire import Field, decode_varints, encode_varints, iter_fields

__all__ = [
    "DTYPES", "EAS", "FIELD_NAMES", "MAX_INPUTS", "MAX_OUTPUT_FILTER", "MAX_PARTS", "Call", "Codec",
    "DType", "Decoded", "Field", "Signature", "Signatures", "TensorSpec", "WireArray", "WireRequest",
    "decode_request", "decode_response", "decode_varints", "dtype_for_numpy",
    "dtype_name", "encode_array", "encode_request", "encode_response", "encode_varints",
    "feeds_for_signature", "fits_shape", "iter_fields", "output_names", "signature_json",
    "signature_json_bytes",
]
