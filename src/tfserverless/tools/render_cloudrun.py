"""``render --platform cloudrun``: the ``gcloud run deploy`` command for the Cloud Run image;
Cloud Run's min / max instances from EAS's autoscaler, ``--concurrency`` from its queue.  The
token goes through Secret Manager: the commands before the deploy create the secret from
``$SERVICE_TOKEN`` (``render_secrets``) and let the service's account read it."""

from __future__ import annotations

import shlex
from typing import Any, Dict, Optional

from .deploy import Deployment, environment
from .modelsize import Disk
from .render_common import PORT, disk_env, image_ref, max_instances, platform_name, timeout_s
from .render_secrets import TOKEN_REF

CLOUD_RUN_MAX_CONCURRENCY = 1000
# The container's filesystem is in memory, so writing to it uses the instance's memory (Cloud
# Run container runtime contract, "Filesystem access"): the model's disk is added to --memory,
# at most 32 GiB, which needs 2/4/6/8 vCPUs above 4/8/16/24 GiB (Cloud Run "Configure memory
# limits")
CLOUD_RUN_MAX_MEMORY_MIB = 32768
CLOUD_RUN_MIN_CPU = ((24576, 8), (16384, 6), (8192, 4), (4096, 2))  # above MiB: at least vCPUs
#: what each protocol adds to the command.  gRPC: with --use-http2 (which names the port h2c)
#: Cloud Run's proxy speaks cleartext HTTP/2 to the container, as gRPC needs end to end
#: (Cloud Run "Use HTTP/2 for services").  The command sets no probe: Cloud Run's default
#: startup probe is a TCP connect to the port, which a gRPC port answers as an HTTP one does.
PROTOCOL_FLAGS = {"http": (), "grpc": ("--use-http2",)}
#: the account a service runs as unless told otherwise: the project's default compute one
SERVICE_ACCOUNT = "<project-number>-compute@developer.gserviceaccount.com"
ACCOUNT_LINE = ("<project-number>: your project's number (gcloud projects describe <project> "
                "--format='value(projectNumber)'); the service runs as its default compute "
                "account, which must read the token's secret")


def _secret(service: str) -> str:
    """The commands that store the token as a secret the service's account may read."""
    secret = f"{service}-token"
    return (f"printf %s {TOKEN_REF} | gcloud secrets create {secret} --data-file=-\n"
            f"gcloud secrets add-iam-policy-binding {secret} "
            f"--member=serviceAccount:{SERVICE_ACCOUNT} --role=roles/secretmanager.secretAccessor\n")


def _memory(svc: Deployment, disk: Optional[Disk]) -> int:
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


def render(svc: Deployment, disk: Optional[Disk]) -> Dict[str, Any]:
    image = image_ref(svc.processor, "cloudrun")
    memory = _memory(svc, disk)
    cpu = max([max(1, int(svc.cpu + 0.999))] + [n for above, n in CLOUD_RUN_MIN_CPU
                                                 if memory > above])
    flags = [f"--image={image}", f"--memory={memory}Mi",
             f"--concurrency={min(CLOUD_RUN_MAX_CONCURRENCY, svc.concurrency)}",
             f"--cpu={cpu}", f"--timeout={min(3600, timeout_s(svc))}",
             f"--max-instances={max_instances(svc)}", f"--min-instances={svc.min_instances}",
             f"--port={PORT}", *PROTOCOL_FLAGS[svc.protocol]]
    if svc.gpu:
        flags += [f"--gpu={svc.gpu}", "--gpu-type=nvidia-l4", "--no-cpu-throttling"]
    env = {k: v for k, v in environment(svc).items() if k != "SERVICE_TOKEN"}
    env.update(disk_env(disk))
    flags.append("--set-env-vars=" + ",".join(f"{k}={v}" for k, v in env.items()))
    service = platform_name(svc.name, "cloudrun")
    if svc.token:
        flags.append(f"--set-secrets=SERVICE_TOKEN={service}-token:latest")
    deploy = f"gcloud run deploy {service} " + " ".join(shlex.quote(f) for f in flags)
    return {"image": image, "name": service, "parameters": env,
            "command": (_secret(service) if svc.token else "") + deploy,
            "you_supply": [ACCOUNT_LINE] if svc.token else []}


__all__ = ["ACCOUNT_LINE", "CLOUD_RUN_MAX_CONCURRENCY", "CLOUD_RUN_MAX_MEMORY_MIB", "CLOUD_RUN_MIN_CPU",
           "PROTOCOL_FLAGS", "SERVICE_ACCOUNT", "render"]
