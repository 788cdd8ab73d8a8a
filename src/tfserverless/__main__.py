"""``python -m tfserverless serve|render --config service.json``: an EAS service config, as it
is, served locally or turned into deploy parameters for aws, fc or cloudrun."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from . import deploy
from .errors import ConfigError


def _load(path: str) -> deploy.Service:
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


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfserverless")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve an EAS service config locally (functions-framework)")
    serve.add_argument("--config", required=True)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    render = sub.add_parser("render", help="print the deploy parameters for a platform")
    render.add_argument("--config", required=True)
    render.add_argument("--platform", required=True, choices=deploy.PLATFORMS)
    render.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    try:
        svc = _load(args.config)
        if args.command == "render":
            out = deploy.render(svc, args.platform)
            if args.json:
                print(json.dumps(out, indent=1))
            else:
                print(f"# {out['platform']}: image {out['image']}")
                for k, v in out["parameters"].items():
                    print(f"{k}={v}")
                print(out["command"])
            return 0
    except ConfigError as e:
        print(f"tfserverless: configuration error: {e.message}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env.update(deploy.environment(svc))
    entry = os.path.join(os.path.dirname(os.path.abspath(__file__)), "entrypoints.py")
    cmd = [sys.executable, "-m", "functions_framework", "--source", entry, "--target", "predict",
           "--host", args.host, "--port", str(args.port)]
    os.execvpe(cmd[0], cmd, env)
    return 0  # pragma: no cover - execvpe does not return


if __name__ == "__main__":
    sys.exit(main())
