"""A real SMTP server (aiosmtpd) for haltwatch's tests.

Each accepted message is written to DIR/NNNN.eml with the envelope recipients
in an X-Envelope-To header. `--fail 451,451` answers DATA with those codes,
one per message, before accepting; `--always 550` rejects every message.
`--tls-cert PEM --tls-key KEY` offers STARTTLS and requires it before mail;
with `--implicit-tls` the server speaks TLS from the first byte instead (SMTPS).
`--auth USER:PASSWORD` requires that login (AUTH PLAIN or LOGIN, over TLS) before mail.
`--delay-ms N` answers DATA only after N ms, as a slow relay does.
Prints "READY" once listening; stops on SIGTERM.
"""
import argparse
import asyncio
import os
import ssl
import signal
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, directory, fail, always, delay_ms=0):
        self.delay_ms = delay_ms
        self.directory = directory
        self.fail = list(fail)
        self.always = always
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        with self.lock:
            if self.always:
                return f"{self.always} scripted permanent failure"
            if self.fail:
                code = self.fail.pop(0)
                return f"{code} scripted failure, try again"
            self.count += 1
            path = os.path.join(self.directory, f"{self.count:04d}.eml")
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode()
        with open(path + ".tmp", "wb") as f:
            f.write(b"X-Envelope-To: " + ", ".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(content)
        os.rename(path + ".tmp", path)
        return "250 OK queued"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--fail", default="")
    p.add_argument("--always", default="")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--implicit-tls", action="store_true")
    p.add_argument("--auth")
    p.add_argument("--delay-ms", type=int, default=0)
    a = p.parse_args()
    fail = [c for c in a.fail.split(",") if c]
    tls = {}
    if a.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.tls_cert, a.tls_key)
        if a.implicit_tls:
            tls = {"ssl_context": context}
        else:
            tls = {"tls_context": context, "require_starttls": True}
    if a.auth:
        user, password = a.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login == user.encode()
                and auth_data.password == password.encode()
            )
            return AuthResult(success=ok)

        tls["authenticator"] = authenticator
        tls["auth_required"] = True
    controller = Controller(
        Handler(a.dir, fail, a.always, a.delay_ms), hostname="127.0.0.1", port=a.port, **tls
    )
    controller.start()
    print("READY", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
