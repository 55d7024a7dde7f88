"""External workers and a client for a Courier node's HTTP API.

`Worker` serves activities to a node: it claims their tasks with a long-poll,
runs each in a thread while a timer renews its lease, and completes or fails
it. `Client` dispatches executions and waits for their results. Standard
library only.
"""

from .client import Client, CourierError, ExecutionFailed
from .worker import Task, TaskFailure, Worker

__all__ = ["Client", "CourierError", "ExecutionFailed", "Task", "TaskFailure", "Worker"]
