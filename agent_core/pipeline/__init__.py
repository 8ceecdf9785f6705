"""The queue pipeline: producer fan-out, task leases, consumer batch execution and DLQ replay.

This is the library behind the Lambda handlers in ``handlers/``. Nothing here imports boto3 or the
encord SDK at package import time: each module pulls in what it needs when it is used.
"""
