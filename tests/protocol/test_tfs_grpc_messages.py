"""TF Serving's gRPC messages around the tensors, fast lane: ModelSpec, Classify, Regress,
MultiInference, GetModelMetadata and GetModelStatus read as protobuf's own classes (loaded
without TensorFlow: ``tfs_protos``) write them, and replies equal what TF Serving builds."""

from __future__ import annotations

from typing import Any, Callable, List, Optional

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tfserverless.errors import BadRequest
from tfserverless.protocol import Call, tfs_examples
from tfserverless.protocol.tfs_examples import (
    TaskResult,
    decode_input,
    encode_multi,
    encode_result,
    read_multi,
)
from tfserverless.protocol.tfs_grpc import read_examples_request
from tfserverless.protocol.tfs_messages import (
    ModelSpec,
    VersionStatus,
    encode_metadata_response,
    encode_spec,
    encode_status_response,
    read_metadata_request,
    read_spec,
)

from .test_eas import SETTINGS, ld
from .test_tfs_grpc import CLASSIFY, CODEC, PREDICT, REGRESS, P, Sigs, refused

text = st.text(max_size=8)


def proto(message: str, **fields: Any) -> Any:
    return P[f"tensorflow.serving.{message}"](**fields)


def ser(m: Any) -> bytes:
    """Serialized with map entries in key order: an Example's bytes the same each time."""
    return bytes(m.SerializeToString(deterministic=True))


def oracle_spec(m: Any) -> ModelSpec:
    which = m.WhichOneof("version_choice")
    return ModelSpec(m.name, m.version.value if which == "version" else None,
                     m.version_label if which == "version_label" else "", m.signature_name)


@SETTINGS
@given(name=text, sig=text, version=st.none() | st.integers(-(1 << 63), (1 << 63) - 1),
       label=text, label_last=st.booleans(),
       request=st.sampled_from(["PredictRequest", "ClassificationRequest", "RegressionRequest",
                                "GetModelMetadataRequest", "GetModelStatusRequest"]))
def test_model_spec_reads_and_writes_as_protobuf(name: str, sig: str, version: Optional[int],
                                                 label: str, label_last: bool, request: str) -> None:
    spec = proto("ModelSpec", name=name, signature_name=sig)
    if version is not None:
        spec.version.value = version
    body = proto(request, model_spec=spec).SerializeToString()
    if label:  # the oneof: a version_label sent after the version (or before it) wins (or loses)
        other = proto("ModelSpec", version_label=label).SerializeToString()
        first, then = (spec.SerializeToString(), other) if label_last else (other, spec.SerializeToString())
        body = ld(1, first) + ld(1, then) if version is not None else ld(1, spec.SerializeToString() + other)
    want = oracle_spec(proto(request).FromString(body).model_spec)
    assert read_spec(body) == want
    assert oracle_spec(P["tensorflow.serving.ModelSpec"].FromString(encode_spec(want))) == want


@given(body=st.binary(max_size=120))
def test_every_reader_refuses_garbage_in_one_line(body: bytes) -> None:
    for read in (read_spec, read_metadata_request, read_multi,
                 lambda b: read_examples_request(b, "ClassificationRequest")):
        try:
            read(body)
        except BadRequest as e:
            assert "\n" not in e.message and e.status == 400


# --- GetModelMetadata / GetModelStatus --------------------------------------------------------

def test_metadata_request_refused_as_tf_serving_refuses_it() -> None:
    ok = proto("GetModelMetadataRequest", model_spec=proto("ModelSpec", name="m"),
               metadata_field=["signature_def", "signature_def"])
    assert read_metadata_request(ok.SerializeToString()) == ModelSpec("m")
    assert refused(lambda: read_metadata_request(
        proto("GetModelMetadataRequest", metadata_field=["signature_def"]).SerializeToString())) == \
        "GetModelMetadataRequest has no model_spec; expected one naming the model"
    assert "must specify at least one metadata_field" in refused(lambda: read_metadata_request(
        proto("GetModelMetadataRequest", model_spec=proto("ModelSpec")).SerializeToString()))
    bad = proto("GetModelMetadataRequest", model_spec=proto("ModelSpec"),
                metadata_field=["signature_def", "graph"])
    assert refused(lambda: read_metadata_request(bad.SerializeToString())) == \
        "metadata_field 'graph' is not supported; expected 'signature_def'"
    assert "expected a serialized tensorflow.serving.GetModelMetadataRequest" in refused(
        lambda: read_metadata_request(b"\x0a\x05"))


def test_metadata_reply_is_tf_serving_signature_def_map() -> None:
    sigs = Sigs().signatures
    reply = P["tensorflow.serving.GetModelMetadataResponse"].FromString(
        encode_metadata_response("m", 123, sigs))
    assert oracle_spec(reply.model_spec) == ModelSpec("m", 123)  # no signature_name, as TF Serving
    (key, packed), = reply.metadata.items()
    assert key == "signature_def"
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    got = P["tensorflow.serving.SignatureDefMap"].FromString(packed.value)
    want = P["tensorflow.serving.SignatureDefMap"]()
    for name, sig in sigs.items():
        d = want.signature_def[name]
        d.method_name = sig.method
        for side, specs in ((d.inputs, sig.inputs), (d.outputs, sig.outputs)):
            for alias, spec in specs.items():
                info = side[alias]
                info.dtype = spec.dtype
                if spec.tensor:  # a oneof member: set only when there is one
                    info.name = spec.tensor
                info.tensor_shape.SetInParent()  # a scalar: a shape with no dims
                if spec.shape is None:
                    info.tensor_shape.unknown_rank = True
                for size in spec.shape or ():
                    info.tensor_shape.dim.add().size = size  # -1 as TF writes it
    assert got == want
    assert got.signature_def["serving_default"].inputs["n"].tensor_shape.unknown_rank


def test_status_reply_is_tf_serving_model_version_status() -> None:
    reply = P["tensorflow.serving.GetModelStatusResponse"].FromString(encode_status_response([
        VersionStatus(123, "AVAILABLE"), VersionStatus(2, "END", 14, "gone: unloaded"),
        VersionStatus(0, "UNKNOWN")]))
    want = P["tensorflow.serving.GetModelStatusResponse"]()
    for version, state, code, message in ((123, 30, 0, ""), (2, 50, 14, "gone: unloaded"), (0, 0, 0, "")):
        s = want.model_version_status.add(version=version, state=state)
        s.status.error_code, s.status.error_message = code, message
    assert reply == want and reply.model_version_status[0].HasField("status")


# --- Classify, Regress ------------------------------------------------------------------------

def example(**features: Any) -> Any:
    e = P["tensorflow.Example"]()
    for k, v in features.items():
        feature = e.features.feature[k]
        if isinstance(v, bytes):
            feature.bytes_list.value.append(v)
        elif isinstance(v, float):
            feature.float_list.value.append(v)
        else:
            feature.int64_list.value.append(v)
    return e


def three() -> List[Any]:
    """Three Examples: two features, one, none."""
    return [example(x=1.0, s=b"a"), example(x=2.0), example()]


def examples_request(kind: str, sig: str, context: Any = None) -> Any:
    req = proto(kind, model_spec=proto("ModelSpec", name="m", signature_name=sig))
    if context is None:
        req.input.example_list.examples.extend(three())
    else:
        req.input.example_list_with_context.examples.extend(three())
        req.input.example_list_with_context.context.CopyFrom(context)
    return req


def test_classify_feeds_serialized_examples_and_replies_as_tf_serving() -> None:
    body = ser(examples_request("ClassificationRequest", "cls"))
    d = CODEC.decode(body, {}, Sigs(), Call("m", "3", "classify"))
    assert d.sig.name == "cls" and d.outputs == ["classes", "scores"]
    assert d.feeds["inputs"].tolist() == [ser(e) for e in three()]
    classes = np.array([[b"a", b""], [b"c", "d\u00e9"], [b"e", b"f"]], dtype=object)
    scores = np.array([[0.5, 0.0], [-1.5, 2.0], [np.inf, 3.25]], dtype=np.float32)
    reply, headers = CODEC.encode({"classes": classes, "scores": scores}, d, Call("m", "3", "classify"))
    want = proto("ClassificationResponse", model_spec=proto("ModelSpec", name="m", signature_name="cls"))
    want.model_spec.version.value = 3
    for row_c, row_s in zip(classes.tolist(), scores.tolist()):
        row = want.result.classifications.add()
        for c, s in zip(row_c, row_s):
            row.classes.add(label=c.decode() if isinstance(c, bytes) else c, score=s)
    assert proto("ClassificationResponse").FromString(reply) == want
    assert headers == {"Content-Type": "application/grpc"}


@pytest.mark.parametrize("which", ["classes", "scores"])
def test_classify_with_one_of_classes_or_scores(which: str) -> None:
    outputs = {"classes": np.array([[b"a", b"b"]] * 3, dtype=object),
               "scores": np.arange(6, dtype=np.float32).reshape(3, 2)}
    got = P["tensorflow.serving.ClassificationResult"].FromString(
        encode_result("classify", {which: outputs[which]}, 3))
    want = P["tensorflow.serving.ClassificationResult"]()
    for r in range(3):
        row = want.classifications.add()
        for c in range(2):
            cls = row.classes.add()
            if which == "classes":
                cls.label = outputs["classes"][r, c].decode()
            else:
                cls.score = float(outputs["scores"][r, c])
    assert got == want


@pytest.mark.parametrize("shape", [(3,), (3, 1)])
def test_regress_replies_as_tf_serving(shape: Any) -> None:
    body = examples_request("RegressionRequest", "reg").SerializeToString()
    d = CODEC.decode(body, {}, Sigs(), Call("m", "1", "regress"))
    assert d.outputs == ["outputs"] and len(d.feeds["inputs"]) == 3
    values = np.array([0.5, -2.0, 1e30], dtype=np.float32).reshape(shape)
    reply, _ = CODEC.encode({"outputs": values}, d, Call("m", "1", "regress"))
    want = proto("RegressionResponse", model_spec=proto("ModelSpec", name="m", signature_name="reg"))
    want.model_spec.version.value = 1
    for v in values.reshape(-1).tolist():
        want.result.regressions.add(value=v)
    assert proto("RegressionResponse").FromString(reply) == want


def test_context_is_merged_into_each_example_as_tf_serving_merges_it() -> None:
    context = example(x=9.0, c=b"ctx")
    body = ser(examples_request("ClassificationRequest", "cls", context))
    feeds = CODEC.decode(body, {}, Sigs(), Call("m", "", "classify")).feeds["inputs"]
    assert feeds.tolist() == [ser(context) + ser(e) for e in three()]
    merged = [P["tensorflow.Example"].FromString(f) for f in feeds]
    assert merged[0].features.feature["x"].float_list.value == [1.0]  # the example's own wins
    assert merged[2].features.feature["x"].float_list.value == [9.0]  # else the context's
    assert all(m.features.feature["c"].bytes_list.value == [b"ctx"] for m in merged)


def test_input_oneof_and_merges_follow_protobuf() -> None:
    a = proto("Input")
    a.example_list.examples.extend(three()[:2])
    b = proto("Input")
    b.example_list_with_context.examples.extend(three()[2:])
    for body in (ser(a) + ser(b), ser(b) + ser(a), ser(a) * 2):
        msg = proto("Input").FromString(body)
        kind = getattr(msg, msg.WhichOneof("kind"))
        assert decode_input(body).tolist() == [ser(e) for e in kind.examples]


def test_examples_rules_match_the_rest_codec() -> None:
    def classify(sig: str, kind: str = "ClassificationRequest", verb: str = "classify") -> Any:
        return CODEC.decode(examples_request(kind, sig).SerializeToString(), {}, Sigs(),
                            Call("m", "", verb))

    assert classify("tf2").outputs == ["scores"]  # predict method, one DT_STRING input: taken
    assert classify("tf2", "RegressionRequest", "regress").outputs == ["outputs"]
    assert refused(lambda: classify("floats")) == (
        f"signature 'floats' is not a classify signature (method_name {PREDICT}); expected one "
        f"exported with {CLASSIFY} or taking serialized tf.Example strings as its one input, or "
        "call Predict")
    assert refused(lambda: classify("cls", "RegressionRequest", "regress")) == (
        "signature 'cls' has no output 'outputs'; expected it to regress")  # DT_STRING: taken
    assert "has 2 inputs" not in refused(lambda: classify("serving_default"))
    assert "unknown signature_name 'x'" in refused(lambda: classify("x"))
    assert refused(lambda: read_examples_request(proto("ClassificationRequest").SerializeToString(),
                                                 "ClassificationRequest")) == (
        "input holds no examples; expected an example_list or example_list_with_context of at "
        "least one tf.Example")
    assert "expected a serialized tensorflow.serving.RegressionRequest" in refused(
        lambda: read_examples_request(ld(2, ld(1, b"\x0a")), "RegressionRequest"))


def test_examples_are_limited_before_they_are_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tfs_examples, "MAX_STRINGS", 2)
    body = examples_request("ClassificationRequest", "cls").SerializeToString()
    assert "input holds more than 2 examples" in refused(lambda: read_examples_request(body, "x"))
    monkeypatch.setattr(tfs_examples, "MAX_STRINGS", 10)
    monkeypatch.setattr(tfs_examples, "MAX_CONTEXT_BYTES", 100)
    context = example(c=b"z" * 40)
    big = examples_request("ClassificationRequest", "cls", context)
    assert refused(lambda: read_examples_request(big.SerializeToString(), "x")) == (
        f"example_list_with_context copies a context of {context.ByteSize()} bytes into each of 3 "
        "examples; expected at most 100 bytes of copies in one request")


@pytest.mark.parametrize("verb,outputs,words", [
    ("classify", {}, "gives neither 'classes' nor 'scores'"),
    ("classify", {"classes": np.array([b"a"] * 3, object)}, "'classes' has shape [3]; expected "
     "[batch_size, num_classes]"),
    ("classify", {"scores": np.zeros((3, 2), np.int32)}, "'scores' is int32; expected DT_FLOAT"),
    ("classify", {"classes": np.zeros((3, 2))}, "'classes' is float64; expected DT_STRING"),
    ("classify", {"scores": np.zeros((2, 2), np.float32)}, "'scores' has 2 rows; expected one per "
     "example (3)"),
    ("classify", {"scores": np.zeros((3, 2), np.float32), "classes": np.full((3, 1), b"", object)},
     "'classes' and 'scores' have 1 and 2 columns"),
    ("regress", {}, "regress signature gives no 'outputs'"),
    ("regress", {"outputs": np.zeros((3, 2), np.float32)}, "has shape [3, 2]; expected "
     "[batch_size] or [batch_size, 1]"),
    ("regress", {"outputs": np.zeros(4, np.float32)}, "has 4 rows; expected one per example (3)"),
    ("regress", {"outputs": np.zeros(3, np.int64)}, "is int64; expected DT_FLOAT"),
])
def test_results_are_checked_as_tf_serving_checks_them(verb: str, outputs: Any, words: str) -> None:
    assert words in refused(lambda: encode_result(verb, outputs, 3))


# --- MultiInference ---------------------------------------------------------------------------

def multi(*tasks: Any) -> Any:
    req = proto("MultiInferenceRequest")
    for name, sig, method in tasks:
        req.tasks.add(model_spec=proto("ModelSpec", name=name, signature_name=sig), method_name=method)
    req.input.example_list.examples.extend(three())
    return req


def test_multi_inference_reads_tasks_and_writes_results_as_tf_serving() -> None:
    tasks, inp = read_multi(ser(multi(("m", "cls", CLASSIFY), ("m", "", REGRESS))))
    assert tasks == [(ModelSpec("m", None, "", "cls"), "classify"), (ModelSpec("m"), "regress")]
    assert decode_input(inp).tolist() == [ser(e) for e in three()]
    cls = encode_result("classify", {"scores": np.ones((3, 1), np.float32)}, 3)
    reg = encode_result("regress", {"outputs": np.ones(3, np.float32)}, 3)
    got = proto("MultiInferenceResponse").FromString(encode_multi([
        TaskResult(ModelSpec("m", 4, "", "cls"), "classify", cls),
        TaskResult(ModelSpec("m", 4, "", "serving_default"), "regress", reg)]))
    want = proto("MultiInferenceResponse")
    first = want.results.add(model_spec=proto("ModelSpec", name="m", signature_name="cls"))
    first.model_spec.version.value = 4
    for _ in range(3):
        first.classification_result.classifications.add().classes.add(score=1.0)
    second = want.results.add(model_spec=proto("ModelSpec", name="m", signature_name="serving_default"))
    second.model_spec.version.value = 4
    for _ in range(3):
        second.regression_result.regressions.add(value=1.0)
    assert got == want


@pytest.mark.parametrize("tasks,words", [
    ((), "MultiInferenceRequest has no tasks; expected at least one"),
    ((("", "cls", CLASSIFY),), "a task's model_spec has no model name"),
    ((("m", "cls", CLASSIFY), ("n", "reg", REGRESS)), "tasks name models 'm' and 'n'; expected "
     "every task to name the same model"),
    ((("m", "", CLASSIFY), ("m", "serving_default", REGRESS)), "signature 'serving_default' is "
     "named by two tasks"),
    ((("m", "cls", "tensorflow/serving/predict"),), "task method_name 'tensorflow/serving/predict' "
     "is not supported; expected tensorflow/serving/classify or tensorflow/serving/regress"),
])
def test_multi_inference_refused_as_tf_serving_refuses_it(tasks: Any, words: str) -> None:
    assert words in refused(lambda: read_multi(multi(*tasks).SerializeToString()))


def test_multi_inference_malformed_names_its_message() -> None:
    msg: Callable[[bytes], str] = lambda b: refused(lambda: read_multi(b))  # noqa: E731
    assert msg(b"\x0a\x03\x0a\x05") == ("malformed protobuf body: a task runs past the end of "
                                        "its message; expected a serialized "
                                        "tensorflow.serving.MultiInferenceRequest")
    many: List[bytes] = [ld(1, ld(1, ld(1, b"m")))] * 4097
    assert "more than 4096 tasks" in msg(b"".join(many))
