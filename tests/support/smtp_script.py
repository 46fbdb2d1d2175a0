"""A scriptable SMTP server for the mail-operations suite (tests/mail_ops.rs).

    python3 smtp_script.py PORT MAILDIR RULES STATS

Real SMTP (aiosmtpd). The rules file is JSON, re-read at every RCPT, so a test
changes the server's behaviour by rewriting it:

    {"tempfail": N, "tempfail_codes": [421, 451], "reject": ["a@example.com"]}

- the first N recipients (counted since start) are answered with a 4xx, the codes
  taken in turn from tempfail_codes;
- an address in "reject" is answered 550;
- anything else is accepted and its message stored in MAILDIR;
- "delay_ms": each message's 250 comes that long after its data (a slow relay).

STATS is rewritten after every answer: {"tempfail": n, "rejected": n, "accepted": n}.
"""

import asyncio
import json
import mailbox
import os
import sys
import threading

from aiosmtpd.controller import Controller


class Scripted:
    def __init__(self, maildir, rules, stats):
        self.maildir = mailbox.Maildir(maildir, create=True)
        self.rules_path = rules
        self.stats_path = stats
        self.counts = {"tempfail": 0, "rejected": 0, "accepted": 0}
        self.lock = threading.Lock()
        self.save()

    def rules(self):
        try:
            with open(self.rules_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def save(self):
        tmp = self.stats_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.counts, f)
        os.replace(tmp, self.stats_path)

    def count(self, what):
        with self.lock:
            self.counts[what] += 1
            self.save()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        rules = self.rules()
        reject = [a.lower() for a in rules.get("reject", [])]
        if address.lower() in reject:
            self.count("rejected")
            return "550 5.1.1 <%s>: no such user here" % address
        with self.lock:
            n = self.counts["tempfail"]
        if n < int(rules.get("tempfail", 0)):
            codes = rules.get("tempfail_codes") or [451]
            code = int(codes[n % len(codes)])
            self.count("tempfail")
            return "%d 4.3.0 try again later" % code
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        delay = int(self.rules().get("delay_ms", 0))
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        self.maildir.add(envelope.content)
        self.count("accepted")
        return "250 Message accepted for delivery"


def main():
    port, maildir, rules, stats = sys.argv[1:5]
    controller = Controller(
        Scripted(maildir, rules, stats), hostname="127.0.0.1", port=int(port)
    )
    controller.start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
