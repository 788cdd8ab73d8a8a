"""Every platform's entry point, wired to one Service built from the environment.

Importing this module builds the service (a bad setting exits with one line); it is what
``handler/main.py`` re-exports and what ``python -m tfserverless serve`` hands to
functions-framework.

* ``app``: a bare ASGI application (``tfserverless serve``, ``make serve``, the Cloud Run image)
* functions-framework / Cloud Functions: ``predict`` (ASGI where the installed
  functions-framework has it, else Flask); ``predict_flask`` (always Flask)
* AWS Lambda: ``lambda_handler``
* Alibaba Function Compute: ``handler`` with initializer ``initializer``; ``fc_app`` (WSGI)
  in custom containers, where ``POST /initialize`` is the initializer

Absolute imports: functions-framework loads this file by path, outside its package.
"""

import os

from tfserverless.platforms import asgi, aws_lambda, fc, gcf
from tfserverless.serving.app import create_service_or_exit

service = create_service_or_exit(os.environ)
predict, predict_flask = gcf.make_handlers(service)
app = asgi.make_app(service)  # bare ASGI: gunicorn's uvicorn worker, no framework between
lambda_handler = aws_lambda.make_handler(service)
handler = fc.make_handler(service)
initializer = fc.make_initializer(service)
fc_app = fc.make_container_app(service)  # FC custom containers (gunicorn main:fc_app)
