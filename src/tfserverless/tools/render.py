"""``tfserverless render``: an EAS service config -> one platform's deploy parameters, as data.

One function per platform in ``RENDERERS``.  Names are made to each platform's rules
(``platform_name``), images carry a registry placeholder, and EAS's autoscaler {min, max}
maps to each platform's counterpart: Lambda provisioned / reserved concurrency, Function
Compute provisioned instances (no per-function instance cap), Cloud Run min / max
instances, Knative min-scale / max-scale, KServe minReplicas / maxReplicas.
"""

from __future__ import annotations

import shlex
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..config import Config
from ..errors import ConfigError
from .deploy import Deployment, environment
from .modelsize import Disk

FC_MAX_CONCURRENCY = 200  # FC 3.0's cap on instance concurrency
CLOUD_RUN_MAX_CONCURRENCY = 1000
FLAVOURS = {"aws": "lambda", "fc": "fc", "cloudrun": "cloudrun", "knative": "cloudrun",
            "kserve": "cloudrun"}
#: where each platform pulls images from (fill in the placeholders)
REGISTRIES = {"aws": "<account>.dkr.ecr.<region>.amazonaws.com",
              "cloudrun": "<region>-docker.pkg.dev/<project>/<repository>",
              "fc": "registry.<region>.aliyuncs.com/<namespace>",
              "knative": "<registry>/<repository>", "kserve": "<registry>/<repository>"}
PORT = 8080
# The disk a model needs (modelsize.Disk), per platform:
# - Lambda: EphemeralStorage (/tmp) is any whole number of MB in 512..10240 (AWS Lambda API
#   reference, EphemeralStorage);
# - FC 3.0: diskSize is 512 or 10240 MB, nothing between (FC API 2023-03-30, CreateFunctionInput);
# - Cloud Run: the container's filesystem is in memory, so writing to it uses the instance's
#   memory (Cloud Run container runtime contract, "Filesystem access"): the model's disk is
#   added to --memory, at most 32 GiB, which needs 2/4/6/8 vCPUs above 4/8/16/24 GiB (Cloud
#   Run "Configure memory limits");
# - Knative / KServe: the writable layer is node-local ephemeral storage, requested and limited
#   as `ephemeral-storage`, and the container's logs count against the limit too (kubernetes.io
#   "Local ephemeral storage"): room for the kubelet's default rotation, 5 files of 10 Mi.
LAMBDA_DISK_MB = (512, 10240)
FC_DISK_SIZES_MB = (512, 10240)
CLOUD_RUN_MAX_MEMORY_MIB = 32768
CLOUD_RUN_MIN_CPU = ((24576, 8), (16384, 6), (8192, 4), (4096, 2))  # above MiB: at least vCPUs
K8S_LOG_ROOM_MIB = 50


LITERT = "litert_cpu"  # our processor: a converted model, no TensorFlow
LITERT_AWS_LAYER = "tfserverless-aws-litert-py3.11.zip"


def image_tag(processor: str, platform: str) -> str:
    return f"tfserverless:{processor}-{FLAVOURS[platform]}"


def image_ref(processor: str, platform: str) -> str:
    return f"{REGISTRIES[platform]}/{image_tag(processor, platform)}"


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


def _timeout(svc: Deployment) -> int:
    return max(1, (svc.keepalive_ms + 999) // 1000)


def _max_instances(svc: Deployment) -> int:
    return svc.max_instances or max(1, svc.instance)


def _lambda_disk(disk: Disk) -> str:
    lo, hi = LAMBDA_DISK_MB
    if disk.need_mib > hi:
        raise disk.refused(f"AWS Lambda's ephemeral storage is at most {hi} MB",
                           "use --platform cloudrun, knative or kserve, or a smaller model")
    return str(max(lo, disk.need_mib))


def _fc_disk(disk: Disk) -> str:
    for size in FC_DISK_SIZES_MB:
        if disk.need_mib <= size:
            return str(size)
    raise disk.refused(f"Function Compute's disk is {' or '.join(map(str, FC_DISK_SIZES_MB))} "
                       "MB", "use --platform cloudrun, knative or kserve, or a smaller model")


def _disk_env(disk: Optional[Disk]) -> Dict[str, str]:
    """A model past the fetch's bound on extracted bytes (MAX_EXTRACT_BYTES, there against zip
    bombs) raises the bound to the model's size; only Cloud Run and Kubernetes hold one."""
    if disk is not None and disk.need_bytes and disk.model_bytes > Config().max_extract_bytes:
        return {"MAX_EXTRACT_BYTES": str(disk.model_bytes)}
    return {}


def _aws(svc: Deployment, disk: Optional[Disk]) -> Dict[str, Any]:
    if svc.gpu:
        raise ConfigError(f"metadata.gpu={svc.gpu}: AWS Lambda has no GPUs; expected "
                          "--platform fc, cloudrun, knative or kserve for a GPU processor")
    litert = svc.processor == LITERT
    params = {
        **({"Runtime": "litert", "LiteLayerArn": "<ARN that publish-layer-version printed>"}
           if litert else {"ImageUri": image_ref(svc.processor, "aws")}),
        "ModelPath": svc.model_path, "WarmUpDataPath": svc.warm_up_data_path,
        "ServiceName": svc.name, "MemorySize": str(min(10240, max(128, svc.memory_mb))),
        "Timeout": str(min(900, _timeout(svc))),
        "ProvisionedConcurrency": str(svc.min_instances if svc.max_instances else svc.instance),
        "ReservedConcurrency": str(svc.max_instances or -1),
    }
    if disk is not None:  # else the template's default, 10240 (Lambda's most)
        params["EphemeralStorageSize"] = _lambda_disk(disk)
    # Lambda runs one request per instance: no queue to size; keepalive is the Timeout
    overrides = " ".join(f"{k}={shlex.quote(v)}" for k, v in params.items())
    if svc.token:
        overrides += " ServiceToken=<token from the config>"
    stack = platform_name(svc.name, "aws")
    deploy = (f"sam deploy --template-file template.yaml --stack-name {stack} "
              f"--capabilities CAPABILITY_IAM --parameter-overrides {overrides}")
    if litert:  # a zip function on a layer: build and publish the layer first
        deploy = (f"layers/build --platform aws --runtime litert\n"
                  f"aws lambda publish-layer-version --layer-name tfserverless-litert "
                  f"--zip-file fileb://build/layers/{LITERT_AWS_LAYER} --compatible-runtimes "
                  f"python3.11 --query LayerVersionArn --output text\n{deploy}")
    return {"image": params.get("ImageUri"), "name": stack, "parameters": params,
            "command": deploy}


def _fc(svc: Deployment, disk: Optional[Disk]) -> Dict[str, Any]:
    if svc.gpu:
        raise ConfigError(f"metadata.gpu={svc.gpu}: s.yaml deploys the CPU runtime; use the GPU "
                          f"container image {image_tag(svc.processor, 'fc')} with runtime "
                          "custom-container")
    function = platform_name(svc.name, "fc")
    vars_ = {"FUNCTION_NAME": function, "SERVICE_NAME": svc.name,
             "MODEL_PATH": svc.model_path, "WARM_UP_DATA_PATH": svc.warm_up_data_path,
             # FC wants memory in multiples of 64 MB and about 1 vCPU per 1-4 GB
             "MEMORY": str(min(32768, max(128, (svc.memory_mb + 63) // 64 * 64))),
             "CPU": f"{max(0.05, svc.cpu):g}", "TIMEOUT": str(min(86400, _timeout(svc))),
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


def _cloudrun_memory(svc: Deployment, disk: Optional[Disk]) -> int:
    """metadata.memory, plus the model's disk: Cloud Run's filesystem is its memory."""
    memory = max(512, svc.memory_mb)
    if disk is not None and disk.need_bytes:
        memory += disk.need_mib
        if memory > CLOUD_RUN_MAX_MEMORY_MIB:
            raise disk.refused(
                f"Cloud Run's filesystem is in memory, so --memory={memory}Mi with "
                f"metadata.memory={svc.memory_mb}, over its {CLOUD_RUN_MAX_MEMORY_MIB}Mi maximum",
                "use --platform knative or kserve, less metadata.memory, or a smaller model")
    return memory


def _cloudrun(svc: Deployment, disk: Optional[Disk]) -> Dict[str, Any]:
    image = image_ref(svc.processor, "cloudrun")
    memory = _cloudrun_memory(svc, disk)
    cpu = max([max(1, int(svc.cpu + 0.999))] + [n for above, n in CLOUD_RUN_MIN_CPU
                                                 if memory > above])
    flags = [f"--image={image}", f"--memory={memory}Mi",
             f"--concurrency={min(CLOUD_RUN_MAX_CONCURRENCY, svc.concurrency)}",
             f"--cpu={cpu}", f"--timeout={min(3600, _timeout(svc))}",
             f"--max-instances={_max_instances(svc)}", f"--min-instances={svc.min_instances}",
             f"--port={PORT}"]
    if svc.gpu:
        flags += [f"--gpu={svc.gpu}", "--gpu-type=nvidia-l4", "--no-cpu-throttling"]
    env = {k: v for k, v in environment(svc).items() if k != "SERVICE_TOKEN"}
    env.update(_disk_env(disk))
    flags.append("--set-env-vars=" + ",".join(f"{k}={v}" for k, v in env.items()))
    if svc.token:
        flags.append("--set-secrets=SERVICE_TOKEN=<secret name>:latest")
    service = platform_name(svc.name, "cloudrun")
    return {"image": image, "name": service, "parameters": env,
            "command": f"gcloud run deploy {service} " + " ".join(shlex.quote(f) for f in flags)}


def _container(svc: Deployment, platform: str, disk: Optional[Disk]) -> Dict[str, Any]:
    """The container both Kubernetes renderers run: the Cloud Run image, our probes."""
    env: List[Dict[str, Any]] = [{"name": k, "value": v} for k, v in
                                 {**environment(svc), **_disk_env(disk)}.items()
                                 if k != "SERVICE_TOKEN"]
    if svc.token:
        env.append({"name": "SERVICE_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": f"{platform_name(svc.name, platform)}-token", "key": "token"}}})
    resources: Dict[str, Dict[str, Any]] = {
        "requests": {"cpu": f"{svc.cpu:g}", "memory": f"{svc.memory_mb}Mi"},
        "limits": {"cpu": f"{svc.cpu:g}", "memory": f"{svc.memory_mb}Mi"}}
    if svc.gpu:
        resources["limits"]["nvidia.com/gpu"] = str(svc.gpu)
    if disk is not None and disk.need_bytes:  # the model cache, in the writable layer, and the logs
        for part in resources.values():
            part["ephemeral-storage"] = f"{disk.need_mib + K8S_LOG_ROOM_MIB}Mi"
    return {"image": image_ref(svc.processor, platform), "env": env,
            "ports": [{"containerPort": PORT, "protocol": "TCP"}], "resources": resources,
            # readiness waits for the load and warm-up; liveness only for the process
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": PORT}, "periodSeconds": 2},
            "livenessProbe": {"httpGet": {"path": "/healthz/live", "port": PORT},
                              "periodSeconds": 10}}


def _knative(svc: Deployment, disk: Optional[Disk]) -> Dict[str, Any]:
    name = platform_name(svc.name, "knative")
    manifest = {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"template": {
            "metadata": {"annotations": {
                "autoscaling.knative.dev/min-scale": str(svc.min_instances),
                "autoscaling.knative.dev/max-scale": str(_max_instances(svc))}},
            "spec": {"containerConcurrency": svc.concurrency,
                     "timeoutSeconds": min(3600, _timeout(svc)),
                     "containers": [_container(svc, "knative", disk)]}}}}
    return {"image": image_ref(svc.processor, "knative"), "name": name, "manifest": manifest,
            "parameters": {}, "command": "kubectl apply -f <this manifest>"}


def _kserve(svc: Deployment, disk: Optional[Disk]) -> Dict[str, Any]:
    """A custom predictor.  MODEL_PATH rather than ``storageUri``: KServe's storage
    initializer copies the model into every new pod before it starts; our fetch streams it
    once per pod too, but checks the version (ETag) into MODEL_CACHE_DIR, speaks oss:// and
    reports progress on /healthz while the pod is up."""
    name = platform_name(svc.name, "kserve")
    container = dict(_container(svc, "kserve", disk), name="kserve-container")
    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": {"minReplicas": svc.min_instances,
                               "maxReplicas": _max_instances(svc),
                               "containerConcurrency": svc.concurrency,
                               "timeout": min(3600, _timeout(svc)),
                               "containers": [container]}}}
    return {"image": container["image"], "name": name, "manifest": manifest, "parameters": {},
            "command": "kubectl apply -f <this manifest>"}


RENDERERS: Dict[str, Callable[[Deployment, Optional[Disk]], Dict[str, Any]]] = {
    "aws": _aws, "fc": _fc, "cloudrun": _cloudrun, "knative": _knative, "kserve": _kserve}
PLATFORMS = tuple(RENDERERS)


def render(svc: Deployment, platform: str, disk: Optional[Disk] = None) -> Dict[str, Any]:
    """Deploy parameters for one platform, as data (the CLI prints them); with ``disk`` (the
    model's, ``modelsize.measure``) the platform's disk is sized to it, else left as before."""
    renderer = RENDERERS.get(platform)
    if renderer is None:
        raise ConfigError(f"--platform {platform!r}; expected one of {', '.join(PLATFORMS)}")
    workers = ""
    if disk is not None:
        svc, workers = _workers(svc, disk)
    out = dict(renderer(svc, disk), platform=platform)
    if disk is not None:
        out["disk"] = dict(disk._asdict(), need_mib=disk.need_mib, line=disk.line())
        out["workers"] = workers
    return out


def _workers(svc: Deployment, disk: Disk) -> Tuple[Deployment, str]:
    """WORKERS as ``serve`` would choose it for this model in the config's memory (``sizing``):
    one for a large model, never more copies than fit; metadata.cpu alone said one per vCPU,
    which a 2 GB instance with a 1 GB model cannot hold."""
    from ..config import Config
    from ..sizing import ModelSize, choose

    choice = choose(Config(workers=svc.workers), svc.workers, svc.memory_mb << 20,
                    ModelSize(disk.model_bytes, ""))
    return svc._replace(sized_workers=choice.workers), choice.line


__all__ = ["PLATFORMS", "RENDERERS", "image_ref", "image_tag", "platform_name", "render"]
