"""``render --platform knative|kserve``: the manifests (a Knative Service, a KServe
InferenceService with a custom predictor), both running the Cloud Run image in one container
with our probes; min / max scale from EAS's autoscaler, ``containerConcurrency`` from its
queue.  The token is a Secret the container reads with ``secretKeyRef``; the command creates it
from ``$SERVICE_TOKEN`` (``render_secrets``) before applying the manifest, which holds no token."""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

from .deploy import Deployment, environment
from .modelsize import Disk
from .render_common import PORT, disk_env, image_ref, max_instances, platform_name, timeout_s
from .render_secrets import TOKEN_REF

#: what ``kubectl apply -f <this manifest>`` reads: the JSON ``render`` prints on stdout
MANIFEST_LINE = ("<this manifest>: the JSON render prints on stdout, saved to a file "
                 "(render ... > manifest.json)")
# The writable layer is node-local ephemeral storage, requested and limited as
# `ephemeral-storage`, and the container's logs count against the limit too (kubernetes.io
# "Local ephemeral storage"): room for the kubelet's default rotation, 5 files of 10 Mi.
K8S_LOG_ROOM_MIB = 50
#: the container port's name per protocol: Knative (and KServe, on Knative) speaks cleartext
#: HTTP/2 to a port named h2c, HTTP/1.1 to any other (Knative's grpc-ping sample; KServe's
#: custom gRPC predictor names it the same)
PORT_NAMES = {"grpc": "h2c"}
#: readiness waits for the load and warm-up; liveness only for the process.  Over gRPC,
#: HTTP is on no port: readiness is Kubernetes' own gRPC probe (grpc.health.v1.Health/Check,
#: SERVING once loaded and warmed up); liveness a TCP connect to the port, because that
#: Check says NOT_SERVING while the model loads and a gRPC liveness probe would restart a
#: pod still loading (what /healthz/live, 200 in every state, is there to avoid over HTTP).
PROBES: Dict[str, Dict[str, Any]] = {
    "http": {"readinessProbe": {"httpGet": {"path": "/healthz", "port": PORT}, "periodSeconds": 2},
             "livenessProbe": {"httpGet": {"path": "/healthz/live", "port": PORT},
                               "periodSeconds": 10}},
    "grpc": {"readinessProbe": {"grpc": {"port": PORT}, "periodSeconds": 2},
             "livenessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 10}},
}


def _secret(svc: Deployment, platform: str) -> str:
    return f"{platform_name(svc.name, platform)}-token"


def _command(svc: Deployment, platform: str) -> str:
    """Apply the manifest, after creating the token's Secret from the environment."""
    apply = "kubectl apply -f <this manifest>"
    if not svc.token:
        return apply
    return (f"kubectl create secret generic {_secret(svc, platform)} "
            f"--from-literal=token={TOKEN_REF}\n{apply}")


def _container(svc: Deployment, platform: str, disk: Optional[Disk]) -> Dict[str, Any]:
    """The container both Kubernetes renderers run: the Cloud Run image, our probes."""
    env: List[Dict[str, Any]] = [{"name": k, "value": v} for k, v in
                                 {**environment(svc), **disk_env(disk)}.items()
                                 if k != "SERVICE_TOKEN"]
    if svc.token:
        env.append({"name": "SERVICE_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": _secret(svc, platform), "key": "token"}}})
    resources: Dict[str, Dict[str, Any]] = {
        "requests": {"cpu": f"{svc.cpu:g}", "memory": f"{svc.memory_mb}Mi"},
        "limits": {"cpu": f"{svc.cpu:g}", "memory": f"{svc.memory_mb}Mi"}}
    if svc.gpu:
        resources["limits"]["nvidia.com/gpu"] = str(svc.gpu)
    if disk is not None and disk.need_bytes:  # the model cache, in the writable layer, and the logs
        for part in resources.values():
            part["ephemeral-storage"] = f"{disk.need_mib + K8S_LOG_ROOM_MIB}Mi"
    name = PORT_NAMES.get(svc.protocol)
    port = {**({"name": name} if name else {}), "containerPort": PORT, "protocol": "TCP"}
    return {"image": image_ref(svc.processor, platform), "env": env, "ports": [port],
            "resources": resources, **copy.deepcopy(PROBES[svc.protocol])}


def knative(svc: Deployment, disk: Optional[Disk]) -> Dict[str, Any]:
    name = platform_name(svc.name, "knative")
    manifest = {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"template": {
            "metadata": {"annotations": {
                "autoscaling.knative.dev/min-scale": str(svc.min_instances),
                "autoscaling.knative.dev/max-scale": str(max_instances(svc))}},
            "spec": {"containerConcurrency": svc.concurrency,
                     "timeoutSeconds": min(3600, timeout_s(svc)),
                     "containers": [_container(svc, "knative", disk)]}}}}
    return {"image": image_ref(svc.processor, "knative"), "name": name, "manifest": manifest,
            "parameters": {}, "command": _command(svc, "knative"), "you_supply": [MANIFEST_LINE]}


def kserve(svc: Deployment, disk: Optional[Disk]) -> Dict[str, Any]:
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
                               "maxReplicas": max_instances(svc),
                               "containerConcurrency": svc.concurrency,
                               "timeout": min(3600, timeout_s(svc)),
                               "containers": [container]}}}
    return {"image": container["image"], "name": name, "manifest": manifest, "parameters": {},
            "command": _command(svc, "kserve"), "you_supply": [MANIFEST_LINE]}


__all__ = ["K8S_LOG_ROOM_MIB", "MANIFEST_LINE", "PORT_NAMES", "PROBES", "knative", "kserve"]
