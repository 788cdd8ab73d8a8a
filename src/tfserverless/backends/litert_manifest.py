"""``litert.json``, the manifest ``tfserverless convert`` writes beside ``model.tflite`` and
the LiteRT backend reads, in one place: its format, the SavedModel's signatures as JSON (so
every protocol answers with the same schema as on TensorFlow), and the checks that make a
broken manifest one 503 line."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping

from ..errors import ModelUnavailable
from ..protocol.dtypes import DTYPE_NAMES, dtype_name
from ..protocol.signature import Signature, TensorSpec

MANIFEST = "litert.json"
MODEL_FILE = "model.tflite"
FORMAT = "tfserverless-litert"
FORMAT_VERSION = 1
DTYPE_CODES = {name: code for code, name in DTYPE_NAMES.items()}


def signature_json(sig: Signature) -> Dict[str, Any]:
    """A signature as the manifest holds it."""
    def specs(d: Mapping[str, TensorSpec]) -> Dict[str, Any]:
        return {a: {"dtype": dtype_name(s.dtype), "shape": None if s.shape is None else list(s.shape),
                    "tensor": s.tensor} for a, s in sorted(d.items())}

    return {"method": sig.method, "inputs": specs(sig.inputs), "outputs": specs(sig.outputs)}


def new_manifest(signatures: Mapping[str, Signature]) -> Dict[str, Any]:
    """The manifest of a conversion of ``signatures`` (the converter adds its report)."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": MODEL_FILE,
            "signatures": {k: signature_json(s) for k, s in signatures.items()}}


def write_manifest(directory: str, manifest: Mapping[str, Any]) -> None:
    with open(os.path.join(directory, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)


def _spec(alias: str, raw: Mapping[str, Any], where: str) -> TensorSpec:
    dtype = DTYPE_CODES.get(str(raw.get("dtype")))
    if dtype is None:
        raise ModelUnavailable(f"{where}: dtype {raw.get('dtype')!r} is not a DT_* name")
    shape = raw.get("shape")
    if shape is not None and not (isinstance(shape, list) and all(
            isinstance(d, int) and d >= -1 for d in shape)):
        raise ModelUnavailable(f"{where}: shape {shape!r} is not a list of dims (-1 = unknown)")
    return TensorSpec(alias, dtype, None if shape is None else tuple(shape), str(raw.get("tensor", "")))


def read_manifest(path: str) -> Dict[str, Any]:
    """The manifest at ``path``/litert.json, checked enough that a broken one is one 503 line."""
    where = os.path.join(os.path.basename(path.rstrip("/")) or path, MANIFEST)
    try:
        with open(os.path.join(path, MANIFEST), "rb") as f:
            manifest = json.loads(f.read(1 << 22))
    except (OSError, ValueError) as e:
        raise ModelUnavailable(f"{where} is not readable JSON: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelUnavailable(f"{where} is not a {FORMAT} manifest; expected the output of "
                               "`tfserverless convert`")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelUnavailable(f"{where} has format_version {manifest.get('format_version')}; "
                               f"this engine reads <= {FORMAT_VERSION}: upgrade tfserverless")
    return manifest


def signatures_from_manifest(manifest: Mapping[str, Any], where: str = MANIFEST) -> Dict[str, Signature]:
    out: Dict[str, Signature] = {}
    sigs = manifest.get("signatures")
    if not isinstance(sigs, dict) or not sigs:
        raise ModelUnavailable(f"{where} names no signatures")
    for key, raw in sigs.items():
        ins, outs = raw.get("inputs", {}), raw.get("outputs", {})
        out[str(key)] = Signature(
            str(key),
            {str(a): _spec(a, s, f"{where} {key}.{a}") for a, s in ins.items()},
            {str(a): _spec(a, s, f"{where} {key}.{a}") for a, s in outs.items()},
            str(raw.get("method", "")),
        )
    return out


__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "MODEL_FILE", "new_manifest", "read_manifest",
           "signature_json", "signatures_from_manifest", "write_manifest"]
