"""NVIDIA's ``tritonclient.grpc`` (runs in .venv-triton) as a byte oracle, no server needed.

stdin: JSON {"requests": [{"inputs": [{"name", "datatype", "shape", "hex"}], "outputs": [name]
or null, "id", "version", "parameters", "sequence_id", "priority", "timeout"}], "responses":
[{"hex", "names"}]}; "hex" of an input: its raw little-endian bytes, BYTES: a list of hex.
stdout: JSON {"requests": [hex of the ModelInferRequest the client sends for it (what
``InferenceServerClient.infer`` builds)], "responses": [{name: {"datatype", "shape", "hex"}}
as ``InferResult.as_numpy`` reads the reply]}.
"""

import json
import sys

import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput, InferResult, service_pb2
from tritonclient.grpc._utils import _get_inference_request
from tritonclient.utils import triton_to_np_dtype


def array(spec):
    if spec["datatype"] == "BYTES":
        flat = np.array([bytes.fromhex(v) for v in spec["hex"]] + [b""], dtype=np.object_)[:-1]
    else:
        flat = np.frombuffer(bytes.fromhex(spec["hex"]), triton_to_np_dtype(spec["datatype"]))
    return flat.reshape(spec["shape"])


def request(r):
    inputs = []
    for i in r["inputs"]:
        inp = InferInput(i["name"], i["shape"], i["datatype"])
        inp.set_data_from_numpy(array(i))
        inputs.append(inp)
    outputs = None if r.get("outputs") is None else [InferRequestedOutput(n) for n in r["outputs"]]
    req = _get_inference_request(
        model_name="m", inputs=inputs, model_version=r.get("version", ""),
        request_id=r.get("id", ""), outputs=outputs, sequence_id=r.get("sequence_id", 0),
        sequence_start=False, sequence_end=False, priority=r.get("priority", 0),
        timeout=r.get("timeout"), parameters=r.get("parameters"))
    return req.SerializeToString().hex()


def response(r):
    result = InferResult(service_pb2.ModelInferResponse.FromString(bytes.fromhex(r["hex"])))
    out = {}
    for name in r["names"]:
        a = result.as_numpy(name)
        flat = a.reshape(-1)
        out[name] = {"datatype": result.get_output(name).datatype, "shape": list(a.shape),
                     "hex": [bytes(v).hex() for v in flat] if a.dtype == np.object_
                     else flat.astype(a.dtype.newbyteorder("<")).tobytes().hex()}
    return out


def main():
    spec = json.load(sys.stdin)
    json.dump({"requests": [request(r) for r in spec.get("requests", [])],
               "responses": [response(r) for r in spec.get("responses", [])]}, sys.stdout)


if __name__ == "__main__":
    main()
