"""What every platform's renderer shares: the images (``image_tag``, ``image_ref``, per
platform flavour and registry), names made to each platform's rules (``platform_name``),
the port ``tfserverless serve`` listens on, and EAS's settings read the way every platform
needs them (``timeout_s``, ``max_instances``, ``disk_env``)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from ..config import Config
from .deploy import Deployment
from .modelsize import Disk

FLAVOURS = {"aws": "lambda", "fc": "fc", "cloudrun": "cloudrun", "knative": "cloudrun",
            "kserve": "cloudrun"}
#: where each platform pulls images from (fill in the placeholders)
REGISTRIES = {"aws": "<account>.dkr.ecr.<region>.amazonaws.com",
              "cloudrun": "<region>-docker.pkg.dev/<project>/<repository>",
              "fc": "registry.<region>.aliyuncs.com/<namespace>",
              "knative": "<registry>/<repository>", "kserve": "<registry>/<repository>"}
PORT = 8080  # the Cloud Run image's `tfserverless serve` (its $PORT)

LITERT = "litert_cpu"  # our processor: a converted model, no TensorFlow
LITERT_AWS_LAYER = "tfserverless-aws-litert-py3.11.zip"

#: one platform's renderer: the service and the model's disk, if known -> the deploy
#: parameters, as data
Renderer = Callable[[Deployment, Optional[Disk]], Dict[str, Any]]


def image_tag(processor: str, platform: str, flavour: str = "") -> str:
    return f"tfserverless:{processor}-{flavour or FLAVOURS[platform]}"


def image_ref(processor: str, platform: str, flavour: str = "") -> str:
    """The image in the platform's registry; ``flavour`` another build than the platform's
    own (Function Compute's gRPC function runs the Cloud Run image's ``tfserverless serve``)."""
    return f"{REGISTRIES[platform]}/{image_tag(processor, platform, flavour)}"


def platform_name(name: str, platform: str) -> str:
    """The EAS service name as each platform accepts one: a CloudFormation stack name
    (``[A-Za-z][-A-Za-z0-9]*``, 128), an FC function (``[_A-Za-z][-_A-Za-z0-9]*``, 64), a Cloud
    Run / Knative / KServe service (``[a-z]([-a-z0-9]*[a-z0-9])?``, 63).  ``tf_serving_test`` ->
    ``tf-serving-test`` where ``_`` is not allowed."""
    if platform == "fc":
        out = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in name)
        return (out if out[:1].isalpha() or out[:1] == "_" else "f_" + out)[:64]
    out = "".join(c if c.isascii() and c.isalnum() else "-" for c in name)
    if platform == "aws":
        return (out if out[:1].isalpha() else "s-" + out)[:128]
    out = out.lower()
    out = (out if out[:1].isalpha() else "s-" + out)[:63].rstrip("-")
    return out or "tfserverless"


def timeout_s(svc: Deployment) -> int:
    """EAS's keepalive (a request's whole time, ms) in whole seconds, at least one."""
    return max(1, (svc.keepalive_ms + 999) // 1000)


def max_instances(svc: Deployment) -> int:
    """EAS autoscaler.max, else metadata.instance."""
    return svc.max_instances or max(1, svc.instance)


def disk_env(disk: Optional[Disk]) -> Dict[str, str]:
    """A model past the fetch's bound on extracted bytes (MAX_EXTRACT_BYTES, there against zip
    bombs) raises the bound to the model's size; only Cloud Run and Kubernetes hold one."""
    if disk is not None and disk.need_bytes and disk.model_bytes > Config().max_extract_bytes:
        return {"MAX_EXTRACT_BYTES": str(disk.model_bytes)}
    return {}


__all__ = ["FLAVOURS", "LITERT", "LITERT_AWS_LAYER", "PORT", "REGISTRIES", "Renderer",
           "disk_env", "image_ref", "image_tag", "max_instances", "platform_name", "timeout_s"]
