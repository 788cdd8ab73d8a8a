"""TF Serving's and TensorFlow's own generated message classes, without importing TensorFlow:
the serialized descriptors are read out of the installed ``*_pb2.py`` files (``ast``, no code
run) into a private protobuf pool.  The oracle of the fast lane's TF Serving gRPC tests; the
slow lane checks the real ``tensorflow_serving.apis`` classes and ``tf.make_ndarray`` too."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
from typing import Any, Dict, Optional

import pytest

ROOTS = ("tensorflow", "tensorflow_serving")


def _root(package: str) -> Optional[str]:
    spec = importlib.util.find_spec(package)  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.dirname(next(iter(spec.submodule_search_locations)))


class Protos:
    """``Protos()["tensorflow.serving.PredictRequest"]`` is that message's class."""

    def __init__(self) -> None:
        from google.protobuf import descriptor_pool

        self.pool = descriptor_pool.DescriptorPool()
        self.done: Dict[str, bool] = {}
        self.site = _root("tensorflow_serving")
        if self.site is None or _root("tensorflow") is None:
            raise ImportError("tensorflow and tensorflow_serving are not installed")
        for module in ("tensorflow_serving.apis.predict_pb2", "tensorflow_serving.apis.classification_pb2",
                       "tensorflow_serving.apis.regression_pb2", "tensorflow_serving.apis.inference_pb2",
                       "tensorflow_serving.apis.get_model_metadata_pb2",
                       "tensorflow_serving.apis.get_model_status_pb2"):
            self._load(module)

    def _load(self, module: str) -> None:
        if module in self.done:
            return
        self.done[module] = True
        if module.startswith("google.protobuf."):
            self.pool.AddSerializedFile(importlib.import_module(module).DESCRIPTOR.serialized_pb)
            return
        assert self.site is not None
        path = os.path.join(self.site, *module.split(".")) + ".py"
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        serialized = b""
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in \
                    (*ROOTS, "google"):
                for alias in node.names:
                    if alias.name.endswith("_pb2"):
                        self._load(f"{node.module}.{alias.name}")
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
                serialized = ast.literal_eval(node.args[0])
        self.pool.AddSerializedFile(serialized)

    def __getitem__(self, name: str) -> Any:
        from google.protobuf import message_factory

        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(name))


class Oracle:
    """``Protos``, loaded on first use; where TF Serving's client is not installed (the compat
    venvs), the test using it is skipped."""

    def __init__(self) -> None:
        self.protos: Optional[Protos] = None

    def __getitem__(self, name: str) -> Any:
        if self.protos is None:
            try:
                self.protos = Protos()
                self.protos["tensorflow.TensorProto"]
            except (ImportError, AttributeError) as e:  # old protobuf: no GetMessageClass
                pytest.skip(f"TF Serving's generated messages are not available here: {e}")
        return self.protos[name]


__all__ = ["Oracle", "Protos"]
