"""One module per client ecosystem's URL layout, over ``common`` (``Job``, the size and name
checks, the readiness answer): ``eas`` (the EAS gateway, ``/`` and ``/api/predict/<name>``),
``tfserving`` (TF Serving REST, ``/v1/models/...``) and ``v2`` (the Open Inference Protocol,
``/v2/...``).  Each is given what it uses (the config, the model holder, the predictor), never
the ``Service`` that routes to it."""
