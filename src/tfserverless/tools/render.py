"""``tfserverless render``: an EAS service config -> one platform's deploy parameters, as data.

The table here, ``RENDERERS``, names one function per platform, each in its own module
(``render_aws``, ``render_fc``, ``render_cloudrun``, ``render_k8s`` for Knative and KServe;
what they share in ``render_common``).  Names are made to each platform's rules
(``platform_name``), images carry a registry placeholder, and EAS's autoscaler {min, max}
maps to each platform's counterpart: Lambda provisioned / reserved concurrency, Function
Compute provisioned instances (no per-function instance cap), Cloud Run min / max
instances, Knative min-scale / max-scale, KServe minReplicas / maxReplicas.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from ..errors import ConfigError
from . import render_aws, render_cloudrun, render_fc, render_k8s
from .deploy import Deployment
from .modelsize import Disk
from .render_common import Renderer, image_ref, image_tag, platform_name

RENDERERS: Dict[str, Renderer] = {
    "aws": render_aws.render, "fc": render_fc.render, "cloudrun": render_cloudrun.render,
    "knative": render_k8s.knative, "kserve": render_k8s.kserve}
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
