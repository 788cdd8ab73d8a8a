"""``render --platform aws``: the SAM template's (``template.yaml``) parameters and the
``sam deploy`` command; Lambda's provisioned / reserved concurrency from EAS's autoscaler.
``ModelBucket`` (the bucket the function's role may read) is the model's S3 bucket, else the
warm-up file's; the token is read from ``$SERVICE_TOKEN`` (``render_secrets``)."""

from __future__ import annotations

import shlex
from typing import Any, Dict, Optional

from ..errors import ConfigError
from .deploy import Deployment
from .modelsize import Disk
from .render_common import (
    LITERT,
    LITERT_AWS_LAYER,
    image_ref,
    platform_name,
    s3_bucket,
    timeout_s,
    warm_up_warning,
)
from .render_secrets import TOKEN_REF

#: LiteLayerArn, until the user has published the layer: what the publish command prints
LAYER_LINE = ("LiteLayerArn: the LayerVersionArn that `aws lambda publish-layer-version` (the "
              "second command) prints, in place of <ARN that publish-layer-version printed>")

# EphemeralStorage (/tmp) is any whole number of MB in 512..10240 (AWS Lambda API reference,
# EphemeralStorage)
LAMBDA_DISK_MB = (512, 10240)


def _lambda_disk(disk: Disk) -> str:
    lo, hi = LAMBDA_DISK_MB
    if disk.need_mib > hi:
        raise disk.refused(f"AWS Lambda's ephemeral storage is at most {hi} MB",
                           "use --platform cloudrun, knative or kserve, or a smaller model")
    return str(max(lo, disk.need_mib))


def render(svc: Deployment, disk: Optional[Disk]) -> Dict[str, Any]:
    if svc.gpu:
        raise ConfigError(f"metadata.gpu={svc.gpu}: AWS Lambda has no GPUs; expected "
                          "--platform fc, cloudrun, knative or kserve for a GPU processor")
    litert = svc.processor == LITERT
    params = {
        **({"Runtime": "litert", "LiteLayerArn": "<ARN that publish-layer-version printed>"}
           if litert else {"ImageUri": image_ref(svc.processor, "aws")}),
        "ModelPath": svc.model_path, "WarmUpDataPath": svc.warm_up_data_path,
        "ModelBucket": s3_bucket(svc.model_path, svc.warm_up_data_path),
        "ServiceName": svc.name, "MemorySize": str(min(10240, max(128, svc.memory_mb))),
        "Timeout": str(min(900, timeout_s(svc))),
        "ProvisionedConcurrency": str(svc.min_instances if svc.max_instances else svc.instance),
        "ReservedConcurrency": str(svc.max_instances or -1),
    }
    if not params["ModelBucket"]:  # no S3 read granted (the template's default)
        del params["ModelBucket"]
    if disk is not None:  # else the template's default, 10240 (Lambda's most)
        params["EphemeralStorageSize"] = _lambda_disk(disk)
    # Lambda runs one request per instance: no queue to size; keepalive is the Timeout
    overrides = " ".join(f"{k}={shlex.quote(v)}" for k, v in params.items())
    if svc.token:
        overrides += f" ServiceToken={TOKEN_REF}"
    stack = platform_name(svc.name, "aws")
    deploy = (f"sam deploy --template-file template.yaml --stack-name {stack} "
              f"--capabilities CAPABILITY_IAM --parameter-overrides {overrides}")
    if litert:  # a zip function on a layer: build and publish the layer first
        deploy = (f"layers/build --platform aws --runtime litert\n"
                  f"aws lambda publish-layer-version --layer-name tfserverless-litert "
                  f"--zip-file fileb://build/layers/{LITERT_AWS_LAYER} --compatible-runtimes "
                  f"python3.11 --query LayerVersionArn --output text\n{deploy}")
    return {"image": params.get("ImageUri"), "name": stack, "parameters": params,
            "command": deploy, "you_supply": [LAYER_LINE] if litert else [],
            "warnings": warm_up_warning(svc, params.get("ModelBucket", ""))}


__all__ = ["LAMBDA_DISK_MB", "render"]
