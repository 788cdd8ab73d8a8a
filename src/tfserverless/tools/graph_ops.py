"""Can this SavedModel load on another TensorFlow?  Told without that TensorFlow: every op a
graph uses (functions included) must be one it registers, with no attribute it does not know,
which is the check its loader makes first ("NodeDef mentions attr 'debug_name' not in Op"),
after dropping unknown attributes left at their default (the producer's op defs, saved in
the SavedModel, say which).

The op registries live in ``tf_ops/tensorflow-<major.minor>.json`` (op -> attribute names),
written from the processors' own TensorFlow (``op_def_registry.get_registered_ops()``);
``saved_model.pb`` is read by hand, like every protobuf here.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Set, Tuple, Union

from ..protocol.wire import iter_fields

OPS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tf_ops")


def _utf8(value: Union[int, memoryview]) -> str:
    return bytes(value).decode("utf-8", "replace") if isinstance(value, memoryview) else ""


Used = Dict[str, Dict[str, Set[bytes]]]  # op -> attribute -> the values nodes give it


def _node(buf: memoryview, used: Used) -> None:
    op, attrs = "", {}
    for field, wire, value in iter_fields(buf):
        if wire != 2:
            continue
        if field == 2:
            op = _utf8(value)
        elif field == 5:  # map<string, AttrValue> entry: key = 1, value = 2
            key, val = "", b""
            for f2, w2, v2 in iter_fields(value):  # type: ignore[arg-type]
                if w2 == 2 and f2 == 1:
                    key = _utf8(v2)
                elif w2 == 2 and f2 == 2:
                    val = bytes(v2)  # type: ignore[arg-type]
            attrs[key] = val
    if op:
        slot = used.setdefault(op, {})
        for key, val in attrs.items():
            if not key.startswith("_"):
                slot.setdefault(key, set()).add(val)


def _defaults(op_list: memoryview, into: Dict[str, Dict[str, bytes]]) -> None:
    """The producer's own op defs (``stripped_op_list``): each attribute's default value."""
    for field, wire, opdef in iter_fields(op_list):
        if field != 1 or wire != 2:
            continue
        name, attrs = "", {}
        for f2, w2, v2 in iter_fields(opdef):  # type: ignore[arg-type]
            if f2 == 1 and w2 == 2:
                name = _utf8(v2)
            elif f2 == 4 and w2 == 2:  # AttrDef: name = 1, default_value = 3
                aname, default = "", None
                for f3, w3, v3 in iter_fields(v2):  # type: ignore[arg-type]
                    if f3 == 1 and w3 == 2:
                        aname = _utf8(v3)
                    elif f3 == 3 and w3 == 2:
                        default = bytes(v3)  # type: ignore[arg-type]
                if default is not None:
                    attrs[aname] = default
        into[name] = attrs


def ops_used(saved_model_pb: bytes) -> Tuple[Used, Dict[str, Dict[str, bytes]]]:
    """(op -> attribute -> values set, over every meta graph and function; the producer's
    attribute defaults).  Functions called as ops are left out: they are the graph's own."""
    used: Used = {}
    defaults: Dict[str, Dict[str, bytes]] = {}
    functions: Set[str] = set()
    for field, wire, meta in iter_fields(saved_model_pb):
        if field != 2 or wire != 2:
            continue
        for f2, w2, part in iter_fields(meta):  # type: ignore[arg-type]
            if f2 == 1 and w2 == 2:  # MetaInfoDef: stripped_op_list = 2
                for f3, w3, v3 in iter_fields(part):  # type: ignore[arg-type]
                    if f3 == 2 and w3 == 2:
                        _defaults(v3, defaults)  # type: ignore[arg-type]
            if f2 != 2 or w2 != 2:  # MetaGraphDef.graph_def
                continue
            for f3, w3, item in iter_fields(part):  # type: ignore[arg-type]
                if f3 == 1 and w3 == 2:
                    _node(item, used)  # type: ignore[arg-type]
                elif f3 == 2 and w3 == 2:  # the function library
                    for f4, w4, fn in iter_fields(item):  # type: ignore[arg-type]
                        if f4 != 1 or w4 != 2:
                            continue
                        for f5, w5, v5 in iter_fields(fn):  # type: ignore[arg-type]
                            if f5 == 3 and w5 == 2:
                                _node(v5, used)  # type: ignore[arg-type]
                            elif f5 == 1 and w5 == 2:  # signature: OpDef, name = 1
                                for f6, w6, v6 in iter_fields(v5):  # type: ignore[arg-type]
                                    if f6 == 1 and w6 == 2:
                                        functions.add(_utf8(v6))
    return {op: a for op, a in used.items() if op not in functions}, defaults


def registry(tf_version: str) -> Optional[Dict[str, List[str]]]:
    """The vendored op registry of TensorFlow ``major.minor``, if there is one."""
    path = os.path.join(OPS_DIR, f"tensorflow-{'.'.join(tf_version.split('.')[:2])}.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return dict(json.load(f)["ops"])


def missing(used: Used, defaults: Dict[str, Dict[str, bytes]],
            ops: Dict[str, List[str]]) -> List[str]:
    """What ``ops`` lacks: ``Op`` for an unknown op, ``Op.attr`` for an unknown attribute set
    to anything but the producer's default (the loader drops those, as TensorFlow does)."""
    out = []
    for op in sorted(used):
        if op not in ops:
            out.append(op)
            continue
        known, producer = set(ops[op]), defaults.get(op, {})
        out += [f"{op}.{a}" for a, values in sorted(used[op].items())
                if a not in known and values != {producer.get(a)}]
    return out


def cannot_load(model_dir: str, tf_version: str) -> str:
    """One line when the SavedModel at ``model_dir`` cannot load on ``tf_version``; "" when it
    can, or when that cannot be told here (no registry for that version, no saved_model.pb)."""
    ops = registry(tf_version)
    pb = os.path.join(model_dir, "saved_model.pb")
    if ops is None or not os.path.isfile(pb):
        return ""
    with open(pb, "rb") as f:
        used, defaults = ops_used(f.read())
    lacks = missing(used, defaults, ops)
    if not lacks:
        return ""
    more = f" (and {len(lacks) - 3} more)" if len(lacks) > 3 else ""
    return (f"TensorFlow {tf_version} cannot load the SavedModel at {model_dir}: it uses "
            f"{', '.join(lacks[:3])}{more}, which that TensorFlow lacks")


__all__ = ["cannot_load", "missing", "ops_used", "registry"]
