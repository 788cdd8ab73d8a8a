"""The deploy-time reader of ``saved_model.pb`` (``graph_ops``) on SavedModels written with the
project's own wire writers: what it finds, and that a file it cannot read is one clear error,
never a traceback out of ``tfserverless serve`` or ``convert``.  Fast lane: no TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

from tfserverless.protocol.wire import tagged, varint_bytes
from tfserverless.tools import graph_ops

ld = tagged


def vi(field: int, value: int) -> bytes:
    return varint_bytes(field << 3 | 0) + varint_bytes(value)


def node(op: bytes, attrs: bytes = b"") -> bytes:
    """A NodeDef: name = 1, op = 2, attr = 5."""
    return ld(1, b"n") + ld(2, op) + attrs


def attr(key: bytes, value: bytes) -> bytes:
    return ld(5, ld(1, key) + ld(2, value))


TRANSPOSE = vi(5, 1)  # AttrValue { b: true }
DEFAULT = vi(5, 0)
OP_DEF = ld(1, b"MatMul") + ld(4, ld(1, b"transpose_a") + ld(3, DEFAULT))  # OpDef, one AttrDef
FUNCTION = ld(1, ld(1, b"my_fn")) + ld(3, node(b"Relu"))  # FunctionDef: signature, node_def


def saved_model(*, graph_node: bytes = b"", op_list: bytes = b"", function: bytes = b"",
                meta: bytes = b"") -> bytes:
    """SavedModel { meta_graphs { meta_info_def { stripped_op_list }, graph_def { node,
    library { function } } } }, any part replaceable."""
    graph = (ld(1, graph_node or node(b"MatMul", attr(b"transpose_a", TRANSPOSE)
                                      + attr(b"_class", b"x")))
             + ld(1, node(b"my_fn")) + ld(2, ld(1, function or FUNCTION)))
    meta = meta or (ld(1, ld(2, op_list or ld(1, OP_DEF))) + ld(2, graph))
    return vi(1, 1) + ld(2, meta)


def test_ops_used_reads_nodes_functions_and_the_producers_defaults() -> None:
    used, defaults = graph_ops.ops_used(saved_model())
    assert used == {"MatMul": {"transpose_a": {TRANSPOSE}}, "Relu": {}}  # my_fn: the graph's own
    assert defaults == {"MatMul": {"transpose_a": DEFAULT}}


WRONG: Dict[str, bytes] = {
    "meta_graphs as a varint": vi(1, 1) + vi(2, 1),
    "meta_info_def as a varint": saved_model(meta=vi(1, 1)),
    "graph_def as a varint": saved_model(meta=vi(2, 1)),
    "stripped_op_list as a varint": saved_model(meta=ld(1, vi(2, 1))),
    "an OpDef as a varint": saved_model(op_list=vi(1, 1)),
    "an OpDef's name as a varint": saved_model(op_list=ld(1, vi(1, 1))),
    "an AttrDef as a varint": saved_model(op_list=ld(1, ld(1, b"MatMul") + vi(4, 1))),
    "an AttrDef's default as a varint": saved_model(
        op_list=ld(1, ld(1, b"MatMul") + ld(4, ld(1, b"a") + vi(3, 1)))),
    "a node as a varint": saved_model(meta=ld(2, vi(1, 1))),
    "a node's op as a varint": saved_model(graph_node=ld(1, b"n") + vi(2, 1)),
    "an attr entry as a varint": saved_model(graph_node=node(b"MatMul", vi(5, 1))),
    "an attr's key as a varint": saved_model(graph_node=node(b"MatMul", ld(5, vi(1, 1)))),
    "an attr's value as a varint": saved_model(graph_node=node(b"MatMul",
                                                               ld(5, ld(1, b"a") + vi(2, 1)))),
    "the library as a varint": saved_model(meta=ld(2, vi(2, 1))),
    "a function as a varint": saved_model(meta=ld(2, ld(2, vi(1, 1)))),
    "a function's signature as a varint": saved_model(function=vi(1, 1)),
    "a function's name as a varint": saved_model(function=ld(1, vi(1, 1))),
    "a function's node as a varint": saved_model(function=vi(3, 1)),
    "truncated": saved_model()[:-3],
}


@pytest.mark.parametrize("what", sorted(WRONG))
def test_a_saved_model_pb_it_cannot_read_is_one_clear_error(what: str) -> None:
    with pytest.raises(graph_ops.UnreadableGraph) as e:
        graph_ops.ops_used(WRONG[what])
    message = e.value.message
    assert message.startswith("saved_model.pb is no SavedModel protobuf: "), message
    assert "\n" not in message and "PredictRequest" not in message, message
    if what != "truncated":
        assert "has wire type 0; expected length-delimited (2)" in message, message


def test_cannot_load_leaves_an_unreadable_saved_model_pb_to_the_load(tmp_path: Path) -> None:
    """``tfserverless serve`` checks a local model's ops first: a saved_model.pb it cannot
    read was a Malformed traceback out of the CLI; it is now left to TensorFlow's own load."""
    version = "1.15"
    assert graph_ops.registry(version) is not None
    (tmp_path / "saved_model.pb").write_bytes(WRONG["a node's op as a varint"])
    assert graph_ops.cannot_load(str(tmp_path), version) == ""
    (tmp_path / "saved_model.pb").write_bytes(saved_model(graph_node=node(b"NoSuchOpAnywhere")))
    line = graph_ops.cannot_load(str(tmp_path), version)
    assert "cannot load" in line and "NoSuchOpAnywhere" in line, line
