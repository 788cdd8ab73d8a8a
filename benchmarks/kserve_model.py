"""The peer: a SavedModel behind KServe's Python ModelServer, written the way KServe's docs
show a custom predictor (``kserve.Model`` with ``load``/``predict``, V1 JSON ``instances``).
Runs in .venv-kserve: ``python kserve_model.py --model_dir DIR --signature S --input I
--output O --http_port P`` (plus any ModelServer flag, e.g. ``--workers``)."""

import argparse
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
from kserve import Model, ModelServer, model_server

parser = argparse.ArgumentParser(parents=[model_server.parser])
parser.add_argument("--model_dir", required=True)
parser.add_argument("--signature", default="serving_default")
parser.add_argument("--input", required=True)
parser.add_argument("--output", required=True)
args, _ = parser.parse_known_args()


class SavedModelPredictor(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.load()

    def load(self) -> bool:
        self.fn = tf.saved_model.load(args.model_dir).signatures[args.signature]
        self.ready = True
        return self.ready

    def predict(self, payload: Dict, headers: Optional[Dict[str, str]] = None) -> Dict:
        x = np.asarray(payload["instances"], dtype=np.float32)
        out = self.fn(**{args.input: tf.constant(x)})[args.output]
        return {"predictions": out.numpy().tolist()}


if __name__ == "__main__":
    ModelServer(enable_grpc=False, enable_latency_logging=False).start(
        [SavedModelPredictor(args.model_name)])
