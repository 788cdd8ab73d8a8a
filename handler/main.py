"""Deployable function source: every platform's entry point.  Wiring only.

* functions-framework / Cloud Run / Cloud Functions: ``--target predict``
* AWS Lambda: ``main.lambda_handler``
* Alibaba Function Compute: ``main.handler`` with initializer ``main.initializer``
"""

import os

from tfserverless.app import create_service_or_exit
from tfserverless.platforms import aws_lambda, fc, gcf

service = create_service_or_exit(os.environ)
predict = gcf.make_handler(service)
lambda_handler = aws_lambda.make_handler(service)
handler = fc.make_handler(service)
initializer = fc.make_initializer(service)
