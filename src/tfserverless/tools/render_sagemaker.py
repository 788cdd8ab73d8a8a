"""``render --platform sagemaker``: Amazon SageMaker serverless inference, running the Cloud Run
image (its ``tfserverless serve`` answers ``GET /ping`` and ``POST /invocations``): the
parameters of ``sagemaker.yaml`` and the ``aws cloudformation deploy`` command.

What EAS's config becomes:

- memory: ``metadata.memory`` rounded up to serverless's 1 GB steps (1024..6144; more is
  refused: serverless has no bigger size);
- ``MaxConcurrency``: what the EAS service takes at once before it sheds (instances, each
  running plus queued per worker: ``Deployment.concurrency``), at most serverless's 200.
  SageMaker counts it per endpoint, not per instance, and throttles invocations past it, as
  EAS answers 450 past its queues;
- ``ProvisionedConcurrency``: what EAS keeps running, as the Lambda renderer maps it
  (``autoscaler.min``, else ``metadata.instance``), at most ``MaxConcurrency``;
- the model: an ``s3://`` ``.tar.gz`` / ``.tgz`` is ``ModelDataUrl``, which SageMaker unpacks
  into /opt/ml/model before the container starts (the server reads it there, ``MODEL_PATH``
  left empty); any other path is ``MODEL_PATH``, which the server fetches itself (oss://, s3://
  prefixes, gs://, http(s)://); a model on S3 names its bucket for the role to read.

Refused in one line: GPUs and more than 6144 MB (serverless has neither), gRPC
(``render.REFUSED``), a model whose disk (``--model-size``) is past serverless's 5 GB of
ephemeral storage.  Said as warnings: a keepalive past SageMaker's 60 s invocation (capped to
it), a warm-up file in another S3 bucket than the model's (the role reads only ModelBucket),
the config's token (not passed on: ``TOKEN_LINE``).
The 4 MB payload cap needs no warning: the EAS config cannot raise MAX_BODY_BYTES, and
``sagemaker.yaml`` sets it to 4 MB, the most SageMaker passes on.
"""

from __future__ import annotations

import shlex
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from ..errors import ConfigError
from .deploy import Deployment, environment, load_processors
from .modelsize import Disk
from .render_common import image_ref, max_instances, platform_name, s3_bucket, warm_up_warning

# SageMaker serverless inference's limits (ProductionVariantServerlessConfig; "Serverless
# Inference" feature limits)
SERVERLESS_MEMORY_MB = (1024, 6144)  # in 1024 MB steps
SERVERLESS_MAX_CONCURRENCY = 200
SERVERLESS_DISK_MB = 5120  # ephemeral storage, 5 GB (counted as MiB, as modelsize does)
INVOCATION_MS = 60_000  # SageMaker ends an invocation after 60 s
PAYLOAD_BYTES = 4 << 20  # the request payload cap; sagemaker.yaml's MAX_BODY_BYTES
ARCHIVES = (".tar.gz", ".tgz")  # what SageMaker unpacks from a ModelDataUrl
ALTERNATIVES = "--platform cloudrun, knative or kserve"
#: the config's token is not passed on: InvokeEndpoint is authorised by IAM and SageMaker hands
#: the container the body, Content-Type, Accept and CustomAttributes only, never the caller's
#: Authorization, so /invocations would answer every call 401
TOKEN_LINE = ("token: SageMaker passes no Authorization header to the container (IAM's "
              "sagemaker:InvokeEndpoint guards the endpoint), so a SERVICE_TOKEN would refuse "
              "every invocation; ServiceToken is left empty: grant InvokeEndpoint to the callers")
#: sagemaker.yaml's parameter for each variable ``deploy.environment`` sets (SERVICE_TOKEN is
#: left empty, TOKEN_LINE; PROTOCOL is never other than http here); each is always passed, empty for
#: serve's default, since ``aws cloudformation deploy`` keeps a stack's previous value of a
#: parameter left out
ENV_PARAMS = {"MODEL_PATH": "ModelPath", "SERVICE_NAME": "ServiceName",
              "WARM_UP_DATA_PATH": "WarmUpDataPath", "WORKERS": "Workers",
              "RPC_WORKER_THREADS": "RpcWorkerThreads", "RPC_MAX_QUEUE_SIZE": "RpcMaxQueueSize",
              "RPC_KEEPALIVE": "RpcKeepalive", "RPC_RATE_LIMIT": "RpcRateLimit",
              "RPC_BATCHING": "RpcBatching", "RPC_MAX_BATCH_SIZE": "RpcMaxBatchSize",
              "RPC_MAX_BATCH_TIMEOUT": "RpcMaxBatchTimeout"}


def _refuse_gpu(svc: Deployment) -> None:
    device = load_processors()["processors"][svc.processor]["device"]
    if svc.gpu or device == "gpu":
        what = f"metadata.gpu={svc.gpu}" if svc.gpu else f"processor {svc.processor}"
        raise ConfigError(f"{what}: SageMaker serverless inference has no GPUs; expected "
                          f"{ALTERNATIVES} (or a SageMaker real-time endpoint)")


def memory_mb(svc: Deployment) -> int:
    """metadata.memory rounded up to serverless's 1 GB steps; past 6144 MB, refused."""
    lo, hi = SERVERLESS_MEMORY_MB
    if svc.memory_mb > hi:
        raise ConfigError(f"metadata.memory={svc.memory_mb}: SageMaker serverless inference "
                          f"gives at most {hi} MB; expected metadata.memory <= {hi}, or "
                          f"{ALTERNATIVES}")
    return max(lo, -(-svc.memory_mb // 1024) * 1024)


def concurrency(svc: Deployment) -> Tuple[int, int]:
    """(MaxConcurrency, ProvisionedConcurrency): see the module's docstring."""
    most = min(SERVERLESS_MAX_CONCURRENCY, max_instances(svc) * svc.concurrency)
    warm = svc.min_instances if svc.max_instances else svc.instance
    return most, min(most, warm)


def model_source(path: str) -> Dict[str, str]:
    """ModelDataUrl (an S3 archive SageMaker unpacks) or MODEL_PATH, and the S3 bucket."""
    bucket = s3_bucket(path)
    archive = bool(bucket) and urlsplit(path).path.lower().endswith(ARCHIVES)
    return {"ModelDataUrl": path if archive else "", "ModelPath": "" if archive else path,
            "ModelBucket": bucket}


def _disk(disk: Disk) -> None:
    if disk.need_mib > SERVERLESS_DISK_MB:
        raise disk.refused(f"SageMaker serverless inference's ephemeral storage is "
                           f"{SERVERLESS_DISK_MB} MB", f"use {ALTERNATIVES}, or a smaller model")


def warnings(svc: Deployment, bucket: str) -> List[str]:
    out = [TOKEN_LINE] if svc.token else []
    if svc.keepalive_ms > INVOCATION_MS:
        out.append(f"metadata.rpc.keepalive={svc.keepalive_ms} ms: SageMaker ends an invocation "
                   f"at {INVOCATION_MS // 1000} s, so RPC_KEEPALIVE is {INVOCATION_MS} (a longer "
                   "request fails either way; expected keepalive <= 60000, or "
                   f"{ALTERNATIVES})")
    out += warm_up_warning(svc, bucket)
    return out


def render(svc: Deployment, disk: Optional[Disk]) -> Dict[str, Any]:
    _refuse_gpu(svc)
    memory = memory_mb(svc)
    if disk is not None:
        _disk(disk)
    most, warm = concurrency(svc)
    source = model_source(svc.model_path)
    env = dict.fromkeys(ENV_PARAMS, "")
    env.update((k, v) for k, v in environment(svc).items() if k in ENV_PARAMS)
    env["RPC_KEEPALIVE"] = str(min(INVOCATION_MS, svc.keepalive_ms))
    del env["MODEL_PATH"]  # the source's: empty with a ModelDataUrl
    params = {"EndpointName": platform_name(svc.name, "sagemaker"),
              "ImageUri": image_ref(svc.processor, "sagemaker"), **source,
              **{ENV_PARAMS[k]: v for k, v in env.items()},
              "MemorySizeInMB": str(memory), "MaxConcurrency": str(most),
              "ProvisionedConcurrency": str(warm)}
    overrides = " ".join(f"{k}={shlex.quote(v)}" for k, v in params.items())
    overrides += " ServiceToken=''"  # see TOKEN_LINE
    stack = params["EndpointName"]
    command = (f"aws cloudformation deploy --template-file sagemaker.yaml --stack-name {stack} "
               f"--capabilities CAPABILITY_IAM --parameter-overrides {overrides}")
    return {"image": params["ImageUri"], "name": stack, "parameters": params,
            "command": command, "warnings": warnings(svc, source["ModelBucket"])}


__all__ = ["ARCHIVES", "ENV_PARAMS", "INVOCATION_MS", "PAYLOAD_BYTES", "SERVERLESS_DISK_MB",
           "SERVERLESS_MAX_CONCURRENCY", "SERVERLESS_MEMORY_MB", "TOKEN_LINE", "concurrency", "memory_mb",
           "model_source", "render", "warnings"]
