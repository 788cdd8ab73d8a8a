"""Deploy-time tools, never imported on the request path (import-linter guards it):
``deploy`` (an EAS service config read and checked), ``render`` (SAM, Serverless Devs, Cloud
Run, Knative, KServe), ``modelsize`` (the disk a model needs), ``convert`` and ``verify`` (a
LiteRT conversion and its proof against TensorFlow) and ``graph_ops`` (a SavedModel's ops
against a processor's TensorFlow)."""
