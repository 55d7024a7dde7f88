"""The Python worker and client against a real `courier serve` (COURIER_BIN)."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

from courier_client import (  # noqa: E402
    Client,
    CourierError,
    ExecutionFailed,
    InvalidSignature,
    TaskFailure,
    Worker,
    verify_seed_signature,
    verify_webhook,
)

# The README's shell check of a Standard Webhooks signature, run as written there.
SHELL_CHECK = r"""
key=$(printf %s "${SECRET#whsec_}" | base64 -d | od -An -tx1 | tr -d ' \n')
printf '%s.%s.' "$WEBHOOK_ID" "$WEBHOOK_TIMESTAMP" | cat - body.json \
  | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" -binary | base64
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """A `courier serve` on its own SQLite file and a free port."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="courier-python-client-")
        self.url = f"http://127.0.0.1:{free_port()}"
        env = dict(os.environ)
        for key in [k for k in env if k.startswith("COURIER_")]:
            del env[key]
        env.update(
            COURIER_STORE_URL=os.path.join(self.dir, "courier.db"),
            COURIER_HTTP_ADDR=self.url.removeprefix("http://"),
            # A dead worker's task is claimed again soon after its lease ends.
            COURIER_WORKER_LEASE="2s",
            COURIER_WORKER_HEARTBEAT="500ms",
            COURIER_LOG_LEVEL="warn",
            # The webhook receiver of these tests listens on loopback.
            COURIER_WEBHOOKS_ALLOW_PRIVATE="127.0.0.1/32",
            COURIER_WEBHOOKS_SECRET_KEY="AG997S88LNpAm0Rom4TeLVh0GSchFj+eO/whPOkGJrw=",
            COURIER_WEBHOOKS_POLL="200ms",
        )
        binary = os.environ.get("COURIER_BIN") or os.path.join(HERE, "..", "..", "..", "target", "debug", "courier")
        self.log = open(os.path.join(self.dir, "courier.log"), "w")
        self.process = subprocess.Popen([binary, "serve"], env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"courier serve did not start; log in {self.log.name}")
            time.sleep(0.1)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


class WorkerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node()
        cls.client = Client(cls.node.url)

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()

    def serve(self, worker):
        thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False}, daemon=True)
        thread.start()
        return thread

    def test_a_worker_runs_activities_and_the_client_awaits_their_results(self):
        seen = []

        def add(args, task):
            seen.append(task.attempt)
            task.progress(percent=50, message="adding")
            return args["a"] + args["b"]

        worker = Worker(self.node.url, lease="3s", wait="2s", concurrency=4).activity("py.add", add)
        thread = self.serve(worker)
        ids = [self.client.dispatch("py.add", {"a": n, "b": 1}) for n in range(8)]
        self.assertEqual([self.client.result(i, timeout=30) for i in ids], [n + 1 for n in range(8)])
        self.assertEqual(seen, [1] * 8)
        worker.stop()
        thread.join(timeout=10)
        self.assertFalse(thread.is_alive(), "run() returns once stopped")

    def test_function_settings_cap_and_route_new_tasks(self):
        self.assertIsNone(self.client.function("py.capped"))
        view = self.client.set_function("py.capped", queue="py-capped", max_concurrent=1, retry={"max_attempts": 2})
        self.assertEqual((view["revision"], view["applied"]["queue"]), (1, "py-capped"))
        running, peak, lock = [0], [0], threading.Lock()

        def capped(args, task):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.2)
            with lock:
                running[0] -= 1
            return args

        worker = Worker(self.node.url, queues=["py-capped"], lease="3s", wait="1s", concurrency=4).activity("py.capped", capped)
        thread = self.serve(worker)
        ids = [self.client.dispatch("py.capped", n) for n in range(4)]
        self.assertEqual([self.client.result(i, timeout=30) for i in ids], list(range(4)))
        self.assertEqual(peak[0], 1, "max_concurrent 1 holds with four slots free")
        worker.stop()
        thread.join(timeout=10)
        self.assertTrue(self.client.reset_function("py.capped"))
        self.assertFalse(self.client.reset_function("py.capped"))

    def test_failures_retry_unless_they_say_not_to(self):
        attempts = {"flaky": 0}

        def flaky(args, task):
            attempts["flaky"] += 1
            if task.attempt == 1:
                task.checkpoint({"got_to": 7})
                raise RuntimeError("first attempt fails")
            return {"resumed_from": task.checkpoint_value}

        def hopeless(args, task):
            raise TaskFailure("never works", kind="invalid", retryable=False, details={"why": "test"})

        worker = (
            Worker(self.node.url, lease="3s", wait="2s", concurrency=2)
            .activity("py.flaky", flaky)
            .activity("py.hopeless", hopeless)
        )
        thread = self.serve(worker)
        # The default policy retries a failed attempt (after about a second).
        flaky_id = self.client.dispatch("py.flaky", None)
        self.assertEqual(self.client.result(flaky_id, timeout=30), {"resumed_from": {"got_to": 7}})
        self.assertEqual(attempts["flaky"], 2)
        hopeless_id = self.client.dispatch("py.hopeless", None)
        with self.assertRaises(ExecutionFailed) as failed:
            self.client.result(hopeless_id, timeout=30)
        self.assertEqual(failed.exception.execution["state"], "failed")
        self.assertEqual(failed.exception.execution["error"]["kind"], "invalid")
        detail = self.client.get(hopeless_id)
        self.assertEqual(detail["execution"]["state"], "failed")
        self.assertEqual(detail["steps"][0]["attempt"], 1, "not retried")
        worker.stop()
        thread.join(timeout=10)

    def test_a_task_whose_worker_is_killed_runs_on_another(self):
        started = os.path.join(self.node.dir, "started")
        # A worker in its own process that hangs in the task: killed mid-task.
        script = f"""
import sys, time
sys.path.insert(0, {os.path.join(HERE, "..", "src")!r})
from courier_client import Worker
def stuck(args, task):
    open({started!r}, "w").close()
    time.sleep(600)
Worker({self.node.url!r}, worker_id="doomed", lease="2s", wait="2s").activity("py.killed", stuck).run()
"""
        doomed = subprocess.Popen([sys.executable, "-c", script])
        try:
            execution = self.client.dispatch("py.killed", {"n": 1})
            deadline = time.monotonic() + 30
            while not os.path.exists(started):
                self.assertLess(time.monotonic(), deadline, "the doomed worker never started the task")
                time.sleep(0.05)
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
        finally:
            if doomed.poll() is None:
                doomed.kill()
        worker = Worker(self.node.url, worker_id="survivor", lease="2s", wait="2s").activity(
            "py.killed", lambda args, task: {"attempt": task.attempt, "n": args["n"]}
        )
        thread = self.serve(worker)
        self.assertEqual(self.client.result(execution, timeout=60), {"attempt": 2, "n": 1})
        worker.stop()
        thread.join(timeout=10)

    def test_errors_are_typed(self):
        with self.assertRaises(CourierError) as refused:
            self.client.dispatch("courier.reserved", None)
        self.assertEqual(refused.exception.status, 400)
        with self.assertRaises(CourierError) as missing:
            self.client.get("00000000-0000-0000-0000-000000000000")
        self.assertEqual(missing.exception.status, 404)
        with self.assertRaises(CourierError) as nobody:
            Client("http://127.0.0.1:1").dispatch("x", None)
        self.assertEqual(nobody.exception.status, 0)


class WebhookTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node()
        cls.client = Client(cls.node.url)

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()

    def test_a_real_delivery_verifies_with_the_secret_and_with_no_other(self):
        import http.server

        received = []

        class Receiver(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.headers, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            hook, status = self.client.http.request(
                "POST",
                "/v1/webhooks",
                {"url": f"http://127.0.0.1:{server.server_port}/hook", "event_types": ["execution.created"]},
            )
            self.assertEqual(status, 201)
            secret = hook["secret"]
            execution = self.client.dispatch("py.webhooked", {"n": 1})
            deadline = time.monotonic() + 30
            while not received:
                self.assertLess(time.monotonic(), deadline, "no delivery")
                time.sleep(0.05)
        finally:
            server.shutdown()
            server.server_close()
        headers, body = received[0]
        event = verify_webhook(secret, headers, body)
        self.assertEqual((event["type"], event["execution_id"]), ("execution.created", execution))
        self.assertTrue(verify_seed_signature(secret, body, headers["X-Webhook-Signature"]))
        other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
        with self.assertRaises(InvalidSignature):
            verify_webhook(other, headers, body)
        with self.assertRaises(InvalidSignature):
            verify_webhook(secret, headers, body + b" ")
        with self.assertRaises(InvalidSignature):
            verify_webhook(secret, headers, body, tolerance=-1)
        self.assertFalse(verify_seed_signature(other, body, headers["X-Webhook-Signature"]))

        # The README's shell check gives the same signature.
        work = tempfile.mkdtemp()
        with open(os.path.join(work, "body.json"), "wb") as f:
            f.write(body)
        env = dict(
            os.environ,
            SECRET=secret,
            WEBHOOK_ID=headers["webhook-id"],
            WEBHOOK_TIMESTAMP=headers["webhook-timestamp"],
        )
        shell = subprocess.run(["bash", "-c", SHELL_CHECK], cwd=work, env=env, capture_output=True, text=True)
        self.assertEqual(shell.returncode, 0, shell.stderr)
        self.assertIn(f"v1,{shell.stdout.strip()}", headers["webhook-signature"].split(" "))


if __name__ == "__main__":
    unittest.main()
