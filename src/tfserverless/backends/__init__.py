"""What runs the model: ``servable`` (the seam the service depends on), ``holder`` (loads it
once, lazily, with retry backoff), ``registry`` (which backend a model directory asks for),
``tensorflow`` (TF1/TF2 SavedModels) and ``litert`` (a verified LiteRT conversion, whose
manifest ``litert_manifest`` reads and writes)."""
