"""What every platform's renderer shares: the images (``image_tag``, ``image_ref``, per
platform flavour and registry), names made to each platform's rules (``platform_name``),
the port ``tfserverless serve`` listens on, and EAS's settings read the way every platform
needs them (``timeout_s``, ``max_instances``, ``disk_env``), the S3 bucket a role must read
(``s3_bucket``, ``warm_up_warning``) and the line saying how to fill an image's registry
placeholders (``image_supply``)."""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urlsplit

from ..config import Config
from .deploy import Deployment
from .modelsize import Disk

FLAVOURS = {"aws": "lambda", "fc": "fc", "cloudrun": "cloudrun", "knative": "cloudrun",
            "kserve": "cloudrun", "sagemaker": "cloudrun"}
#: where each platform pulls images from (fill in the placeholders)
REGISTRIES = {"aws": "<account>.dkr.ecr.<region>.amazonaws.com",
              "sagemaker": "<account>.dkr.ecr.<region>.amazonaws.com",
              "cloudrun": "<region>-docker.pkg.dev/<project>/<repository>",
              "fc": "registry.<region>.aliyuncs.com/<namespace>",
              "knative": "<registry>/<repository>", "kserve": "<registry>/<repository>"}
PLACEHOLDER = re.compile(r"<[^<>]+>")  # what the user fills in, as it is printed
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


def image_supply(image: str) -> str:
    """The ``you supply`` line for an image reference: how it is built and where it goes."""
    registry, tag = image.rsplit("/", 1)
    processor, flavour = tag.split(":", 1)[1].rsplit("-", 1)
    return (f"image: packaging/build --processor {processor} --flavour {flavour}, tagged and "
            f"pushed as {image} ({', '.join(dict.fromkeys(PLACEHOLDER.findall(registry)))} "
            "yours)")


def platform_name(name: str, platform: str) -> str:
    """The EAS service name as each platform accepts one: a CloudFormation stack name
    (``[A-Za-z][-A-Za-z0-9]*``, 128), an FC function (``[_A-Za-z][-_A-Za-z0-9]*``, 64), a Cloud
    Run / Knative / KServe service (``[a-z]([-a-z0-9]*[a-z0-9])?``, 63), a SageMaker endpoint
    that is also its stack's name (``[a-zA-Z0-9](-*[a-zA-Z0-9])*``, 63, and a letter first).
    ``tf_serving_test`` -> ``tf-serving-test`` where ``_`` is not allowed."""
    if platform == "fc":
        out = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in name)
        return (out if out[:1].isalpha() or out[:1] == "_" else "f_" + out)[:64]
    out = "".join(c if c.isascii() and c.isalnum() else "-" for c in name)
    if platform in ("aws", "sagemaker"):
        out = out if out[:1].isalpha() else "s-" + out
        return out[:128] if platform == "aws" else out[:63].rstrip("-")
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


def s3_bucket(*paths: str) -> str:
    """The S3 bucket of the first ``s3://`` path (the model's, else the warm-up file's), which
    the AWS renderers grant their role read on; empty when none is on S3."""
    return next((urlsplit(p).netloc for p in paths if urlsplit(p).scheme == "s3"), "")


def warm_up_warning(svc: Deployment, bucket: str) -> List[str]:
    """A warm-up file in another S3 bucket than the one the role may read."""
    warm = urlsplit(svc.warm_up_data_path)
    if warm.scheme != "s3" or warm.netloc == bucket:
        return []
    return [f"warm_up_data_path {svc.warm_up_data_path} is in S3 bucket {warm.netloc!r}; the role "
            f"reads only ModelBucket ({bucket or 'none'}): expected the warm-up file beside the "
            "model, or the role granted that bucket"]


__all__ = ["FLAVOURS", "LITERT", "LITERT_AWS_LAYER", "PLACEHOLDER", "PORT", "REGISTRIES",
           "Renderer", "disk_env", "image_ref", "image_supply", "image_tag", "max_instances",
           "platform_name", "s3_bucket", "timeout_s", "warm_up_warning"]
