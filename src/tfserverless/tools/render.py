"""``tfserverless render``: an EAS service config -> one platform's deploy parameters, as data.

The table here, ``RENDERERS``, names one function per platform, each in its own module
(``render_aws``, ``render_fc``, ``render_cloudrun``, ``render_k8s`` for Knative and KServe,
``render_sagemaker``; what they share in ``render_common``).  Names are made to each platform's rules
(``platform_name``), images carry a registry placeholder, and EAS's autoscaler {min, max}
maps to each platform's counterpart: Lambda provisioned / reserved concurrency, Function
Compute provisioned instances (no per-function instance cap), Cloud Run min / max
instances, Knative min-scale / max-scale, KServe minReplicas / maxReplicas, SageMaker
serverless provisioned / max concurrency.  A renderer may add ``warnings``: lines about what
the platform does differently from EAS, which the CLI prints as comments; and ``you_supply``:
what only the user can fill in (an ARN, an account), one line each, to which
``render_secrets`` adds the image's registry, the token and another cloud's credentials.

``protocol`` is what the service's one port speaks: ``http``, or ``grpc`` (``serve
--protocol grpc``: cleartext HTTP/2, HTTP on a unix socket only), which each platform carries
its own way (``REFUSED`` names the one that cannot).  gRPC beside HTTP (``serve
--grpc-port``) is not rendered: every platform here routes one port to the container.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from ..config_values import SERVE_PROTOCOLS
from ..errors import ConfigError
from . import render_aws, render_cloudrun, render_fc, render_k8s, render_sagemaker, render_secrets
from .deploy import Deployment
from .modelsize import Disk
from .render_common import Renderer, image_ref, image_tag, platform_name

RENDERERS: Dict[str, Renderer] = {
    "aws": render_aws.render, "fc": render_fc.render, "cloudrun": render_cloudrun.render,
    "knative": render_k8s.knative, "kserve": render_k8s.kserve,
    "sagemaker": render_sagemaker.render}
PLATFORMS = tuple(RENDERERS)
PROTOCOLS = SERVE_PROTOCOLS
#: (platform, protocol) -> why the platform cannot carry it, one line; absent: it can
REFUSED = {
    ("aws", "grpc"): "--protocol grpc: AWS Lambda has no gRPC path in (API Gateway and function "
                     "URLs carry HTTP/1.1 requests and responses only); expected --platform "
                     "cloudrun, knative or kserve (or fc)",
    ("sagemaker", "grpc"): "--protocol grpc: SageMaker's InvokeEndpoint carries HTTP requests "
                           "only (one body in, one out); expected --platform cloudrun, knative or "
                           "kserve (or fc)",
}
#: Over gRPC the platform's proxy sends its calls as streams on one HTTP/2 connection, and a
#: connection reaches one worker (the kernel spreads connections, not streams): one worker
#: serves them, and more would each hold a copy of the model for nothing.
GRPC_WORKERS = 1
GRPC_WORKERS_LINE = ("workers: 1 (gRPC: the platform's calls arrive as streams on one HTTP/2 "
                     "connection, which one worker serves)")


def render(svc: Deployment, platform: str, disk: Optional[Disk] = None,
           protocol: Optional[str] = None) -> Dict[str, Any]:
    """Deploy parameters for one platform, as data (the CLI prints them); with ``disk`` (the
    model's, ``modelsize.measure``) the platform's disk is sized to it, else left as before;
    ``protocol`` (else the service's) is what its port speaks."""
    renderer = RENDERERS.get(platform)
    if renderer is None:
        raise ConfigError(f"--platform {platform!r}; expected one of {', '.join(PLATFORMS)}")
    if protocol is not None:
        if protocol not in PROTOCOLS:
            raise ConfigError(f"--protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
        svc = svc._replace(protocol=protocol)
    refusal = REFUSED.get((platform, svc.protocol))
    if refusal:
        raise ConfigError(refusal)
    workers = ""
    if disk is not None:
        svc, workers = _workers(svc, disk)
    if svc.protocol == "grpc":
        svc = svc._replace(sized_workers=GRPC_WORKERS)
        workers = workers and GRPC_WORKERS_LINE
    out = dict(renderer(svc, disk), platform=platform)
    out.setdefault("warnings", [])
    out["you_supply"] = render_secrets.you_supply(svc, platform, out)
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


__all__ = ["GRPC_WORKERS", "PLATFORMS", "PROTOCOLS", "REFUSED", "RENDERERS", "image_ref",
           "image_tag", "platform_name", "render"]
