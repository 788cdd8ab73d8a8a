"""``tfserverless convert SAVED_MODEL OUT``: a SavedModel to LiteRT, verified before it is
written.  A deploy-time tool: it needs TensorFlow (for the converter and as the reference);
what it writes is served without TensorFlow by ``model_litert``.

Every signature (or those named) goes into one ``model.tflite`` with signature runners; the
manifest ``litert.json`` keeps the SavedModel's own signature specs (so every protocol answers
as on TensorFlow), the source's fingerprint, the versions, the options, and the measured error
and speed.  Nothing is written unless TensorFlow and LiteRT agree within the tolerance on
deterministic random inputs at several batch sizes and on the model's warm-up requests.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

from ..backends.litert import LiteModel
from ..backends.litert_manifest import MANIFEST, MODEL_FILE, new_manifest, write_manifest
from ..backends.tensorflow import tensorflow_module
from ..config import Config
from ..errors import TFServerlessError
from ..protocol.base import Call
from ..protocol.eas import EAS
from .verify import Case, Refused, random_cases, speed, verify

ARCHIVES = (".tar.gz", ".tgz", ".zip")


def _tf() -> Any:
    # Deferred: only conversion needs TensorFlow; `tfserverless --help` must not wait for it.
    return tensorflow_module(quiet=True)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The converter's MLIR diagnostics go to fd 2 from C++; a refusal is our one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _dynamic(tf: Any, conv: Any) -> None:
    conv.optimizations = [tf.lite.Optimize.DEFAULT]


def _float16(tf: Any, conv: Any) -> None:
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]


# --quantize: how each option sets up the converter
QUANTIZE: Dict[str, Callable[[Any, Any], None]] = {
    "none": lambda tf, conv: None,
    "dynamic": _dynamic,  # int8 weights, float activations: ~4x smaller
    "float16": _float16,  # float16 weights: ~2x smaller
}

# ops the converter leaves out rather than refuse: checks that make TensorFlow answer a 400
DROPPED_CHECKS = ("Assert", "CheckNumerics")
_FAILED_SIG = re.compile(r"failed while converting: '([^']+)'")
_SELECT_OPS = re.compile(r"TF Select ops: ([^\n]+)")
_NOT_BUILTIN = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")


def fingerprint(root: str) -> str:
    """sha256 over the SavedModel's graph and variables (paths and bytes, in order)."""
    h = hashlib.sha256()
    variables = sorted(os.path.relpath(os.path.join(d, f), root)
                       for d, _, fs in os.walk(os.path.join(root, "variables")) for f in fs)
    files = ["saved_model.pb", *variables]
    for rel in files:
        h.update(rel.encode() + b"\0")
        with open(os.path.join(root, rel), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _needs_flex(text: str) -> Optional[str]:
    """The ops named when the converter wanted TensorFlow's flex delegate, if it did."""
    m = _SELECT_OPS.search(text)
    if m:
        return m.group(1).strip()
    ops = sorted(set(_NOT_BUILTIN.findall(text)))
    return ", ".join(ops) if ops else None


def _convert(tf: Any, root: str, keys: Sequence[str], quantize: str) -> bytes:
    conv = tf.lite.TFLiteConverter.from_saved_model(root, signature_keys=list(keys))
    QUANTIZE[quantize](tf, conv)
    try:
        with _quiet_stderr():
            return bytes(conv.convert())
    except Exception as e:
        text = str(e)
        ops = _needs_flex(text)
        if ops is None:
            first = next((ln.strip() for ln in text.splitlines() if "error" in ln.lower()),
                         text.strip().splitlines()[0] if text.strip() else type(e).__name__)
            raise Refused(f"the LiteRT converter failed: {first[:300]}") from None
        m = _FAILED_SIG.search(text)
        sig = m.group(1) if m else None
        if sig is None and len(keys) > 1:  # find the signature by converting each alone
            for key in keys:
                try:
                    _convert(tf, root, [key], quantize)
                except Refused:
                    sig = key
                    break
        others = [k for k in keys if k != sig]
        raise Refused(
            f"signature {sig or keys[0]!r} uses {ops}, which LiteRT runs only with TensorFlow's "
            "flex delegate (that would bring TensorFlow back); expected --signatures "
            f"{','.join(others) if others else '<signatures without it>'}") from None


def dropped_checks(root: str) -> List[str]:
    """The SavedModel's check ops LiteRT does not run (TensorFlow's 400s it will not give)."""
    from .graph_ops import ops_used

    with open(os.path.join(root, "saved_model.pb"), "rb") as f:
        used = ops_used(f.read())[0]
    return sorted(set(used) & set(DROPPED_CHECKS))


def _warmup_cases(config: Config, root: str, warmup: Optional[str], model: Any,
                  keys: Sequence[str]) -> List[Case]:
    from .. import storage
    from ..serving import warmup as wu

    if warmup:
        try:
            with open(warmup, "rb") as f:
                bodies = wu.parse_warmup_file(warmup, f.read(256 << 20))
        except OSError as e:
            raise Refused(f"--warmup {warmup}: {e.strerror}; expected a readable warm-up file "
                          "(.bin, .txt or TFRecord)") from None
    else:
        bodies = wu.load_requests(config, root, storage.read_bytes)[1]
    cases = []
    for i, body in enumerate(bodies, 1):
        try:
            d = EAS().decode(body, {}, model, Call())
        except TFServerlessError as e:
            raise Refused(f"warm-up request {i} cannot be verified with: {e.message}") from None
        if d.sig.name in keys:
            cases.append(Case(d.sig, d.feeds, d.outputs, f"warm-up request {i}"))
    return cases


def _write(staged: str, out: str) -> None:
    """Move the finished directory to ``out`` (or pack it there): never a partial ``out``."""
    parent = os.path.dirname(os.path.abspath(out))
    for d, _, fs in os.walk(staged):  # mkdtemp's 0700 would keep the serving user out
        os.chmod(d, 0o755)
        for f in fs:
            os.chmod(os.path.join(d, f), 0o644)
    if not out.endswith(ARCHIVES):
        os.replace(staged, out)
        return
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=".convert-")
    os.close(fd)
    try:
        if out.endswith(".zip"):
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                for d, _, fs in os.walk(staged):
                    for f in sorted(fs):
                        full = os.path.join(d, f)
                        zf.write(full, os.path.relpath(full, staged))
        else:
            with tarfile.open(tmp, "w:gz") as tf_:
                for name in sorted(os.listdir(staged)):
                    tf_.add(os.path.join(staged, name), name)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        shutil.rmtree(staged, ignore_errors=True)


def convert(src: str, out: str, *, signatures: Sequence[str] = (), quantize: str = "none",
            atol: float = 1e-5, rtol: float = 1e-4, batch_sizes: Sequence[int] = (1, 4, 16),
            seed: int = 0, warmup: Optional[str] = None, force: bool = False,
            environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Convert, verify, write; the manifest it wrote.  ``Refused`` (one line) otherwise."""
    from .. import storage
    from ..backends.tensorflow import Model

    if os.path.lexists(out) and not force:
        raise Refused(f"{out} exists; expected a new path (or --force to replace it)")
    config = Config.from_environ({**(environ if environ is not None else os.environ),
                                  "MODEL_PATH": src})
    root = storage.fetch_model(config).path
    if os.path.isfile(os.path.join(root, MANIFEST)):
        raise Refused(f"{src} is already converted ({MANIFEST}); expected a SavedModel")
    with _quiet_stderr():  # TensorFlow's start-up chatter; its errors still raise
        tf = _tf()
        reference = Model.load(root)
    if int(str(tf.__version__).split(".")[0]) < 2:
        raise Refused(f"convert needs TensorFlow 2 (its converter takes signature keys); this "
                      f"is {tf.__version__}: run it where `pip install tensorflow-cpu` is")
    unknown = sorted(set(signatures) - set(reference.signatures))
    if unknown:
        raise Refused(f"--signatures names {', '.join(map(repr, unknown))}, which the SavedModel "
                      f"lacks; expected some of {', '.join(map(repr, sorted(reference.signatures)))}")
    keys = sorted(signatures or reference.signatures)
    flat = _convert(tf, root, keys, quantize)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staged = tempfile.mkdtemp(dir=parent, prefix=".convert-")
    try:
        with open(os.path.join(staged, MODEL_FILE), "wb") as f:
            f.write(flat)
        extra = os.path.join(root, "assets.extra")
        if os.path.isdir(extra):  # the warm-up requests travel with the model
            shutil.copytree(extra, os.path.join(staged, "assets.extra"))
        manifest = new_manifest({k: reference.signatures[k] for k in keys})
        write_manifest(staged, manifest)
        cases = [c for k in keys for c in random_cases(reference.signatures[k], batch_sizes, seed)]
        warm = _warmup_cases(config, root, warmup, reference, keys)
        with _quiet_stderr():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line
            candidate = LiteModel.load(staged)
            report = verify(reference, candidate, cases + warm, atol=atol, rtol=rtol)
            timing = {}
            for k in keys:
                mine = [c for c in cases if c.sig.name == k]
                timing[k] = {c.source: {"tensorflow_ms": round(speed(reference, c) * 1e3, 4),
                                        "litert_ms": round(speed(candidate, c) * 1e3, 4)}
                             for c in (mine[0], mine[-1])}
        candidate.close()
        reference.close()
        manifest.update(
            source={"saved_model": src if "://" in src else os.path.basename(src.rstrip("/")),
                    "sha256": fingerprint(root)},
            converter={"tensorflow": str(tf.__version__), "runtime": candidate.runtime,
                       "quantize": quantize, "signatures": keys,
                       "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                           timespec="seconds")},
            verification={"atol": atol, "rtol": rtol, "batch_sizes": list(batch_sizes),
                          "seed": seed, "warm_up_requests": len(warm), "signatures": report},
            speed=timing, bytes=len(flat), dropped_checks=dropped_checks(root),
        )
        write_manifest(staged, manifest)
        if os.path.lexists(out):  # --force: replace only once the new one is complete
            shutil.rmtree(out) if os.path.isdir(out) else os.unlink(out)
        _write(staged, out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return manifest


def summary(manifest: Mapping[str, Any], out: str) -> List[str]:
    """What the CLI prints: size, what was verified, the worst error and the speed."""
    ver = manifest["verification"]
    lines = [f"converted {len(manifest['signatures'])} signature(s) to {out} "
             f"({manifest['bytes'] / 1e6:.2f} MB, quantize {manifest['converter']['quantize']}); "
             f"verified on random inputs (batches {ver['batch_sizes']}) and "
             f"{ver['warm_up_requests']} warm-up request(s) within atol {ver['atol']:g} + rtol "
             f"{ver['rtol']:g}"]
    for sig, entry in sorted(ver["signatures"].items()):
        for name, err in sorted(entry["outputs"].items()):
            lines.append(f"  {sig}.{name}: max abs error {err['max_abs']:.3g}, rel {err['max_rel']:.3g}")
    if manifest.get("dropped_checks"):
        ops = ", ".join(manifest["dropped_checks"])
        lines.append(f"  warning: LiteRT does not run the SavedModel's {ops} ops: inputs they "
                     "refuse on TensorFlow (a 400) are answered instead")
    for sig, cases in sorted(manifest["speed"].items()):
        for source, t in cases.items():
            lines.append(f"  {sig} {source}: TensorFlow {t['tensorflow_ms']:.3f} ms, LiteRT "
                         f"{t['litert_ms']:.3f} ms per call")
    return lines


__all__ = ["QUANTIZE", "convert", "fingerprint", "summary", "Refused"]
