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
from typing import Dict, List, Optional, Set, Tuple

from ..errors import TFServerlessError
from ..protocol.wire import Malformed, iter_fields

OPS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tf_ops")


class UnreadableGraph(TFServerlessError):
    """A ``saved_model.pb`` that is no SavedModel protobuf (truncated, or a field read here in
    another wire type than the SavedModel schema's)."""


Used = Dict[str, Dict[str, Set[bytes]]]  # op -> attribute -> the values nodes give it


def _node(buf: memoryview, used: Used) -> None:
    """A ``NodeDef``: op = 2, attr = 5 (map<string, AttrValue> entries: key = 1, value = 2)."""
    op, attrs = "", {}
    for f in iter_fields(buf):
        if f.number == 2:
            op = f.text()
        elif f.number == 5:
            key, val = "", b""
            for g in iter_fields(f.data()):
                if g.number == 1:
                    key = g.text()
                elif g.number == 2:
                    val = bytes(g.data())
            attrs[key] = val
    if op:
        slot = used.setdefault(op, {})
        for key, val in attrs.items():
            if not key.startswith("_"):
                slot.setdefault(key, set()).add(val)


def _defaults(op_list: memoryview, into: Dict[str, Dict[str, bytes]]) -> None:
    """The producer's own op defs (``stripped_op_list``): each attribute's default value.
    ``OpList``: op = 1; ``OpDef``: name = 1, attr = 4; ``AttrDef``: name = 1,
    default_value = 3."""
    for f in iter_fields(op_list):
        if f.number != 1:
            continue
        name, attrs = "", {}
        for g in iter_fields(f.data()):
            if g.number == 1:
                name = g.text()
            elif g.number == 4:
                aname, default = "", None
                for h in iter_fields(g.data()):
                    if h.number == 1:
                        aname = h.text()
                    elif h.number == 3:
                        default = bytes(h.data())
                if default is not None:
                    attrs[aname] = default
        into[name] = attrs


def _function(fn: memoryview, used: Used, functions: Set[str]) -> None:
    """A ``FunctionDef``: its nodes (node_def = 3) into ``used``, its name (signature = 1, an
    ``OpDef``: name = 1) into ``functions``."""
    for f in iter_fields(fn):
        if f.number == 3:
            _node(f.data(), used)
        elif f.number == 1:
            functions.update(g.text() for g in iter_fields(f.data()) if g.number == 1)


def ops_used(saved_model_pb: bytes) -> Tuple[Used, Dict[str, Dict[str, bytes]]]:
    """(op -> attribute -> values set, over every meta graph and function; the producer's
    attribute defaults).  Functions called as ops are left out: they are the graph's own.
    ``UnreadableGraph`` when ``saved_model_pb`` is no SavedModel protobuf."""
    used: Used = {}
    defaults: Dict[str, Dict[str, bytes]] = {}
    functions: Set[str] = set()
    try:
        for meta in iter_fields(saved_model_pb):  # SavedModel: meta_graphs = 2
            if meta.number != 2:
                continue
            for part in iter_fields(meta.data()):
                if part.number == 1:  # MetaGraphDef.meta_info_def: stripped_op_list = 2
                    for g in iter_fields(part.data()):
                        if g.number == 2:
                            _defaults(g.data(), defaults)
                elif part.number == 2:  # MetaGraphDef.graph_def: node = 1, library = 2
                    for item in iter_fields(part.data()):
                        if item.number == 1:
                            _node(item.data(), used)
                        elif item.number == 2:  # FunctionDefLibrary: function = 1
                            for fn in iter_fields(item.data()):
                                if fn.number == 1:
                                    _function(fn.data(), used, functions)
    except Malformed as e:
        raise UnreadableGraph(f"saved_model.pb is no SavedModel protobuf: {e.what}") from None
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
    can, or when that cannot be told here (no registry for that version, no saved_model.pb, or
    one this reader cannot read: the load itself then says why, in TensorFlow's words)."""
    ops = registry(tf_version)
    pb = os.path.join(model_dir, "saved_model.pb")
    if ops is None or not os.path.isfile(pb):
        return ""
    with open(pb, "rb") as f:
        data = f.read()
    try:
        used, defaults = ops_used(data)
    except UnreadableGraph:
        return ""
    lacks = missing(used, defaults, ops)
    if not lacks:
        return ""
    more = f" (and {len(lacks) - 3} more)" if len(lacks) > 3 else ""
    return (f"TensorFlow {tf_version} cannot load the SavedModel at {model_dir}: it uses "
            f"{', '.join(lacks[:3])}{more}, which that TensorFlow lacks")


__all__ = ["UnreadableGraph", "cannot_load", "missing", "ops_used", "registry"]
