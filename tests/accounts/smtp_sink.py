"""A real SMTP server (aiosmtpd) for the account-mail tests: prints the
port it listens on, then one JSON line per message it receives, with the
envelope recipients and the body, and runs until stdin closes."""

import json
import socket
import sys
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller


class Sink:
    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content, policy=policy.default)
        body = message.get_body(preferencelist=("plain",))
        print(
            json.dumps(
                {
                    "to": envelope.rcpt_tos,
                    "from": envelope.mail_from,
                    "subject": message["subject"],
                    "body": body.get_content() if body else "",
                }
            ),
            flush=True,
        )
        return "250 OK"


# aiosmtpd checks its server by connecting to the port it was given, so
# it needs a real one: a free port, asked of the OS.
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
controller = Controller(Sink(), hostname="127.0.0.1", port=port)
controller.start()
print(port, flush=True)
try:
    sys.stdin.read()
finally:
    controller.stop()
