#!/bin/sh
# The image's entrypoint (packaging/build copies it in as /usr/local/bin/tfserverless-entrypoint).
# Amazon SageMaker starts an inference image as `docker run IMAGE serve` (its "bring your own
# container" contract) and no other platform passes a bare `serve`: so that argument is how
# tfserverless knows it runs under SageMaker (TFSERVERLESS_PLATFORM=sagemaker: the model in
# /opt/ml/model unless MODEL_PATH says otherwise, port SAGEMAKER_BIND_TO_PORT, else 8080).
# Anything else runs as given: the image's CMD on every other platform, or `docker run IMAGE sh`.
set -e
if [ "$1" = serve ]; then
  shift
  export TFSERVERLESS_PLATFORM="${TFSERVERLESS_PLATFORM:-sagemaker}"
  exec tfserverless serve --host 0.0.0.0 "$@"
fi
exec "$@"
