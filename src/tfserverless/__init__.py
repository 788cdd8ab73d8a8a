"""tfserverless: serve a TensorFlow SavedModel as a serverless function speaking PAI-EAS's
TensorFlow protocol.  Importing the package loads neither TensorFlow nor boto3 nor oss2."""

__version__ = "0.1.0"
