"""Drive a server with the official EAS SDK (runs in .venv-eas, protobuf 3.x).

stdin: JSON {"endpoint", "service", "token", "custom_url", "requests": [{"signature",
"feeds": [{"name", "shape", "dtype", "values"}], "fetch": [...]}]}; strings are latin-1.
stdout: JSON list, per request {"ok": true, "outputs": {name: {"dtype", "shape", "values"}}}
or {"ok": false, "status", "body"}.
"""

import json
import sys

from eas_prediction import PredictClient, TFRequest
from eas_prediction.exception import PredictException

FIELD = {1: "float_val", 2: "double_val", 3: "int_val", 4: "int_val", 5: "int_val",
         6: "int_val", 7: "string_val", 9: "int64_val", 10: "bool_val", 17: "int_val",
         19: "int_val"}


def main():
    spec = json.load(sys.stdin)
    client = PredictClient(spec.get("endpoint", ""), spec.get("service", ""),
                           custom_url=spec.get("custom_url", ""))
    if spec.get("token"):
        client.set_token(spec["token"])
    client.set_retry_count(spec.get("retry_count", 1))
    client.set_timeout(spec.get("timeout_ms", 20000))
    client.init()
    results = []
    for r in spec["requests"]:
        req = TFRequest(r.get("signature", ""))
        for f in r.get("feeds", []):
            values = f["values"]
            if f["dtype"] == TFRequest.DT_STRING:
                values = [v.encode("latin-1") for v in values]
            req.add_feed(f["name"], f["shape"], f["dtype"], values)
        for name in r.get("fetch", []):
            req.add_fetch(name)
        try:
            resp = client.predict(req)
        except PredictException as e:
            body = e.message if hasattr(e, "message") else str(e)
            if isinstance(body, bytes):
                body = body.decode("utf-8", "replace")
            results.append({"ok": False, "status": e.code, "body": str(body)})
            continue
        outputs = {}
        for name, arr in resp.response.outputs.items():
            vals = list(getattr(arr, FIELD.get(arr.dtype, "float_val")))
            if arr.dtype == 7:
                vals = [v.decode("latin-1") for v in vals]
            outputs[name] = {"dtype": arr.dtype, "shape": resp.get_tensor_shape(name),
                             "values": vals}
        results.append({"ok": True, "outputs": outputs})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
