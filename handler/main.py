"""Deployable function source: every platform's entry point.  Wiring only.

* functions-framework / Cloud Run / Cloud Functions: ``--target predict`` (ASGI on
  functions-framework >= 3.9, else Flask); ``--target predict_flask`` forces Flask
* AWS Lambda: ``main.lambda_handler``
* Alibaba Function Compute: ``main.handler`` with initializer ``main.initializer``;
  custom containers: ``gunicorn main:fc_app`` (``POST /initialize`` is the initializer)
"""

from tfserverless.entrypoints import (
    app,
    fc_app,
    handler,
    initializer,
    lambda_handler,
    predict,
    predict_flask,
    service,
)

__all__ = ["app", "fc_app", "handler", "initializer", "lambda_handler", "predict", "predict_flask", "service"]
