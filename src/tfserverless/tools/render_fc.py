"""``render --platform fc``: Alibaba Function Compute 3.0 through Serverless Devs: the
variables a template reads (``env('...')``) and the ``s deploy`` command: ``s.yaml`` over
HTTP, ``s-grpc.yaml`` over gRPC; FC's provisioned instances from EAS's autoscaler.min (FC
has no per-function instance cap)."""

from __future__ import annotations

import shlex
from typing import Any, Callable, Dict, NamedTuple, Optional

from ..errors import ConfigError
from .deploy import Deployment, environment
from .modelsize import Disk
from .render_common import LITERT, image_ref, image_tag, platform_name, timeout_s

FC_MAX_CONCURRENCY = 200  # FC 3.0's cap on instance concurrency
# diskSize is 512 or 10240 MB, nothing between (FC API 2023-03-30, CreateFunctionInput)
FC_DISK_SIZES_MB = (512, 10240)


def _layer(svc: Deployment) -> Dict[str, str]:
    """s.yaml runs the built-in Python runtime with TensorFlow from a layer."""
    build = "layers/build --platform fc" + (
        " --runtime litert --python 3.10" if svc.processor == LITERT else "")
    return {"LAYER_ARN": f"<ARN of the layer `{build}` built for {svc.processor}>"}


def _image(svc: Deployment) -> Dict[str, str]:
    """s-grpc.yaml runs the Cloud Run image, whose ``tfserverless serve`` speaks gRPC."""
    return {"IMAGE": image_ref(svc.processor, "fc", "cloudrun")}


class Template(NamedTuple):
    file: str
    flavour: str  # the image a GPU function would run, as a custom container
    what: str  # what the template deploys, for the GPU refusal
    needs: Callable[[Deployment], Dict[str, str]]  # its variables beyond the shared ones


#: FC carries gRPC to a function that is itself a gRPC server behind an HTTP trigger (FC "Use
#: gRPC with HTTP triggers"): clients connect with TLS to the trigger's fcapp.run domain (or a
#: custom domain routing /*) on port 8089; FC's gateway ends TLS and sends the calls on as
#: streams of one HTTP/2 connection, as many as the instance concurrency.  s.yaml's built-in
#: runtime answers HTTP events (handler/main.py) and cannot be one, so gRPC runs the Cloud Run
#: image as a custom container with PROTOCOL=grpc.  Assumed, from FC's own example (devsapp
#: start-fc fc-custom-golang-grpc: its server listens on 8089, caPort 8089): the container
#: listens on 8089 too, customContainerConfig.port and PORT set to it in s-grpc.yaml.
TEMPLATES = {
    "http": Template("s.yaml", "fc", "the CPU runtime", _layer),
    "grpc": Template("s-grpc.yaml", "cloudrun", "a CPU container", _image),
}


def _fc_disk(disk: Disk) -> str:
    for size in FC_DISK_SIZES_MB:
        if disk.need_mib <= size:
            return str(size)
    raise disk.refused(f"Function Compute's disk is {' or '.join(map(str, FC_DISK_SIZES_MB))} "
                       "MB", "use --platform cloudrun, knative or kserve, or a smaller model")


def render(svc: Deployment, disk: Optional[Disk]) -> Dict[str, Any]:
    template = TEMPLATES[svc.protocol]
    if svc.gpu:
        raise ConfigError(f"metadata.gpu={svc.gpu}: {template.file} deploys {template.what}; use "
                          f"the GPU container image {image_tag(svc.processor, 'fc', template.flavour)}"
                          " with runtime custom-container and a gpuConfig")
    function = platform_name(svc.name, "fc")
    vars_ = {"FUNCTION_NAME": function, "SERVICE_NAME": svc.name,
             "MODEL_PATH": svc.model_path, "WARM_UP_DATA_PATH": svc.warm_up_data_path,
             # FC wants memory in multiples of 64 MB and about 1 vCPU per 1-4 GB
             "MEMORY": str(min(32768, max(128, (svc.memory_mb + 63) // 64 * 64))),
             "CPU": f"{max(0.05, svc.cpu):g}", "TIMEOUT": str(min(86400, timeout_s(svc))),
             # FC sends an instance at most this many requests at once: EAS's queue
             "INSTANCE_CONCURRENCY": str(min(FC_MAX_CONCURRENCY, svc.concurrency)),
             "MIN_INSTANCES": str(svc.min_instances)}
    if disk is not None:  # else the template's default, 10240
        vars_["DISK_SIZE"] = _fc_disk(disk)
    vars_.update({k: v for k, v in environment(svc).items()
                  if k.startswith("RPC_") or k == "WORKERS"})
    # the code (a layer, or an image) and the role that reads the model: neither is in an EAS
    # config
    vars_.update(template.needs(svc))
    vars_["ROLE_ARN"] = "<ARN of a role that may read the model's OSS bucket>"
    env_line = " ".join(f"{k}={shlex.quote(v)}" for k, v in vars_.items())
    if svc.token:
        env_line += " SERVICE_TOKEN=<token from the config>"
    return {"image": vars_.get("IMAGE"), "name": function, "parameters": vars_,
            "command": f"{env_line} s deploy -t {template.file}"}


__all__ = ["FC_DISK_SIZES_MB", "FC_MAX_CONCURRENCY", "TEMPLATES", "Template", "render"]
