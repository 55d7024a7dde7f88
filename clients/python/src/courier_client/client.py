"""HTTP to a Courier node: JSON in and out, bearer token, typed errors."""

import json
import time
import urllib.error
import urllib.parse
import urllib.request


class CourierError(Exception):
    """An answer that is not a success: `status` and the node's JSON error
    (`error`, a sentence, and `detail`), or status 0 when no answer came."""

    def __init__(self, status, error, detail=None):
        super().__init__(f"{status}: {error}" + (f" ({detail})" if detail is not None else ""))
        self.status = status
        self.error = error
        self.detail = detail


class ExecutionFailed(Exception):
    """The awaited execution ended other than completed; `execution` is the
    node's answer (`execution_id`, `state`, `error`)."""

    def __init__(self, execution):
        super().__init__(
            f"execution {execution.get('execution_id')} is {execution.get('state')}: {execution.get('error')}"
        )
        self.execution = execution


class Http:
    """JSON requests to one node."""

    def __init__(self, url, token=None, timeout=30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method, path, body=None, query=None, timeout=None):
        """The decoded JSON answer and its status; raises CourierError otherwise."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as answer:
                raw = answer.read()
                return (json.loads(raw) if raw else None), answer.status
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                problem = json.loads(raw)
                raise CourierError(e.code, problem.get("error", e.reason), problem.get("detail")) from None
            except (ValueError, AttributeError):
                raise CourierError(e.code, raw.decode(errors="replace") or e.reason) from None
        except (urllib.error.URLError, OSError) as e:
            raise CourierError(0, f"no answer from {self.url}: {e}") from None


class Client:
    """Dispatches executions and waits for their results.

    >>> client = Client("http://127.0.0.1:8080")  # doctest: +SKIP
    >>> client.result(client.dispatch("charge", {"amount": 5}), timeout=60)  # doctest: +SKIP
    {'charged': 5}
    """

    def __init__(self, url, token=None, timeout=30.0):
        self.http = Http(url, token, timeout)

    def dispatch(self, function, args=None, **options):
        """Starts an execution of `function`; its id. `options` are the API's
        (`queue`, `tags`, `priority`, `idempotency_key`, `delay`, `expiry`)."""
        body = {"function": function, "args": args}
        body.update(options)
        execution, _ = self.http.request("POST", "/v1/executions", body)
        return execution["id"]

    def get(self, execution_id):
        """The execution in detail: `execution` (its record), `steps` (its
        tasks), `progress`, `counters`, `values`."""
        execution, _ = self.http.request("GET", f"/v1/executions/{execution_id}")
        return execution

    def result(self, execution_id, timeout=60.0):
        """Waits up to `timeout` seconds for the execution to end: its result,
        or ExecutionFailed; TimeoutError if it is still running then."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"execution {execution_id} still running after {timeout}s")
            wait = max(1, min(30, int(left)))
            try:
                answer, status = self.http.request(
                    "GET",
                    f"/v1/executions/{execution_id}/result",
                    query={"wait": f"{wait}s"},
                    timeout=wait + self.http.timeout,
                )
            except CourierError as e:
                if e.status not in (429, 503):
                    raise
                # Too many waiters on the node, or it is stopping: ask again soon.
                time.sleep(1)
                continue
            if status == 202:
                continue
            if answer.get("state") == "completed":
                return answer.get("result")
            raise ExecutionFailed(answer)

    def cancel(self, execution_id, reason=None):
        """Cancels the execution and its unfinished tasks."""
        answer, _ = self.http.request("POST", f"/v1/executions/{execution_id}/cancel", {"reason": reason})
        return answer

    def signal(self, execution_id, name, payload=None):
        """Sends the execution a named signal."""
        answer, _ = self.http.request("POST", f"/v1/executions/{execution_id}/signals/{urllib.parse.quote(name)}", payload)
        return answer

    def set_function(self, function, **settings):
        """Stores `function`'s settings for every node of the cluster: any of
        `retry` (a dict: `max_attempts`, `initial_delay`, ...), `timeout`,
        `queue`, `tags`, `priority`, `max_concurrent`. They replace what was
        stored; new tasks of the function take them. Its view: `settings`,
        `revision`, `applied`."""
        path = f"/v1/functions/{urllib.parse.quote(function, safe='')}"
        answer, _ = self.http.request("PUT", path, settings)
        return answer

    def function(self, function):
        """What is stored for `function` and what its new tasks get, or None
        when nothing is stored and the node does not run it."""
        try:
            answer, _ = self.http.request("GET", f"/v1/functions/{urllib.parse.quote(function, safe='')}")
        except CourierError as e:
            if e.status == 404:
                return None
            raise
        return answer

    def reset_function(self, function):
        """Forgets `function`'s stored settings; whether there were any."""
        try:
            self.http.request("DELETE", f"/v1/functions/{urllib.parse.quote(function, safe='')}")
        except CourierError as e:
            if e.status == 404:
                return False
            raise
        return True
