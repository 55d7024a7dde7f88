"""External workers and a client for a Courier node's HTTP API.

`Worker` serves activities to a node: it claims their tasks with a long-poll,
runs each in a thread while a timer renews its lease, and completes or fails
it. `Client` dispatches executions and waits for their results.
`verify_webhook` checks a webhook delivery's signature. Standard library only.
"""

from .client import Client, CourierError, ExecutionFailed
from .webhook import InvalidSignature, verify_seed_signature, verify_webhook
from .worker import Task, TaskFailure, Worker

__all__ = [
    "Client",
    "CourierError",
    "ExecutionFailed",
    "InvalidSignature",
    "Task",
    "TaskFailure",
    "Worker",
    "verify_seed_signature",
    "verify_webhook",
]
