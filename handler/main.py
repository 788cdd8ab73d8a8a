"""Deployable function source: every platform's entry point.  Wiring only.

* functions-framework / Cloud Run / Cloud Functions: ``--target predict``
* AWS Lambda: ``main.lambda_handler``
* Alibaba Function Compute: ``main.handler`` with initializer ``main.initializer``
"""

from tfserverless.entrypoints import handler, initializer, lambda_handler, predict, service

__all__ = ["handler", "initializer", "lambda_handler", "predict", "service"]
