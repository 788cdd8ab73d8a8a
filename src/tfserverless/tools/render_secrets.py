"""What a rendered deploy needs that only the user can supply, one line each (``render``'s
``you_supply``, printed as ``# you supply:`` lines): the registry an image goes to, the token,
and credentials for a model on another cloud's store.

The token: the config holds it, but a command that carried it would put it in this output and
in the shell's history, so each platform's command reads ``$SERVICE_TOKEN`` instead
(``TOKEN_REF``: Lambda's and FC's template parameter, a Secret Manager secret on Cloud Run,
a Kubernetes Secret on Knative and KServe), and a ``you supply`` line says to export it.

A store's credentials: each platform's own identity reads its own cloud's store (a role
granted ModelBucket on AWS, FC's role for OSS, the Cloud Run service account for GCS); a model
anywhere else needs the variables the server's store reads (``storage/``), which each platform
carries its own way (``CARRIERS``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple
from urllib.parse import urlsplit

from .deploy import Deployment
from .render_common import PLACEHOLDER, image_supply

#: how a command passes the token: the variable, expanded by the user's shell
TOKEN_REF = '"$SERVICE_TOKEN"'
TOKEN_LINE = ("SERVICE_TOKEN: export SERVICE_TOKEN=<the token from the config> before running "
              "the commands, which read it (the token is never printed here)")
#: a store -> (the variables the server reads for it, the platforms whose identity reads it)
STORES: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "s3": ("AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION", ("aws", "sagemaker")),
    "oss": ("OSS_ENDPOINT (or OSS_REGION), ALIBABA_CLOUD_ACCESS_KEY_ID and "
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET", ("fc",)),
    "gs": ("GOOGLE_APPLICATION_CREDENTIALS (a service-account key file in the container)",
           ("cloudrun",)),
}
#: how each platform gets a secret into the function's environment
CARRIERS = {
    "aws": "template.yaml passes none: add them to Globals.Function.Environment",
    "sagemaker": "sagemaker.yaml passes none: add them to the Model's Environment",
    "fc": "the s*.yaml templates pass none: add them to environmentVariables",
    "cloudrun": "as Secret Manager secrets, --set-secrets=NAME=<secret>:latest",
    "knative": "from a Secret, as env entries with secretKeyRef (as SERVICE_TOKEN's)",
    "kserve": "from a Secret, as env entries with secretKeyRef (as SERVICE_TOKEN's)",
}


def credentials(svc: Deployment, platform: str) -> List[str]:
    """One line per store the model or warm-up file is on that the platform cannot read."""
    foreign: Dict[str, List[str]] = {}
    for path in (svc.model_path, svc.warm_up_data_path):
        scheme = urlsplit(path).scheme
        if scheme in STORES and platform not in STORES[scheme][1]:
            foreign.setdefault(scheme, []).append(path)
    return [f"{scheme}:// credentials (for {' and '.join(paths)}): the function needs "
            f"{STORES[scheme][0]}; {CARRIERS[platform]}" for scheme, paths in foreign.items()]


def you_supply(svc: Deployment, platform: str, out: Dict[str, Any]) -> List[str]:
    """The renderer's own lines, the image's and the token's where the command reads them, and
    the credentials of another cloud's store."""
    lines: List[str] = []
    if out.get("image") and PLACEHOLDER.search(out["image"]):
        lines.append(image_supply(out["image"]))
    if TOKEN_REF in out["command"]:
        lines.append(TOKEN_LINE)
    return lines + list(out.get("you_supply", [])) + credentials(svc, platform)


__all__ = ["CARRIERS", "STORES", "TOKEN_LINE", "TOKEN_REF", "credentials", "you_supply"]
