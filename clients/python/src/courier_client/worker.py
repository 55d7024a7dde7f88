"""An external worker: claims a node's tasks for the activities it serves and
runs them, keeping their leases alive while they run."""

import logging
import os
import signal
import socket
import threading
import uuid

from .client import CourierError, Http

log = logging.getLogger("courier_client.worker")


class TaskFailure(Exception):
    """Raised by an activity to fail its attempt with a `kind` retry policies
    match on, `details`, and whether it may be retried at all (`retryable=False`
    fails the execution now, whatever the policy says)."""

    def __init__(self, message, kind="error", retryable=True, details=None, retry_after=None):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.retryable = retryable
        self.details = details
        self.retry_after = retry_after


class Task:
    """The claimed task an activity runs: `args`, `attempt` (1-based), the
    `checkpoint_value` an earlier attempt saved, and calls on its lease."""

    def __init__(self, http, claimed):
        self._http = http
        self.id = claimed["task_id"]
        self.execution_id = claimed["execution_id"]
        self.function = claimed["function"]
        self.args = claimed.get("args")
        self.attempt = claimed.get("attempt", 1)
        self.queue = claimed.get("queue")
        self.checkpoint_value = claimed.get("checkpoint")
        self.lease_token = claimed["lease_token"]

    def _post(self, what, body):
        body["lease_token"] = self.lease_token
        answer, _ = self._http.request("POST", f"/v1/tasks/{self.id}/{what}", body)
        return answer

    def heartbeat(self, details=None):
        """Renews the lease now (the worker also does it on a timer)."""
        return self._post("heartbeat", {"details": details})

    def checkpoint(self, value):
        """Saves `value` for the next attempt, should this one fail."""
        return self._post("checkpoint", {"checkpoint": value})

    def progress(self, percent=None, message=None, **more):
        """Reports progress (`percent`, `message`, `step`, `status`, `detail`)."""
        body = {"percent": percent, "message": message}
        body.update(more)
        return self._post("progress", {k: v for k, v in body.items() if v is not None})


def _seconds(duration):
    """`"30s"`, `"2m"`, `"500ms"`, `"1h"` as seconds."""
    for suffix, scale in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if duration.endswith(suffix) and duration[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(duration[: -len(suffix)]) * scale
    raise ValueError(f"not a duration: {duration!r} (e.g. 30s, 2m, 500ms)")


class Worker:
    """Serves activities to a Courier node over HTTP.

    >>> worker = Worker("http://127.0.0.1:8080").activity("add", lambda args, task: args["a"] + args["b"])  # doctest: +SKIP
    >>> worker.run()  # doctest: +SKIP

    `run()` long-polls `POST /v1/workers/claim` for the registered functions,
    runs each task in a thread (at most `concurrency` at once) while a timer
    heartbeats its lease every third of `lease`, then completes it with the
    function's return value or fails it. `stop()`, SIGTERM or SIGINT stop
    claiming; the tasks running then finish (or fail) before `run()` returns.
    A task whose worker dies is claimed again by another once its lease ends.
    """

    def __init__(self, url, token=None, worker_id=None, queues=None, concurrency=1, lease="30s", wait="20s"):
        self.http = Http(url, token)
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.queues = queues
        self.concurrency = concurrency
        self.lease = lease
        self.wait = wait
        self._functions = {}
        self._stopping = threading.Event()
        self._slots = threading.Semaphore(concurrency)
        self._running = set()
        self._lock = threading.Lock()

    def activity(self, name, fn):
        """Serves `name` with `fn(args, task)`; returns the worker, to chain."""
        self._functions[name] = fn
        return self

    def stop(self):
        """Stops claiming; `run()` returns once the tasks running now are done."""
        self._stopping.set()

    def run(self, handle_signals=True):
        """Claims and runs tasks until stopped."""
        if not self._functions:
            raise ValueError("no activity registered: call worker.activity(name, fn) first")
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        log.info("worker %s serving %s", self.worker_id, sorted(self._functions))
        while not self._stopping.is_set():
            self._slots.acquire()
            free = 1
            while free < self.concurrency and self._slots.acquire(blocking=False):
                free += 1
            try:
                claimed = self._claim(free)
            except CourierError as e:
                log.warning("claim failed: %s", e)
                claimed = []
                self._stopping.wait(1.0)
            for item in claimed:
                free -= 1
                thread = threading.Thread(target=self._execute, args=(Task(self.http, item),), daemon=True)
                with self._lock:
                    self._running.add(thread)
                thread.start()
            for _ in range(free):
                self._slots.release()
        with self._lock:
            running = list(self._running)
        for thread in running:
            thread.join()
        log.info("worker %s stopped", self.worker_id)

    def _claim(self, count):
        body = {
            "worker_id": self.worker_id,
            "functions": sorted(self._functions),
            "max": count,
            "lease": self.lease,
            "wait": self.wait,
        }
        if self.queues:
            body["queues"] = self.queues
        claimed, _ = self.http.request("POST", "/v1/workers/claim", body, timeout=_seconds(self.wait) + 30)
        return claimed or []

    def _execute(self, task):
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(task, done), daemon=True)
        beat.start()
        try:
            try:
                result = self._functions[task.function](task.args, task)
            except TaskFailure as failure:
                done.set()
                self._fail(task, failure)
            except Exception as error:  # noqa: BLE001 - any error fails the attempt
                done.set()
                self._fail(task, TaskFailure(f"{type(error).__name__}: {error}"))
            else:
                done.set()
                try:
                    task._post("complete", {"result": result})
                except CourierError as e:
                    # 409: the lease was lost (it ran out, or the execution was
                    # cancelled); the task is someone else's now.
                    log.warning("could not complete task %s: %s", task.id, e)
        finally:
            done.set()
            beat.join()
            self._slots.release()
            with self._lock:
                self._running.discard(threading.current_thread())

    def _fail(self, task, failure):
        body = {
            "error": {"kind": failure.kind, "message": failure.message, "details": failure.details},
            "retryable": failure.retryable,
        }
        if failure.retry_after:
            body["retry_after"] = failure.retry_after
        try:
            task._post("fail", body)
        except CourierError as e:
            log.warning("could not fail task %s: %s", task.id, e)

    def _heartbeat(self, task, done):
        interval = max(0.2, _seconds(self.lease) / 3)
        while not done.wait(interval):
            try:
                task.heartbeat()
            except CourierError as e:
                log.warning("heartbeat of task %s failed: %s", task.id, e)
                if e.status == 409:
                    return
