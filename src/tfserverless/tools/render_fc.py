"""``render --platform fc``: Alibaba Function Compute 3.0 through Serverless Devs: the
variables ``s.yaml`` reads (``env('...')``) and the ``s deploy`` command; FC's provisioned
instances from EAS's autoscaler.min (FC has no per-function instance cap)."""

from __future__ import annotations

import shlex
from typing import Any, Dict, Optional

from ..errors import ConfigError
from .deploy import Deployment, environment
from .modelsize import Disk
from .render_common import LITERT, image_tag, platform_name, timeout_s

FC_MAX_CONCURRENCY = 200  # FC 3.0's cap on instance concurrency
# diskSize is 512 or 10240 MB, nothing between (FC API 2023-03-30, CreateFunctionInput)
FC_DISK_SIZES_MB = (512, 10240)


def _fc_disk(disk: Disk) -> str:
    for size in FC_DISK_SIZES_MB:
        if disk.need_mib <= size:
            return str(size)
    raise disk.refused(f"Function Compute's disk is {' or '.join(map(str, FC_DISK_SIZES_MB))} "
                       "MB", "use --platform cloudrun, knative or kserve, or a smaller model")


def render(svc: Deployment, disk: Optional[Disk]) -> Dict[str, Any]:
    if svc.gpu:
        raise ConfigError(f"metadata.gpu={svc.gpu}: s.yaml deploys the CPU runtime; use the GPU "
                          f"container image {image_tag(svc.processor, 'fc')} with runtime "
                          "custom-container")
    function = platform_name(svc.name, "fc")
    vars_ = {"FUNCTION_NAME": function, "SERVICE_NAME": svc.name,
             "MODEL_PATH": svc.model_path, "WARM_UP_DATA_PATH": svc.warm_up_data_path,
             # FC wants memory in multiples of 64 MB and about 1 vCPU per 1-4 GB
             "MEMORY": str(min(32768, max(128, (svc.memory_mb + 63) // 64 * 64))),
             "CPU": f"{max(0.05, svc.cpu):g}", "TIMEOUT": str(min(86400, timeout_s(svc))),
             # FC sends an instance at most this many requests at once: EAS's queue
             "INSTANCE_CONCURRENCY": str(min(FC_MAX_CONCURRENCY, svc.concurrency)),
             "MIN_INSTANCES": str(svc.min_instances)}
    if disk is not None:  # else s.yaml's default, 10240
        vars_["DISK_SIZE"] = _fc_disk(disk)
    vars_.update({k: v for k, v in environment(svc).items()
                  if k.startswith("RPC_") or k == "WORKERS"})
    # s.yaml runs the built-in Python runtime with TensorFlow from a layer and reads the model
    # with the function's role: both are needed, neither is in an EAS config
    build = "layers/build --platform fc" + (
        " --runtime litert --python 3.10" if svc.processor == LITERT else "")
    vars_["LAYER_ARN"] = f"<ARN of the layer `{build}` built for {svc.processor}>"
    vars_["ROLE_ARN"] = "<ARN of a role that may read the model's OSS bucket>"
    env_line = " ".join(f"{k}={shlex.quote(v)}" for k, v in vars_.items())
    if svc.token:
        env_line += " SERVICE_TOKEN=<token from the config>"
    return {"image": None, "name": function, "parameters": vars_,
            "command": f"{env_line} s deploy -t s.yaml"}


__all__ = ["FC_DISK_SIZES_MB", "FC_MAX_CONCURRENCY", "render"]
