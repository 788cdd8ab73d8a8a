"""TensorFlow's errors as one reply line (``backends.tensorflow.op_line``), fast lane: the
messages TensorFlow writes, on exceptions that carry them as TensorFlow's do (``message``)."""

from __future__ import annotations

import pytest

from tfserverless.backends.tensorflow import MAX_LINE, op_line


class OpError(Exception):
    """What ``op_line`` reads of TensorFlow's ``OpError``: its ``message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@pytest.mark.parametrize("message,line", [
    ("Matrix size-incompatible: In[0]: [1,2], In[1]: [784,10]\n\t [[{{node MatMul}}]]",
     "Matrix size-incompatible: In[0]: [1,2], In[1]: [784,10]"),
    # TensorFlow 1.x, ops failing in parallel
    ("2 root error(s) found.\n  (0) Invalid argument: Incompatible shapes: [1,4] vs. [1,3]\n"
     "\t [[{{node add}}]]\n  (1) Invalid argument: Incompatible shapes: [1,4] vs. [1,3]\n"
     "0 successful operations.\n0 derived errors ignored.",
     "Invalid argument: Incompatible shapes: [1,4] vs. [1,3]"),
    # inside a tf.function: its name and the node's before the words
    ("{{function_node __inference_serve_42}} {{node add}} Incompatible shapes: [3] vs. [2]\n"
     "\t [[StatefulPartitionedCall]]", "Incompatible shapes: [3] vs. [2]"),
    ("\n\n  Name: <unknown>, Feature: x is required but could not be found.\n\t [[{{node P}}]]",
     "Name: <unknown>, Feature: x is required but could not be found."),
    ("1 root error(s) found.", "1 root error(s) found."),  # nothing else: what there is
    ("", "OpError"),
    ("{{node add}}", "OpError: {{node add}}"),
])
def test_one_line_without_the_graph(message: str, line: str) -> None:
    assert op_line(OpError(message)) == line


def test_a_graph_dump_on_one_line_is_cut() -> None:
    line = op_line(OpError("NodeDef mentions attr 'T' not in Op: " + "x" * 5000))
    assert len(line) == MAX_LINE + 3 and line.endswith("...")
