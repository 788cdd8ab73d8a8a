"""``render --platform fc``: Alibaba Function Compute 3.0 through Serverless Devs: the
variables a template reads (``env('...')``) and the ``s deploy`` command: over HTTP
``s-image.yaml`` (a TensorFlow processor's image as a custom container) or ``s.yaml`` (the
built-in runtime with the litert_cpu layer), ``s-grpc.yaml`` over gRPC; FC's provisioned
instances from EAS's autoscaler.min (FC has no per-function instance cap).  What no EAS config
holds is printed as placeholders with the commands that produce them and a ``you supply``
line each: the region, the image or the layer (built and pushed or published before the
deploy), the RAM role the function assumes; the token is read from ``$SERVICE_TOKEN``
(``render_secrets``)."""

from __future__ import annotations

import shlex
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from ..errors import ConfigError
from .deploy import Deployment, environment
from .modelsize import Disk
from .render_common import LITERT, image_ref, image_tag, platform_name, timeout_s
from .render_secrets import TOKEN_REF

FC_MAX_CONCURRENCY = 200  # FC 3.0's cap on instance concurrency
# diskSize is 512 or 10240 MB, nothing between (FC API 2023-03-30, CreateFunctionInput)
FC_DISK_SIZES_MB = (512, 10240)


FC_PYTHON = "3.10"  # s.yaml's runtime, python3.10: the layer is built for it
ACCOUNT_LINE = ("<region>, <account-id>: your Alibaba Cloud region (e.g. cn-shanghai: the function, "
                "its layer and an oss:// model's bucket in it) and account ID")
ROLE_LINE = ("ROLE_ARN: a RAM role Function Compute may assume (trusted service fc.aliyuncs.com) "
             "that reads the model's OSS bucket (AliyunOSSReadOnlyAccess), "
             "acs:ram::<account-id>:role/<role>")
LAYER_LINE = ("LAYER_ARN: acs:fc:<region>:<account-id>:layers/<name>/versions/<version>, with the "
              "version the `s cli fc3 layer publish` command prints")


def _layer_name(svc: Deployment) -> str:
    return "tfserverless-litert" if svc.processor == LITERT else "tfserverless"


def _layer(svc: Deployment) -> Dict[str, str]:
    """s.yaml runs the built-in Python runtime with the engine from a layer."""
    return {"LAYER_ARN": f"acs:fc:<region>:<account-id>:layers/{_layer_name(svc)}/versions/<version>"}


def _publish(svc: Deployment) -> str:
    """The commands that build and publish the layer LAYER_ARN names."""
    litert = svc.processor == LITERT
    build = f"layers/build --platform fc{' --runtime litert' if litert else ''} --python {FC_PYTHON}"
    zip_ = f"build/layers/tfserverless-fc{'-litert' if litert else ''}-py{FC_PYTHON}.zip"
    return (f"{build}\ns cli fc3 layer publish --region <region> --layer-name {_layer_name(svc)} "
            f"--code {zip_} --compatible-runtime python{FC_PYTHON}\n")


def _image(svc: Deployment) -> Dict[str, str]:
    """s-grpc.yaml runs the Cloud Run image, whose ``tfserverless serve`` speaks gRPC."""
    return {"IMAGE": image_ref(svc.processor, "fc", "cloudrun")}


def _fc_image(svc: Deployment) -> Dict[str, str]:
    """s-image.yaml runs the processor's FC image (gunicorn serving handler/main.py's
    ``fc_app``, whose ``POST /initialize`` is the initializer)."""
    return {"IMAGE": image_ref(svc.processor, "fc", "fc")}


class Template(NamedTuple):
    file: str
    flavour: str  # the image a GPU function would run, as a custom container
    what: str  # what the template deploys, for the GPU refusal
    needs: Callable[[Deployment], Dict[str, str]]  # its variables beyond the shared ones
    before: Callable[[Deployment], str]  # the commands that make what they name, if any
    supply: List[str]  # the lines saying what of them only the user has


#: FC carries gRPC to a function that is itself a gRPC server behind an HTTP trigger (FC "Use
#: gRPC with HTTP triggers"): clients connect with TLS to the trigger's fcapp.run domain (or a
#: custom domain routing /*) on port 8089; FC's gateway ends TLS and sends the calls on as
#: streams of one HTTP/2 connection, as many as the instance concurrency.  s.yaml's built-in
#: runtime answers HTTP events (handler/main.py) and cannot be one, so gRPC runs the Cloud Run
#: image as a custom container with PROTOCOL=grpc.  Assumed, from FC's own example (devsapp
#: start-fc fc-custom-golang-grpc: its server listens on 8089, caPort 8089): the container
#: listens on 8089 too, customContainerConfig.port and PORT set to it in s-grpc.yaml.
#: Over HTTP a TensorFlow processor runs its own image as a custom container (s-image.yaml):
#: TensorFlow does not fit a layer of FC's built-in python3.10 runtime (tensorflow-cpu has no
#: wheel for it past 2.20, and a layer is 500 MB zipped at most); the litert_cpu processor runs
#: on that runtime with its LiteRT layer (s.yaml), no image to build or push.
TEMPLATES = {
    "layer": Template("s.yaml", "fc", "the CPU runtime", _layer, _publish, [LAYER_LINE]),
    "image": Template("s-image.yaml", "fc", "a CPU container", _fc_image, lambda svc: "", []),
    "grpc": Template("s-grpc.yaml", "cloudrun", "a CPU container", _image, lambda svc: "", []),
}


def template_for(svc: Deployment) -> Template:
    """gRPC: s-grpc.yaml; HTTP: s.yaml for litert_cpu, s-image.yaml for TensorFlow."""
    if svc.protocol == "grpc":
        return TEMPLATES["grpc"]
    return TEMPLATES["layer" if svc.processor == LITERT else "image"]


def _fc_disk(disk: Disk) -> str:
    for size in FC_DISK_SIZES_MB:
        if disk.need_mib <= size:
            return str(size)
    raise disk.refused(f"Function Compute's disk is {' or '.join(map(str, FC_DISK_SIZES_MB))} "
                       "MB", "use --platform cloudrun, knative or kserve, or a smaller model")


def render(svc: Deployment, disk: Optional[Disk]) -> Dict[str, Any]:
    template = template_for(svc)
    if svc.gpu:
        raise ConfigError(f"metadata.gpu={svc.gpu}: {template.file} deploys {template.what}; use "
                          f"the GPU container image {image_tag(svc.processor, 'fc', template.flavour)}"
                          " with runtime custom-container and a gpuConfig")
    function = platform_name(svc.name, "fc")
    vars_ = {"REGION": "<region>", "FUNCTION_NAME": function, "SERVICE_NAME": svc.name,
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
    vars_["ROLE_ARN"] = "acs:ram::<account-id>:role/<role>"
    env_line = " ".join(f"{k}={shlex.quote(v)}" for k, v in vars_.items())
    if svc.token:
        env_line += f" SERVICE_TOKEN={TOKEN_REF}"
    return {"image": vars_.get("IMAGE"), "name": function, "parameters": vars_,
            "command": f"{template.before(svc)}{env_line} s deploy -t {template.file}",
            "you_supply": [ACCOUNT_LINE, *template.supply, ROLE_LINE]}


__all__ = ["ACCOUNT_LINE", "FC_DISK_SIZES_MB", "FC_MAX_CONCURRENCY", "FC_PYTHON", "LAYER_LINE",
           "ROLE_LINE", "TEMPLATES", "Template", "render", "template_for"]
