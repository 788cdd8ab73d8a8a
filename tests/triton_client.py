"""Drive a server with NVIDIA's ``tritonclient.http`` (runs in .venv-triton), as its docs show.

stdin: JSON {"url", "model", "token", "requests": [{"inputs": [{"name", "shape", "datatype",
"values", "binary"}], "outputs": [{"name", "binary"}] or null, "version", "parameters"}]}.
stdout: JSON {"live", "ready", "model_ready", "server", "metadata", "results": [per request
{"ok": true, "outputs": {name: {"datatype", "shape", "values"}}} or {"ok": false, "status",
"error"}]}; BYTES values as latin-1 text.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64,
          "INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16,
          "BOOL": np.bool_, "FP16": np.float16, "BYTES": np.object_}


def array(spec):
    values = spec["values"]
    if spec["datatype"] == "BYTES":
        values = [v.encode("latin-1") for v in values]
    a = np.array(values, dtype=DTYPES[spec["datatype"]])
    return a.reshape(spec["shape"])


def plain(a):
    if a.dtype == np.object_:
        return [v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in a.reshape(-1)]
    return a.reshape(-1).tolist()


def main():
    spec = json.load(sys.stdin)
    headers = {"Authorization": spec["token"]} if spec.get("token") else None
    client = httpclient.InferenceServerClient(url=spec["url"], network_timeout=60.0)
    model = spec["model"]
    out = {"live": client.is_server_live(), "ready": client.is_server_ready(),
           "model_ready": client.is_model_ready(model, headers=headers),
           "server": client.get_server_metadata(),
           "metadata": client.get_model_metadata(model, headers=headers), "results": []}
    for r in spec["requests"]:
        inputs = []
        for i in r["inputs"]:
            inp = httpclient.InferInput(i["name"], i["shape"], i["datatype"])
            inp.set_data_from_numpy(array(i), binary_data=i.get("binary", True))
            inputs.append(inp)
        outputs = None
        if r.get("outputs") is not None:
            outputs = [httpclient.InferRequestedOutput(o["name"], binary_data=o.get("binary", True))
                       for o in r["outputs"]]
        try:
            res = client.infer(model, inputs, model_version=r.get("version", ""), outputs=outputs,
                               request_id=r.get("id", ""),
                               headers=dict(headers) if headers else None,  # it adds to the dict
                               parameters=r.get("parameters") or None,
                               request_compression_algorithm=r.get("compression"))
        except InferenceServerException as e:
            out["results"].append({"ok": False, "status": e.status(), "error": e.message()})
            continue
        resp = res.get_response()
        got = {}
        for o in resp["outputs"]:
            a = res.as_numpy(o["name"])
            got[o["name"]] = {"datatype": o["datatype"], "shape": list(a.shape), "values": plain(a),
                              "binary": "data" not in o}
        out["results"].append({"ok": True, "outputs": got, "id": resp.get("id", ""),
                               "model_name": resp.get("model_name"),
                               "model_version": resp.get("model_version")})
    client.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
