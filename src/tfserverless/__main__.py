"""``tfserverless serve [--config service.json]`` serves the model (settings from the
environment, or an EAS service config as it is); ``tfserverless render --config service.json
--platform aws|fc|cloudrun|knative|kserve|sagemaker [--protocol grpc]`` turns the config into deploy
parameters; ``tfserverless convert SAVED_MODEL OUT`` writes the LiteRT model the
``litert_cpu`` processor serves."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

from .config import serve_port
from .config_values import SERVE_PROTOCOLS
from .errors import ConfigError
from .tools import deploy
from .tools import render as renderers


def _load(path: str) -> deploy.Deployment:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ConfigError(f"--config {path}: {e.strerror}") from None
    except ValueError as e:
        raise ConfigError(f"--config {path} is not valid JSON: {e}") from None
    svc = deploy.parse_service(data, deploy.load_processors())
    for w in svc.warnings:
        print(f"tfserverless: {path}: {w}", file=sys.stderr)
    return svc


def installed_tensorflow() -> Optional[str]:
    """The installed TensorFlow's version, read from its package metadata (no import)."""
    from .startup import TENSORFLOW_DISTS, installed

    return installed(TENSORFLOW_DISTS)


def processor_note(processor: str, table: Dict[str, Any], installed: Optional[str]) -> str:
    """One line when the config's processor runs another TensorFlow than the one here."""
    proc = table["processors"][processor]
    if "tensorflow" not in proc:  # litert_cpu: no TensorFlow to differ
        return ""
    wanted = proc["tensorflow"].split("==")[-1]
    if installed is None or installed.split(".")[:2] == wanted.split(".")[:2]:
        return ""
    return (f"processor {processor} runs TensorFlow {wanted}; this machine serves the model "
            f"with TensorFlow {installed}. For the processor's own: packaging/build --processor "
            f"{processor} (then docker run -p 8080:8080 -e MODEL_PATH=... "
            f"tfserverless:{processor}-cloudrun)")


def unloadable(svc: deploy.Deployment, table: Dict[str, Any]) -> str:
    """Why the processor cannot serve a local model, if that can be told here: a SavedModel
    for litert_cpu (or a converted model for TensorFlow), ops its TensorFlow lacks."""
    path = svc.model_path
    if "://" in path or not os.path.isdir(path):
        return ""  # remote or an archive: only the load itself can tell
    from .storage import find_saved_model_root
    from .tools.graph_ops import cannot_load

    try:
        root = find_saved_model_root(path, quiet=True)
    except Exception:  # not a model: the load says so, with its own message
        return ""
    proc = table["processors"][svc.processor]
    converted = os.path.isfile(os.path.join(root, "litert.json"))
    if "tensorflow" not in proc:
        return "" if converted else (
            f"processor {svc.processor} serves `tfserverless convert` output; {path} is a "
            f"SavedModel: expected `tfserverless convert {path} <out>` and model_path <out>")
    if converted:
        return (f"{path} was converted for LiteRT; expected processor litert_cpu "
                f"({svc.processor} runs TensorFlow), or the SavedModel itself")
    wanted = proc["tensorflow"].split("==")[-1]
    line = cannot_load(root, wanted)
    return f"{line}; expected a processor whose TensorFlow can ({svc.processor} cannot)" if line else ""


QUANTIZE_CHOICES = ("none", "dynamic", "float16")  # convert.QUANTIZE's keys, without its import


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number >= 0")
    return value


def _batch_sizes(text: str) -> Tuple[int, ...]:
    try:
        sizes = tuple(int(p) for p in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or not all(1 <= n <= 4096 for n in sizes) or len(sizes) > 16:
        raise argparse.ArgumentTypeError(f"{text!r}: expected up to 16 comma-separated "
                                         "integers in 1..4096")
    return sizes


def _convert(args: argparse.Namespace) -> int:
    from .errors import TFServerlessError
    from .tools.convert import Refused, convert, summary  # TensorFlow: only when converting

    try:
        manifest = convert(args.saved_model, args.out, quantize=args.quantize, atol=args.atol,
                           rtol=args.rtol, batch_sizes=args.batch_sizes, seed=args.seed,
                           warmup=args.warmup, force=args.force,
                           signatures=[s for s in args.signatures.split(",") if s])
    except Refused as e:
        print(f"tfserverless: convert refused: {e.message}", file=sys.stderr)
        return 2
    except TFServerlessError as e:  # the SavedModel cannot be fetched or loaded
        print(f"tfserverless: convert: {e.message}", file=sys.stderr)
        return 2
    print("\n".join(summary(manifest, args.out)))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tfserverless", epilog="Settings (MODEL_PATH, SERVICE_TOKEN, RPC_*, WORKERS, ...) "
        "come from the environment; docs/configuration.md lists each with its default.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the model over HTTP (EAS protobuf, TF Serving "
                           "REST, V2); settings from the environment (MODEL_PATH, ...)")
    serve.add_argument("--config", help="an EAS service config (JSON); its settings override "
                       "the environment's (default: none, the environment alone)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, help="port (default: $PORT, else 8080; under "
                       "SageMaker $SAGEMAKER_BIND_TO_PORT, else 8080)")
    serve.add_argument("--grpc-port", type=int, help="also serve gRPC (TF Serving's "
                       "PredictionService, V2's GRPCInferenceService, health) on this port "
                       "(default: $GRPC_PORT, else none)")
    serve.add_argument("--protocol", choices=SERVE_PROTOCOLS, help="what --port speaks: http, "
                       "or grpc (cleartext HTTP/2, for platforms that route one port; HTTP then "
                       "listens on a unix socket only) (default: $PROTOCOL, else http)")
    render = sub.add_parser("render", help="print the deploy parameters for a platform")
    render.add_argument("--config", required=True, help="an EAS service config (JSON; required)")
    render.add_argument("--platform", required=True, choices=renderers.PLATFORMS,
                        help="the platform to deploy to (required; Knative and KServe print a "
                        "manifest)")
    render.add_argument("--protocol", choices=renderers.PROTOCOLS, default="http",
                        help="what the service's one port speaks: http, or grpc (serve "
                        "--protocol grpc: Knative/KServe name the port h2c and probe over gRPC, "
                        "Cloud Run gets --use-http2, FC s-grpc.yaml's custom container; aws and "
                        "sagemaker are refused). gRPC beside HTTP (serve --grpc-port) is not rendered: each "
                        "platform routes one port (default: %(default)s)")
    render.add_argument("--json", action="store_true",
                        help="print everything as JSON (default: text)")
    render.add_argument("--model-size", metavar="SIZE|auto",
                        help="size the platform's disk (Lambda EphemeralStorageSize, FC "
                        "DISK_SIZE, Cloud Run --memory, Kubernetes ephemeral-storage; SageMaker's "
                        "5 GB is checked) to the "
                        "model: SIZE is the SavedModel's bytes once extracted (800MB, 1.5GiB, "
                        "2G: units of 1024); auto reads it from the store (one HEAD or listing; "
                        "an archive's extracted size is estimated as 2x its own); a model that "
                        "cannot fit is refused. Default: a local model_path is read here, a "
                        "remote one leaves the platform's disk as before (Lambda and FC 10240 MB)")
    conv = sub.add_parser("convert", help="convert a SavedModel to LiteRT (the litert_cpu "
                          "processor), verified against TensorFlow; needs TensorFlow here")
    conv.add_argument("saved_model", help="the SavedModel: a directory, archive or URL, as "
                      "MODEL_PATH takes")
    conv.add_argument("out", help="where to write: a directory, or an archive (.tar.gz, .zip)")
    conv.add_argument("--signatures", default="", help="comma-separated signature names "
                      "(default: every signature)")
    conv.add_argument("--quantize", choices=sorted(QUANTIZE_CHOICES), default="none",
                      help="weights: none (float32), dynamic (int8) or float16 (default: "
                      "%(default)s); the measured error must still be within the tolerance")
    conv.add_argument("--atol", type=_tolerance, default=1e-5,
                      help="absolute tolerance vs TensorFlow (default: %(default)g)")
    conv.add_argument("--rtol", type=_tolerance, default=1e-4,
                      help="relative tolerance vs TensorFlow (default: %(default)g)")
    conv.add_argument("--batch-sizes", type=_batch_sizes, default=(1, 4, 16),
                      help="batch sizes of the random verification inputs (default: 1,4,16)")
    conv.add_argument("--seed", type=int, default=0, help="random inputs' seed (default: 0)")
    conv.add_argument("--warmup", help="warm-up requests to verify with, as WARM_UP_DATA_PATH "
                      "takes (.bin, .txt, TFRecord) (default: the SavedModel's assets.extra)")
    conv.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    if args.command == "convert":
        return _convert(args)
    try:
        svc = _load(args.config) if args.config else None
        if args.command == "render":
            assert svc is not None
            from .tools.modelsize import measure

            disk = measure(svc.model_path, args.model_size, os.environ)
            out = renderers.render(svc, args.platform, disk, protocol=args.protocol)
            if args.json:
                print(json.dumps(out, indent=1))
            elif "manifest" in out:  # Kubernetes: the manifest itself (kubectl reads JSON)
                for kind, lines in (("warning", out["warnings"]), ("you supply", out["you_supply"]),
                                    ("run", out["command"].splitlines())):
                    for line in lines:
                        print(f"tfserverless: {kind}: {line}", file=sys.stderr)
                print(json.dumps(out["manifest"], indent=1))
            else:
                image = f"image {out['image']}" if out["image"] else "no image (code + layer)"
                print(f"# {out['platform']}: {out['name']}, {image}")
                for w in out["warnings"]:
                    print(f"# warning: {w}")
                if disk is not None:
                    print(f"# disk: {out['disk']['line']}")
                    print(f"# {out['workers']}")
                for line in out["you_supply"]:
                    print(f"# you supply: {line}")
                for k, v in out["parameters"].items():
                    print(f"{k}={v}")
                print(out["command"])
            return 0
    except ConfigError as e:
        print(f"tfserverless: configuration error: {e.message}", file=sys.stderr)
        return 2
    if svc is not None:
        table = deploy.load_processors()
        note = processor_note(svc.processor, table, installed_tensorflow())
        if note:
            print(f"tfserverless: {note}", file=sys.stderr)
        refusal = unloadable(svc, table)
        if refusal:
            print(f"tfserverless: configuration error: {refusal}", file=sys.stderr)
            return 2
        os.environ.update(deploy.environment(svc))
    if args.grpc_port is not None:
        os.environ["GRPC_PORT"] = str(args.grpc_port)
    if args.protocol is not None:
        os.environ["PROTOCOL"] = args.protocol
    try:
        port = args.port if args.port is not None else serve_port(os.environ)
    except ConfigError as e:
        print(f"tfserverless: configuration error: {e.message}", file=sys.stderr)
        return 2
    from . import server  # gunicorn and the service: only when serving

    server.run(args.host, port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
