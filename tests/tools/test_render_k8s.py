"""Fast lane: `render --platform knative|kserve` manifests against the real CRD schemas of
Knative Serving and KServe (vendored in tests/data/crds/), strictly: unknown fields fail."""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Dict

import jsonschema
import pytest

from tfserverless.tools import deploy, render

from ..conftest import DATA

CONFIG = {"name": "tf_serving_test", "model_path": "oss://bucket/models/model.tar.gz",
          "processor": "tensorflow_cpu_2.21", "token": "t0k",
          "autoscaler": {"min": 1, "max": 4},
          "metadata": {"instance": 2, "cpu": 2, "memory": 4000, "gpu": 0,
                       "rpc": {"keepalive": 30000, "worker_threads": 4, "max_queue_size": 16}}}
SCHEMAS = {"knative": "knative-serving-service.v1.schema.json",
           "kserve": "kserve-inferenceservice.v1beta1.schema.json"}


def strict(schema: Any) -> Any:
    """Objects that name their properties accept no others (kubectl --validate=strict),
    except where the schema preserves unknown fields."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and \
            not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def validator(platform: str) -> jsonschema.Draft7Validator:
    with open(os.path.join(DATA, "crds", SCHEMAS[platform]), encoding="utf-8") as f:
        return jsonschema.Draft7Validator(strict(json.load(f)))


def manifest(platform: str, config: Dict[str, Any] = CONFIG) -> Dict[str, Any]:
    svc = deploy.parse_service(config, deploy.load_processors())
    return dict(render.render(svc, platform)["manifest"])


@pytest.mark.parametrize("platform", ["knative", "kserve"])
def test_manifests_validate_against_the_crd(platform: str) -> None:
    errors = sorted(validator(platform).iter_errors(manifest(platform)), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


@pytest.mark.parametrize("platform", ["knative", "kserve"])
def test_a_misspelt_field_is_caught(platform: str) -> None:
    bad = manifest(platform)
    spec = bad["spec"]["template"]["spec"] if platform == "knative" else bad["spec"]["predictor"]
    spec["containerConcurency"] = 3
    assert list(validator(platform).iter_errors(bad)), "the strict schema let a typo through"
    wrong = copy.deepcopy(manifest(platform))
    (wrong["spec"]["template"]["spec"] if platform == "knative"
     else wrong["spec"]["predictor"])["containers"][0]["ports"] = "8080"
    assert list(validator(platform).iter_errors(wrong))


def test_knative_maps_eas_settings() -> None:
    m = manifest("knative")
    assert m["metadata"]["name"] == "tf-serving-test"
    tmpl = m["spec"]["template"]
    assert tmpl["metadata"]["annotations"] == {"autoscaling.knative.dev/min-scale": "1",
                                               "autoscaling.knative.dev/max-scale": "4"}
    # 2 workers (metadata.cpu), each 4 running + 16 queued, as EAS sizes one instance
    assert tmpl["spec"]["containerConcurrency"] == 40 and tmpl["spec"]["timeoutSeconds"] == 30
    (c,) = tmpl["spec"]["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz/live"
    env = {e["name"]: e for e in c["env"]}
    assert env["MODEL_PATH"]["value"] == CONFIG["model_path"] and "WORKERS" not in env
    assert "value" not in env["SERVICE_TOKEN"]  # a secret reference, never the token itself
    assert "t0k" not in json.dumps(m)
    assert c["resources"]["limits"] == {"cpu": "2", "memory": "4000Mi"}


def test_kserve_predictor() -> None:
    m = manifest("kserve")
    p = m["spec"]["predictor"]
    assert (p["minReplicas"], p["maxReplicas"], p["containerConcurrency"]) == (1, 4, 40)
    assert p["containers"][0]["name"] == "kserve-container"
    gpu = manifest("kserve", dict(CONFIG, processor="tensorflow_gpu_2.7",
                                  metadata=dict(CONFIG["metadata"], gpu=1)))
    assert gpu["spec"]["predictor"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert not list(validator("kserve").iter_errors(gpu))
