"""An external worker in Python: serves `resize` to a Courier node, and
dispatches one execution of it to show the round trip.

    pip install ./clients/python
    courier serve &                       # http://127.0.0.1:8080
    python3 examples/worker.py
"""

import os
import threading

from courier_client import Client, TaskFailure, Worker

URL = os.environ.get("COURIER_URL", "http://127.0.0.1:8080")
TOKEN = os.environ.get("COURIER_TOKEN")  # a `worker` (and `dispatch`+`read`) token if the node has tokens


def resize(args, task):
    if args.get("width", 0) <= 0:
        raise TaskFailure("width must be positive", kind="invalid", retryable=False)
    task.progress(percent=50, message="resizing")
    return {"width": args["width"] // 2}


worker = Worker(URL, token=TOKEN, concurrency=4).activity("resize", resize)
threading.Thread(target=worker.run, kwargs={"handle_signals": False}, daemon=True).start()

client = Client(URL, token=TOKEN)
execution = client.dispatch("resize", {"width": 640})
print("resize ->", client.result(execution, timeout=60))
worker.stop()
