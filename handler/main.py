"""Deployable function source: functions-framework target ``predict``.  Wiring only."""

import os

from tfserverless.app import create_service_or_exit
from tfserverless.platforms.gcf import make_handler

predict = make_handler(create_service_or_exit(os.environ))
