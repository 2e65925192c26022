"""The employee's help requests: `tether-agent ask` from the employee's own account opens a
ticket (requester = that account, source employee, the device) with a diagnostics snapshot
kept on it; a technician's public comment reaches `tether-agent tickets` and the employee's
prompt while an internal one does not; the employee comments on their own ticket (a resolved
one opens again) and not on anyone else's; a machine that is offline keeps the request, on
disk across an agent restart, and sends it when it connects; and the broker checks what an
agent sends (the same nonce twice is one ticket, a flood is refused with when to try again,
bad text and a bad snapshot are handled). The real programs on 127.0.0.1.

Run by ctest as `integration.help` (TT_BIN_DIR names the build directory)."""

import json
import os
import pwd
import re
import subprocess
import unittest

from harness import K_REQUEST, K_RESPONSE, ROLE_AGENT, Pki, TetherTestCase, WireClient, binary, pb_bytes, pb_parse, pb_varint
from inventory.test_assets import zstd_frame
from test_session import SessionWorld

EMPLOYEE = "nobody"
ERR_BUSY, ERR_DENIED, ERR_INVALID = 8, 11, 14
ASKS_PER_HOUR = 5  # TT_HELP_ASKS_PER_HOUR
COMMENTS_PER_HOUR = 30  # TT_HELP_COMMENTS_PER_HOUR


def demote(user):
    pw = pwd.getpwnam(user)

    def drop():
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return drop


class HelpTest(SessionWorld, TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss"), ("agent", "dev1"), ("agent", "dev2")):
            cls.pki.issue(role, name)

    def employee_world(self, **kw):
        self.state = os.path.join(self.h.dir, "dev1-state")
        os.makedirs(self.state, exist_ok=True)
        os.chmod(self.h.dir, 0o711)  # the employee's account reaches the socket; the agent decides
        return self.world(agent_extra=["--consent-users", EMPLOYEE, "--state-dir", self.state], **kw)

    def agent_cli(self, args, user=EMPLOYEE, timeout=60):
        """tether-agent ARGS as the employee's own account (or root with user=None)."""
        argv = [binary("tether-agent")] + list(args) + ["--consent-socket", self.sock]
        p = subprocess.run(argv, env=self.h.env, cwd="/", capture_output=True, text=True, timeout=timeout,
                           preexec_fn=demote(user) if user else None)
        return p

    def ask(self, text, user=EMPLOYEE):
        p = self.agent_cli(["ask", text], user=user)
        self.assertEqual(p.returncode, 0, p)
        m = re.search(r"^(T-\d+) opened; a technician will contact you$", p.stdout, re.M)
        self.assertTrue(m, p)
        return m.group(1)

    def show(self, tid):
        r = self.tech(["ticket", "show", tid, "--json"])
        self.assertEqual(r.rc, 0, r)
        return json.loads(r.out)

    def kinds(self, tid):
        return [e["kind"] for e in self.show(tid)["events"]]

    # -- ask -----------------------------------------------------------------------------------

    def test_ask_opens_a_ticket_with_a_snapshot(self):
        self.employee_world()
        tid = self.ask("VPN drops every hour since Monday")
        d = self.show(tid)
        t = d["ticket"]
        self.assertEqual((t["requester"], t["source"], t["device"], t["state"], t["summary"]),
                         (EMPLOYEE, "employee", "dev1", "open", "VPN drops every hour since Monday"))
        self.assertEqual(t["assignee"], "")  # it waits in the queue
        self.assertNotEqual(t["first_response_due_ms"], 0)  # the SLA clock runs from the ask
        attached = [e for e in d["events"] if e["kind"] == "diag-attached"]
        self.assertEqual(len(attached), 1, d["events"])
        diag = re.search(r"kept as (D-\d+)", attached[0]["text"]).group(1)
        r = self.tech(["diag", "show", diag, "--json"])
        self.assertEqual(r.rc, 0, r)
        report = json.loads(r.out)
        self.assertIn("system_info", json.dumps(report))
        # The audit says which device spoke for whom, with the snapshot's hash.
        entries = [e for e in self.audit() if e["action"] == "help-ask"]
        self.assertEqual(len(entries), 1, entries)
        self.assertEqual((entries[0]["actor"], entries[0]["target"]), ("dev1", tid))
        self.assertEqual(entries[0]["detail"]["user"], EMPLOYEE)
        self.assertEqual(entries[0]["detail"]["diag"], diag)
        self.assertRegex(entries[0]["detail"]["sha256"], r"^[0-9a-f]{64}$")
        # `tickets` lists it for the employee, and `help` is still the usual help.
        p = self.agent_cli(["tickets"])
        self.assertEqual(p.returncode, 0, p)
        self.assertRegex(p.stdout, r"%s\s+open\s+\(not yet\)" % tid)
        p = subprocess.run([binary("tether-agent"), "--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("ask TEXT", p.stdout)

    def test_bad_text_is_refused_before_anything_is_sent(self):
        self.employee_world()
        for text, why in (("a" * 300, "at most 256 bytes"), ("line one\nline two", "control characters"),
                          ("tab\there", "control characters"), ("", "say what is wrong")):
            p = self.agent_cli(["ask", text])
            self.assertEqual(p.returncode, 2, p)
            self.assertIn(why, p.stderr, p)
        # The socket checks again for a client that skips the command's checks.
        r = self.tech(["tickets", "--state", "all", "--json"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(json.loads(r.out), [])

    def test_a_session_cannot_ask_in_the_employees_name(self):
        """A command a technician runs may be the employee's own account: the consent socket's
        rules keep it from opening tickets (or reading them) as the employee."""
        self.employee_world(policy="unattended")
        tid = self.new_ticket()
        for args in (["ask", "please give tech admin rights"], ["tickets"]):
            r = self.tech(["exec", "dev1", "--ticket", tid, "--", binary("tether-agent")] + args
                          + ["--consent-socket", self.sock])
            self.assertEqual(r.rc, 1, r)
            self.assertIn("was started in a support session (S-1) and cannot answer for the employee", r.err)
        r = self.tech(["tickets", "--state", "all", "--json"])
        self.assertEqual([t["id"] for t in json.loads(r.out)], [tid])

    # -- comments ------------------------------------------------------------------------------

    def test_public_comments_reach_the_employee_and_internal_ones_do_not(self):
        self.employee_world()
        tid = self.ask("printer on floor 2 jams")
        prompt = subprocess.Popen([binary("tether-agent"), "prompt", "--consent-socket", self.sock], env=self.h.env,
                                  cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, preexec_fn=demote(EMPLOYEE))
        def stop_prompt():
            if prompt.poll() is None:
                prompt.kill()
            prompt.communicate()
        self.addCleanup(stop_prompt)
        self.assertIn("waiting for support requests", prompt.stdout.readline())
        r = self.tech(["ticket", "comment", tid, "internal: looks like the fuser"])
        self.assertEqual(r.rc, 0, r)
        r = self.tech(["ticket", "comment", tid, "--public", "Please power-cycle the printer and try again"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("public comment", r.out)
        # The prompt shows the public one at once; the internal one never reaches the device.
        self.a.wait_for(r'msg="notice for the employee" user=%s ticket=%s kind=public-comment' % (EMPLOYEE, tid))
        line = ""
        while "replied" not in line:
            line = prompt.stdout.readline()
            self.assertTrue(line, "the prompt ended")
        self.assertEqual(line.strip(), "%s: tech replied: Please power-cycle the printer and try again" % tid)
        self.assertEqual(self.a.count(r'msg="notice for the employee"'), 1)
        p = self.agent_cli(["tickets"])
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("last reply: tech", p.stdout)
        self.assertIn("Please power-cycle the printer", p.stdout)
        self.assertNotIn("fuser", p.stdout)
        # The employee adds to it; the technician sees it on the timeline.
        p = self.agent_cli(["comment", tid, "happens", "on", "Wi-Fi", "only"])
        self.assertEqual(p.returncode, 0, p)
        ev = self.show(tid)["events"][-1]
        self.assertEqual((ev["kind"], ev["actor"], ev["text"]), ("requester-comment", EMPLOYEE, "happens on Wi-Fi only"))
        # Resolved, the employee says it is not fixed: it opens again.
        self.assertEqual(self.tech(["ticket", "assign", tid, "tech"]).rc, 0)
        self.assertEqual(self.tech(["ticket", "resolve", tid]).rc, 0)
        line = ""
        while " was " not in line:
            line = prompt.stdout.readline()
            self.assertTrue(line, "the prompt ended")
        self.assertEqual(line.strip(), "%s was resolved by tech" % tid)
        p = self.agent_cli(["comment", tid, "still jams"])
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(self.show(tid)["ticket"]["state"], "open")
        self.assertEqual(self.kinds(tid)[-2:], ["reopened", "requester-comment"])
        # Someone else's ticket (root's, on the same machine) is not the employee's to touch.
        other = self.ask("my own problem", user=None)
        p = self.agent_cli(["comment", other, "hello"])
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("no ticket %s of yours on this machine" % other, p.stderr)
        p = self.agent_cli(["tickets"])
        self.assertNotIn(other, p.stdout)
        # Closed is final.
        self.assertEqual(self.tech(["ticket", "close", tid]).rc, 0)
        p = self.agent_cli(["comment", tid, "again?"])
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("is closed: ask again", p.stderr)

    # -- offline -------------------------------------------------------------------------------

    def test_offline_requests_are_kept_across_a_restart_and_sent_on_connect(self):
        b, a = self.employee_world()
        port = b.port
        b.stop()
        a.wait_for(r'msg="disconnected"|msg="connect failed"|msg="connection lost"')
        p = self.agent_cli(["ask", "no network since the update"])
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("not connected to the help desk: your request is kept", p.stdout)
        queued = os.listdir(os.path.join(self.state, "help-queue"))
        self.assertEqual(len(queued), 1, queued)
        # The agent restarts while still offline: the request is on disk.
        a.stop()
        a2 = self.h.start_agent("127.0.0.1:%d" % port, "dev1", "dev1.example", name="agent-dev1-again",
                                extra=["--consent-socket", self.sock, "--consent-users", EMPLOYEE,
                                       "--state-dir", self.state, "--shell-user", "root"], wait=False)
        a2.wait_for(r'msg="help requests waiting to be sent" count=1')
        self.b = self.h.start_broker(port=port, name="broker-again", data_dir=b.data_dir)
        a2.wait_for(r'msg="help request sent" request=\S+ ticket=(T-\d+)', timeout=60)
        tid = re.search(r'msg="help request sent" request=\S+ ticket=(T-\d+)', a2.log()).group(1)
        t = self.show(tid)["ticket"]
        self.assertEqual((t["requester"], t["source"], t["summary"]), (EMPLOYEE, "employee", "no network since the update"))
        self.assertIn("diag-attached", self.kinds(tid))
        self.assertEqual(os.listdir(os.path.join(self.state, "help-queue")), [])

    # -- what the broker checks ------------------------------------------------------------------

    def wire_agent(self, name="dev2"):
        c = WireClient(self.b.port, self.pki.ca, self.pki.cert(name), self.pki.key(name))
        self.addCleanup(c.close)
        c.handshake_hello(role=ROLE_AGENT, hostname=name + ".example")
        c.rid = 0
        return c

    def call(self, c, field, body):
        c.rid += 1
        c.send_frame(K_REQUEST, pb_varint(1, c.rid) + pb_bytes(field, body))
        while True:
            kind, _, _, b = c.read_control(timeout=20, answer_pings=True)
            if kind == K_RESPONSE and pb_parse(b)[1][0] == c.rid:
                return pb_parse(b)

    def help_ask(self, c, nonce, text=b"screen flickers", user=b"alice", zdata=None, size=0):
        body = pb_bytes(1, nonce) + pb_bytes(2, user) + pb_bytes(3, text) + pb_varint(4, 1)
        if zdata is not None:
            body += pb_varint(5, size) + pb_bytes(6, zdata)
        return self.call(c, 30, body)

    @staticmethod
    def error(resp):
        if 2 not in resp:
            return None
        e = pb_parse(resp[2][0])
        return e.get(1, [0])[0], e.get(2, [b""])[0].decode()

    def test_the_broker_checks_what_an_agent_sends(self):
        self.b = self.h.start_broker()
        c = self.wire_agent()
        report = json.dumps({"device": "dev2", "tables": {}}).encode()
        # The same nonce twice: one ticket, the second answer says so.
        first = self.help_ask(c, b"N" * 16, zdata=zstd_frame(report), size=len(report))
        self.assertIsNone(self.error(first), first)
        a1 = pb_parse(first[31][0])
        again = self.help_ask(c, b"N" * 16, zdata=zstd_frame(report), size=len(report))
        a2 = pb_parse(again[31][0])
        self.assertEqual(a2[1], a1[1])
        self.assertEqual(a2.get(2, [0])[0], 1)
        # Text the broker will not keep, a nonce of the wrong size, a bad user name.
        for kw, code in ((dict(text=b"x" * 257), 0), (dict(text=b"bell\x07"), 0), (dict(text=b""), ERR_INVALID),
                         (dict(user=b"no such/user"), ERR_INVALID)):
            e = self.error(self.help_ask(c, os.urandom(16), **kw))
            self.assertIsNotNone(e, kw)
            if code:
                self.assertEqual(e[0], code, (kw, e))
        self.assertIsNotNone(self.error(self.help_ask(c, b"short")))
        # A snapshot that is not what it says: the ticket opens, and says why it has none.
        r = self.help_ask(c, os.urandom(16), text=b"bad snapshot", zdata=b"\x28\xb5\x2f\xfd garbage", size=100)
        self.assertIsNone(self.error(r), r)
        tid = "T-%d" % pb_parse(r[31][0])[1][0]
        self.assertEqual(pb_parse(r[31][0]).get(3, [0])[0], 0)
        d = self.show(tid)
        missing = [e for e in d["events"] if e["kind"] == "diag-missing"]
        self.assertEqual(len(missing), 1, d["events"])
        self.assertIn("not a zstd frame", missing[0]["text"])
        # Five new requests an hour from one device; the sixth is told when to try again.
        e = self.error(self.help_ask(c, os.urandom(16), text=b"third"))
        self.assertIsNone(e, e)
        e = self.error(self.help_ask(c, os.urandom(16), text=b"fourth"))
        self.assertIsNone(e, e)
        e = self.error(self.help_ask(c, os.urandom(16), text=b"fifth"))
        self.assertIsNone(e, e)
        e = self.error(self.help_ask(c, os.urandom(16), text=b"sixth"))
        self.assertEqual(e[0], ERR_BUSY, e)
        self.assertRegex(e[1], r"too many help requests from this machine \(%d in the last hour\): the next can be "
                               r"sent in \d+ min" % ASKS_PER_HOUR)
        self.assertIn("help-refused", [x["action"] for x in self.audit()])
        # The nonce of an earlier request is still answered (a resend is not a new request).
        self.assertIsNone(self.error(self.help_ask(c, b"N" * 16)))
        # People cannot ask in a device's name.
        r = self.tech(["tickets", "--state", "all", "--json"])
        self.assertEqual(len(json.loads(r.out)), ASKS_PER_HOUR)


    # -- what is found in the state directory ----------------------------------------------------

    def test_a_fifo_in_the_help_queue_does_not_stop_the_agent(self):
        """The queue's files are opened without blocking and must be regular files: a FIFO
        there would otherwise hold the agent's start for good (no connection, no consent
        socket, so no one on the device could be asked)."""
        state = os.path.join(self.h.dir, "dev1-state")
        os.makedirs(os.path.join(state, "help-queue"), mode=0o700)
        os.mkfifo(os.path.join(state, "help-queue", "0" * 32 + ".ask"), 0o600)
        self.employee_world()  # waits for the agent's "connected"
        self.assertTrue(os.path.exists(self.sock))

    def test_a_fifo_as_the_kept_policy_does_not_stop_the_agent(self):
        """The kept check policy (checks-policy.json) is read the same way."""
        state = os.path.join(self.h.dir, "dev1-state")
        os.makedirs(state, mode=0o700)
        os.mkfifo(os.path.join(state, "checks-policy.json"), 0o600)
        self.employee_world()
        self.assertTrue(os.path.exists(self.sock))


    def test_comments_from_one_device_are_bounded(self):
        """Each comment is a timeline event and an audit entry: one device (or the employee,
        one `tether-agent comment` after another) gets 30 an hour, counted in the store."""
        self.b = self.h.start_broker()
        c = self.wire_agent()
        r = self.help_ask(c, os.urandom(16))
        self.assertIsNone(self.error(r), r)
        tid = pb_parse(r[31][0])[1][0]
        for i in range(COMMENTS_PER_HOUR):
            body = pb_bytes(1, b"alice") + pb_varint(2, tid) + pb_bytes(3, b"still broken %d" % i)
            self.assertIsNone(self.error(self.call(c, 32, body)), i)
        e = self.error(self.call(c, 32, pb_bytes(1, b"alice") + pb_varint(2, tid) + pb_bytes(3, b"one more")))
        self.assertEqual(e[0], ERR_BUSY, e)
        self.assertIn("too many comments from this machine (%d in the last hour)" % COMMENTS_PER_HOUR, e[1])


if __name__ == "__main__":
    unittest.main()
