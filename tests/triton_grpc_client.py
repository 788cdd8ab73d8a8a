"""Drive a server with NVIDIA's ``tritonclient.grpc`` (runs in .venv-triton), as its docs show.

stdin: JSON {"url": "host:port", "model", "token", "requests": [{"inputs": [{"name", "shape",
"datatype", "values"}], "outputs": [names] or null, "version", "id", "parameters"}],
"timeout": seconds or null}.
stdout: JSON {"live", "ready", "model_ready", "server", "metadata", "config", "stats",
"results": [per request {"ok": true, "outputs": {name: {"datatype", "shape", "values"}}, "id",
"model_name", "model_version"} or {"ok": false, "status", "error"}]}; BYTES values as latin-1.
Calls that fail outside ``results`` are reported as {"error": status} in their place.
"""

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64,
          "INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16,
          "UINT32": np.uint32, "UINT64": np.uint64, "BOOL": np.bool_, "FP16": np.float16,
          "BYTES": np.object_}


def array(spec):
    values = spec["values"]
    if spec["datatype"] == "BYTES":
        values = [v.encode("latin-1") for v in values]
    return np.array(values, dtype=DTYPES[spec["datatype"]]).reshape(spec["shape"])


def plain(a):
    if a.dtype == np.object_:
        return [v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in a.reshape(-1)]
    return a.reshape(-1).tolist()


def attempt(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except InferenceServerException as e:
        return {"error": e.status(), "message": e.message()}


def main():
    spec = json.load(sys.stdin)
    headers = {"authorization": spec["token"]} if spec.get("token") else None
    client = grpcclient.InferenceServerClient(url=spec["url"])
    model = spec["model"]
    out = {"live": attempt(client.is_server_live),
           "ready": attempt(client.is_server_ready),
           "model_ready": attempt(client.is_model_ready, model, headers=headers),
           "server": attempt(client.get_server_metadata, as_json=True),
           "metadata": attempt(client.get_model_metadata, model, headers=headers, as_json=True),
           "config": attempt(client.get_model_config, model, headers=headers, as_json=True),
           "results": []}
    for r in spec["requests"]:
        inputs = []
        for i in r["inputs"]:
            inp = grpcclient.InferInput(i["name"], i["shape"], i["datatype"])
            inp.set_data_from_numpy(array(i))
            inputs.append(inp)
        outputs = None
        if r.get("outputs") is not None:
            outputs = [grpcclient.InferRequestedOutput(o) for o in r["outputs"]]
        try:
            res = client.infer(model, inputs, model_version=r.get("version", ""), outputs=outputs,
                               request_id=r.get("id", ""), headers=headers,
                               parameters=r.get("parameters") or None,
                               client_timeout=spec.get("timeout"))
        except InferenceServerException as e:
            out["results"].append({"ok": False, "status": e.status(), "error": e.message()})
            continue
        resp = res.get_response(as_json=True)
        got = {}
        for o in resp["outputs"]:
            a = res.as_numpy(o["name"])
            got[o["name"]] = {"datatype": o["datatype"], "shape": list(a.shape), "values": plain(a)}
        out["results"].append({"ok": True, "outputs": got, "id": resp.get("id", ""),
                               "model_name": resp.get("model_name"),
                               "model_version": resp.get("model_version")})
    out["stats"] = attempt(client.get_inference_statistics, model, headers=headers, as_json=True)
    client.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
