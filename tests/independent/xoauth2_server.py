#!/usr/bin/env python3
"""An independent SMTP submission server for the SMTP check's interoperability test.

aiosmtpd (the aio-libs project's SMTP server) with STARTTLS required before AUTH and an XOAUTH2
mechanism (user=<mailbox>^Aauth=Bearer <token>^A^A, RFC 4954 initial response). It accepts the
expected mailbox with any non-empty bearer token and appends each token it receives to
--record, so the Rust test can check that the token is one the simulator issued. Prints
"READY <port>" once it listens. Our client and our simulator therefore cannot share a
misunderstanding of the protocol: this side is someone else's implementation.
"""
import argparse
import asyncio
import base64
import socket
import ssl
import sys
import logging

from aiosmtpd.controller import Controller

# aiosmtpd itself still fills the deprecated Session.login_data and logs a warning about it on
# every AUTH; keep the test output to real problems.
logging.getLogger("mail.log").setLevel(logging.ERROR)
from aiosmtpd.smtp import SMTP, AuthResult

# RFC 4954 section 4: an AUTH command line may be up to 12288 octets. Entra ID access tokens
# make XOAUTH2 lines far longer than aiosmtpd's default of 512 (the RFC 5321 command limit).
AUTH_LINE_LIMIT = 12288


class Rfc4954SMTP(SMTP):
    line_length_limit = AUTH_LINE_LIMIT + 2

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.command_size_limits["AUTH"] = AUTH_LINE_LIMIT


class Rfc4954Controller(Controller):
    def factory(self):
        return Rfc4954SMTP(self.handler, **self.SMTP_kwargs)


class Handler:
    def __init__(self, mailbox, record):
        self.mailbox = mailbox
        self.record = record

    async def auth_XOAUTH2(self, server, args):
        if len(args) >= 2:
            blob = args[1]
        else:
            # Two-step form: empty challenge, the client answers with the blob.
            answer = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=False)
            blob = answer.decode("ascii", "replace")
        try:
            text = base64.b64decode(blob, validate=True).decode("utf-8")
        except Exception:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot decode response")
        parts = text.split("\x01")
        if len(parts) != 4 or parts[2:] != ["", ""] or not parts[0].startswith("user=") or not parts[1].startswith("auth=Bearer "):
            return AuthResult(success=False, handled=False, message="501 5.5.124 Invalid XOAUTH2 response")
        user, token = parts[0][len("user="):], parts[1][len("auth=Bearer "):]
        if user.lower() != self.mailbox.lower() or not token:
            return AuthResult(success=False, handled=False, message="535 5.7.3 Authentication unsuccessful")
        with open(self.record, "a", encoding="utf-8") as f:
            f.write(token + "\n")
        return AuthResult(success=True, auth_data=user)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if not session.authenticated:
            return "530 5.7.57 Client not authenticated to send mail"
        if address.lower() != self.mailbox.lower():
            return "554 5.2.252 SendAsDenied"
        envelope.mail_from = address
        return "250 2.1.0 Sender OK"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--mailbox", required=True)
    p.add_argument("--record", required=True)
    a = p.parse_args()

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    controller = Rfc4954Controller(
        Handler(a.mailbox, a.record),
        hostname="127.0.0.1",
        port=port,
        tls_context=ctx,
        require_starttls=True,
        auth_require_tls=True,
        auth_required=True,
        auth_exclude_mechanism=["LOGIN", "PLAIN"],
    )
    controller.start()
    print(f"READY {port}", flush=True)
    try:
        sys.stdin.read()  # runs until the test closes our stdin or kills us
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
