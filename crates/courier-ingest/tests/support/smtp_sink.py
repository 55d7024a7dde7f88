#!/usr/bin/python3
"""A real SMTP receiver for the email provider's tests (aiosmtpd, loopback only).

    /usr/bin/python3 smtp_sink.py --port 0 --out FILE [--reject-substring reject]
                                  [--defer-substring defer]

Prints `PORT <n>` as its first stdout line once it accepts connections, then
runs until killed. A RCPT TO whose address contains the reject substring is
answered `550 5.1.1 <addr>: Recipient address rejected`, one containing the
defer substring `451 4.2.1 <addr>: Mailbox busy, try again later`. Every
message accepted is appended to FILE as one JSON line:

    {"mail_from", "rcpt_tos", "data",           # the envelope and the raw message
     "parsed": {"subject", "from", "to", ...}}  # the headers as Python's email package decodes them

`parsed` is an independent reading of the message: the test checks what a
standard MIME parser makes of the encoded headers, not what it hoped to send.
"""

import argparse
import email
import email.policy
import json
import signal
import sys
import threading

from aiosmtpd.controller import Controller


def parse(data: bytes) -> dict:
    message = email.message_from_bytes(data, policy=email.policy.default)
    parts = []
    for part in message.walk():
        if part.is_multipart():
            continue
        parts.append({"content_type": part.get_content_type(), "content": part.get_content()})
    to = message["to"]
    return {
        "subject": str(message["subject"]) if message["subject"] is not None else None,
        "from": str(message["from"]),
        "to": str(to),
        "to_display_name": to.addresses[0].display_name if to is not None and to.addresses else None,
        "to_address": to.addresses[0].addr_spec if to is not None and to.addresses else None,
        "reply_to": str(message["reply-to"]) if message["reply-to"] is not None else None,
        "message_id": str(message["message-id"]) if message["message-id"] is not None else None,
        "date": str(message["date"]) if message["date"] is not None else None,
        "content_type": message.get_content_type(),
        "parts": parts,
    }


class Sink:
    def __init__(self, out: str, reject: str, defer: str):
        self.out = out
        self.reject = reject
        self.defer = defer
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject and self.reject in address:
            return f"550 5.1.1 <{address}>: Recipient address rejected"
        if self.defer and self.defer in address:
            return f"451 4.2.1 <{address}>: Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        try:
            parsed = parse(data)
        except Exception as error:  # the test sees the parse failure
            parsed = {"error": repr(error)}
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": data.decode("utf-8", "replace"),
            "parsed": parsed,
        }
        with self.lock, open(self.out, "a", encoding="utf-8") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
        return "250 2.0.0 Ok: queued as sink"


class PortZeroController(Controller):
    """Controller that learns the port the kernel chose for `--port 0` before
    it connects to itself to check the server is up."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--reject-substring", default="")
    parser.add_argument("--defer-substring", default="")
    args = parser.parse_args()

    controller = PortZeroController(
        Sink(args.out, args.reject_substring, args.defer_substring),
        hostname="127.0.0.1",
        port=args.port,
        enable_SMTPUTF8=True,
    )
    controller.start()
    print(f"PORT {controller.port}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(3600):
            pass
    finally:
        controller.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
