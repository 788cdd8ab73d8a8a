"""The peer over the Open Inference Protocol (V2): a SavedModel behind KServe's Python
ModelServer, written the way KServe's docs show a V2 custom predictor (``kserve.Model`` whose
``predict`` takes an ``InferRequest`` and returns an ``InferResponse``); the ModelServer
serves it over V2 REST and, on ``--grpc_port``, V2 gRPC (``inference.GRPCInferenceService``).
Runs in .venv-kserve: ``python kserve_v2_model.py --model_dir DIR --signature S --input I
--output O --http_port P --grpc_port G`` (plus any ModelServer flag, e.g. ``--workers``)."""

import argparse
from typing import Dict, Optional

import tensorflow as tf
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.utils.utils import generate_uuid

parser = argparse.ArgumentParser(parents=[model_server.parser])
parser.add_argument("--model_dir", required=True)
parser.add_argument("--signature", default="serving_default")
parser.add_argument("--input", required=True)
parser.add_argument("--output", required=True)
args, _ = parser.parse_known_args()


class SavedModelV2Predictor(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.load()

    def load(self) -> bool:
        self.fn = tf.saved_model.load(args.model_dir).signatures[args.signature]
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest,
                headers: Optional[Dict[str, str]] = None) -> InferResponse:
        x = payload.inputs[0].as_numpy()
        out = self.fn(**{args.input: tf.constant(x)})[args.output].numpy()
        output = InferOutput(name=args.output, shape=list(out.shape), datatype="FP32")
        output.set_data_from_numpy(out)  # binary: raw_output_contents over gRPC
        return InferResponse(response_id=payload.id or generate_uuid(), model_name=self.name,
                             infer_outputs=[output])


if __name__ == "__main__":
    ModelServer(enable_latency_logging=False).start([SavedModelV2Predictor(args.model_name)])
