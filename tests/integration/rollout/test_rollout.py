"""Agent upgrades rolled out from the broker (issue 14), on 127.0.0.1 with the real programs:
an admin makes a release key (tether-certs release-key), signs packages (release-sign),
uploads them (tether release add) and starts rollouts (tether rollout start); two agents take
them. The "package" here is the agent's program itself and the agents' upgrade.install is
fake_install.sh, which does what dpkg and the package's scripts do to a running agent
(replace the program, stop the old agent, start the new): one agent comes back on the next
version (tether-agent-next, built for this test), the other is given a package that never
comes back and rolls itself back. Then what must be refused is: a manifest signed by another
key, a tampered package, a manifest for another architecture, a download that cannot be
written, each with its reason on `rollout status` and the running agent untouched.

Run by ctest as `integration.rollout` (TT_BIN_DIR names the build directory)."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import unittest

from harness import (BIN_DIR, K_HELLO, K_REQUEST, K_RESPONSE, K_WELCOME, ROLE_AGENT, START_TIMEOUT, Pki, TetherTestCase, WireClient,
                     binary, hello_body, pb_bytes, pb_parse, pb_varint, sanitizer_report)

HERE = os.path.dirname(os.path.abspath(__file__))
INSTALL = os.path.join(HERE, "fake_install.sh")
VERSION = None  # the agent's, from `tether-agent --version` (setUpClass)
UPGRADE_TIMEOUT = 90  # seconds: a download, an install and a restart under ASan


def next_version(v):
    major, minor, patch = v.split(".")
    return "%s.%s.%d" % (major, minor, int(patch) + 1)


class Device:
    """An agent run the way a package runs it: its own copy of the program (which an upgrade
    replaces), restarted by the installer with the same arguments; its pid in agent.pid."""

    def __init__(self, h, name, args, wrapper=(), install=None):
        self.h, self.name = h, name
        self.dir = os.path.join(h.dir, name)
        os.makedirs(os.path.join(self.dir, "bin"))
        os.makedirs(os.path.join(self.dir, "state"), mode=0o700)
        shutil.copy(binary("tether-agent"), os.path.join(self.dir, "bin", "tether-agent"))
        self.log = os.path.join(self.dir, "agent.log")
        with open(os.path.join(self.dir, "args"), "w") as f:
            f.write("\n".join(["run", "--state-dir", os.path.join(self.dir, "state"),
                               "--consent-socket", os.path.join(self.dir, "consent.sock"),
                               "--upgrade-launcher", "fork",
                               "--upgrade-install", (install or "%s") % ("%s %s" % (INSTALL, self.dir))]
                              + list(args)) + "\n")
        with open(os.path.join(self.dir, "args")) as f:
            argv = list(wrapper) + [os.path.join(self.dir, "bin", "tether-agent")] + f.read().splitlines()
        with open(self.log, "ab") as out:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=h.env,
                                 start_new_session=True)
        self.first = p
        with open(os.path.join(self.dir, "agent.pid"), "w") as f:
            f.write("%d\n" % p.pid)

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def pid(self):
        with open(os.path.join(self.dir, "agent.pid")) as f:
            return int(f.read().split()[0])

    def wait_log(self, needle, count=1, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while self.text().count(needle) < count:
            if time.monotonic() > deadline:
                raise AssertionError("%s: %r not logged %d time(s) within %ds; log:\n%s" % (
                    self.name, needle, count, timeout, self.text()[-3000:]))
            time.sleep(0.05)

    def stop(self):
        """SIGTERM the agent running now (and reap the first, if it is that one); returns the
        problems seen in its log."""
        try:
            pid = self.pid()
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if self.first.poll() is not None and pid == self.first.pid:
                    break
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        if self.first.poll() is None and self.first.pid != self.pid():
            self.first.kill()
        self.first.wait(timeout=20)
        rep = sanitizer_report(self.text())
        return ["%s: sanitizer report:\n%s" % (self.name, rep)] if rep else []


class RolloutTest(TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        global VERSION
        out = subprocess.run([binary("tether-agent"), "--version"], capture_output=True, text=True, timeout=30)
        VERSION = out.stdout.split()[-1]
        cls.pki = Pki()
        for role, name in (("admin", "boss"), ("technician", "tech"), ("agent", "pc-1"), ("agent", "pc-2")):
            cls.pki.issue(role, name)

    def setUp(self):
        super().setUp()
        self.devices = []
        self.addCleanup(self._stop_devices)
        self.keys = os.path.join(self.h.dir, "keys")
        os.makedirs(self.keys)
        self.ok(self.h.run("tether-certs", ["release-key", "--out", os.path.join(self.keys, "release")]))
        self.ok(self.h.run("tether-certs", ["release-key", "--out", os.path.join(self.keys, "other")]))
        self.pub = os.path.join(self.keys, "release.pub")

    def _stop_devices(self):
        problems = []
        for d in self.devices:
            problems += d.stop()
        if problems:
            self.fail("\n".join(problems))

    # -- helpers ------------------------------------------------------------------------------

    def ok(self, r):
        self.assertEqual(r.rc, 0, r)
        return r

    def admin(self, args, **kw):
        return self.h.console(self.b.addr, args, cert=self.pki.cert("boss"), key=self.pki.key("boss"), **kw)

    def start_broker(self, keys=True, **kw):
        extra = ["--release-keys", self.pub] if keys else []
        self.b = self.h.start_broker(extra=extra, **kw)
        return self.b

    def device(self, name, keys=None, wrapper=(), install=None):
        d = Device(self.h, name, ["--broker", self.b.addr, "--ca", self.pki.ca, "--cert", self.pki.cert(name),
                                  "--key", self.pki.key(name), "--hostname", name,
                                  "--upgrade-release-keys", keys or self.pub], wrapper=wrapper, install=install)
        self.devices.append(d)
        d.wait_log('msg="connected"')
        return d

    def package(self, name, program=None, content=None):
        """A package file: a copy of a program (its name after the end, so that no two
        packages are the same file; a program runs as well with it), or the given bytes."""
        path = os.path.join(self.h.dir, name)
        if program:
            shutil.copy(binary(program) if program in ("tether-agent",) else program, path)
            with open(path, "ab") as f:
                f.write(b"\n" + name.encode())
        else:
            with open(path, "wb") as f:
                f.write(content)
        return path

    def sign(self, pkg, version, key="release", arch=None, out=None):
        args = ["release-sign", "--key", os.path.join(self.keys, key + ".key"), pkg, "--package", "tether-agent",
                "--version", version, "--arch", arch or self.host_arch()]
        if out:
            args += ["--out", out]
        self.ok(self.h.run("tether-certs", args))
        return out or pkg + ".manifest"

    def host_arch(self):
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)

    def add(self, pkg, channel="stable", manifest=None):
        args = ["release", "add", pkg, "--channel", channel]
        if manifest:
            args += ["--manifest", manifest]
        return self.admin(args)

    def status(self, rid=None):
        r = self.ok(self.admin(["rollout", "status"] + ([str(rid)] if rid else []) + ["--json"]))
        return json.loads(r.out)

    def dev_state(self, st, name):
        for d in st["devices"]:
            if d["device"] == name:
                return d
        raise AssertionError("%s not in rollout %s: %s" % (name, st.get("id"), st))

    def wait_state(self, name, states, timeout=UPGRADE_TIMEOUT):
        last = [None]

        def check():
            last[0] = self.status()
            return self.dev_state(last[0], name)["state"] in states
        try:
            self.wait_until(check, "%s reaches %s" % (name, states), timeout=timeout)
        except AssertionError:
            raise AssertionError("%s never reached %s: %s" % (name, states, json.dumps(last[0], indent=1)))
        return self.dev_state(last[0], name)

    def agent_version(self, name):
        for d in self.h.devices(self.b.addr, cert=self.pki.cert("boss"), key=self.pki.key("boss")):
            if d["device"] == name and d.get("online"):
                return d.get("agent_version") or d.get("version")
        return None

    def gated(self, go):
        """An upgrade.install that waits until the file go exists (the test made its move),
        at most 60 s, then installs."""
        return ('i=0; while [ ! -e %s ] && [ "$i" -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done; %%s' % go)

    def upgrade_files(self, d):
        """What the device's upgrade directory keeps once an upgrade is over: the packages
        and their manifests (not the guard's log)."""
        return sorted(n for n in os.listdir(os.path.join(d.dir, "state", "upgrade"))
                      if n.endswith((".pkg", ".part", ".manifest")))

    def audit(self):
        return [json.loads(ln) for ln in self.ok(self.admin(["audit", "--json"])).out.splitlines()]

    def start(self, version, devices, channel="stable", health="20s", pause="1"):
        return self.admin(["rollout", "start", version] + list(devices) +
                          ["--channel", channel, "--health", health, "--pause-on-failure", pause, "--canary", "100%"])

    # -- the rollouts ---------------------------------------------------------------------------

    def test_one_upgrades_one_rolls_back(self):
        self.start_broker()
        pc1, pc2 = self.device("pc-1"), self.device("pc-2")
        nxt, bad = next_version(VERSION), next_version(next_version(VERSION))
        old = self.package("agent-old", "tether-agent")
        new = self.package("agent-new", os.path.join(BIN_DIR, "agent", "tether-agent-next"))
        # A package that installs and never comes back: its "agent" exits at once.
        broken = self.package("agent-broken", content=b"#!/bin/sh\necho 'broken build' >&2\nexit 3\n")
        for pkg, v, ch in ((old, VERSION, "stable"), (new, nxt, "stable"), (broken, bad, "beta")):
            self.sign(pkg, v)
            r = self.ok(self.add(pkg, channel=ch))
            self.assertIn(v, r.out)
        listed = self.ok(self.admin(["release", "list", "--json"]))
        self.assertEqual(len(json.loads(listed.out)), 3, listed.out)

        # pc-1 takes the next version and comes back on it.
        self.ok(self.start(nxt, ["pc-1"]))
        d = self.wait_state("pc-1", ("installed",))
        self.assertEqual(d["from_version"], VERSION)
        pc1.wait_log("version=%s" % nxt)
        self.wait_until(lambda: self.agent_version("pc-1") == nxt, "pc-1 reports %s" % nxt)
        self.wait_until(lambda: self.status()["state"] == "done", "rollout 1 done")
        self.assertEqual(self.agent_version("pc-2"), VERSION, "pc-2 was not in the rollout")
        self.wait_until(lambda: self.upgrade_files(pc1) == ["current.manifest", "current.pkg"],
                        "only the running version's package kept")

        # pc-2 is given a package that does not come back: the guard puts the old one back.
        first = pc2.pid()
        self.ok(self.start(bad, ["pc-2"], channel="beta", health="5s"))
        d = self.wait_state("pc-2", ("rolled-back", "failed"))
        self.assertEqual(d["state"], "rolled-back", d)
        self.assertIn("did not come back healthy", d["reason"])
        self.assertIn("back on %s" % VERSION, d["reason"])
        st = self.status()
        self.assertEqual(st["state"], "paused", st)
        self.assertIn("1 failure", st["why"])
        self.wait_until(lambda: self.agent_version("pc-2") == VERSION, "pc-2 back on %s" % VERSION)
        self.assertNotEqual(pc2.pid(), first, "the old agent was started again")
        self.wait_until(lambda: self.upgrade_files(pc2) == ["current.manifest", "current.pkg"],
                        "the broken package removed, the running version's kept")
        actions = [e["action"] for e in self.audit()]
        for a in ("release-add", "rollout-start", "upgrade-offered", "upgrade-installing", "upgrade-installed",
                  "upgrade-rolled-back", "rollout-pause", "rollout-done"):
            self.assertIn(a, actions)
        # Resumed, the rollout has nobody left to offer it to: pc-2 failed, it is not retried.
        self.ok(self.admin(["rollout", "cancel", "--reason", "bad build"]))
        self.assertEqual(self.status()["state"], "cancelled")

    def test_canary_first_then_the_next_wave(self):
        """Two devices, a canary of 50%: one is offered the release; the other only once the
        canary came back on the new version and the rollout moved to its next wave."""
        self.start_broker()
        self.device("pc-1"), self.device("pc-2")
        nxt = next_version(VERSION)
        for name, prog, v in (("agent-old", "tether-agent", VERSION),
                              ("agent-new", os.path.join(BIN_DIR, "agent", "tether-agent-next"), nxt)):
            p = self.package(name, prog)
            self.sign(p, v)
            self.ok(self.add(p))
        r = self.ok(self.admin(["rollout", "start", nxt, "--group", "*", "--canary", "50%", "--wave", "50%",
                                "--health", "30s", "--json"]))
        st = json.loads(r.out)
        self.assertEqual((st["waves"], st["total"]), (2, 2), st)
        self.wait_until(lambda: self.status()["state"] == "done", "the rollout done", timeout=2 * UPGRADE_TIMEOUT)
        for name in ("pc-1", "pc-2"):
            self.assertEqual(self.dev_state(self.status(), name)["state"], "installed")
            self.wait_until(lambda n=name: self.agent_version(n) == nxt, "%s on %s" % (name, nxt))
        log = [(e["action"], e.get("actor"), e.get("target")) for e in self.audit()]
        offered = [i for i, (a, _, _) in enumerate(log) if a == "upgrade-offered"]
        installed = [i for i, (a, _, _) in enumerate(log) if a == "upgrade-installed"]
        wave = [i for i, (a, _, _) in enumerate(log) if a == "rollout-wave"]
        self.assertEqual((len(offered), len(installed), len(wave)), (2, 2, 1), log)
        self.assertLess(offered[0], installed[0])
        self.assertLess(installed[0], wave[0], "the canary came back before the next wave")
        self.assertLess(wave[0], offered[1], "the second device was offered it in the next wave")
        self.assertEqual(log[offered[0]][1], log[installed[0]][1], "the canary is the first installed")

    def test_broker_restart_while_a_device_installs(self):
        """A broker restarted while an agent installs waits for its report: the device's time
        in `installing` does not start at zero (uv_now is the machine's uptime), so it is not
        failed at the first sweep, and the rollout does not pause."""
        self.start_broker()
        # The installer takes a while: the broker restarts meanwhile.
        # The installer waits for the test's go (the broker restarted meanwhile).
        go = os.path.join(self.h.dir, "go")
        pc1 = self.device("pc-1", install=self.gated(go))
        nxt = next_version(VERSION)
        old = self.package("agent-old", "tether-agent")
        new = self.package("agent-new", os.path.join(BIN_DIR, "agent", "tether-agent-next"))
        for pkg, v in ((old, VERSION), (new, nxt)):
            self.sign(pkg, v)
            self.ok(self.add(pkg))
        self.ok(self.start(nxt, ["pc-1"], health="60s", pause="1"))
        self.wait_state("pc-1", ("installing",))
        self.b.stop()
        self.b = self.h.start_broker(port=self.b.port, data_dir=self.b.data_dir, name="broker-again",
                                     extra=["--release-keys", self.pub])
        open(go, "w").close()
        d = self.wait_state("pc-1", ("installed", "failed"))
        st = self.status()
        self.assertEqual(st["failures"], 0, st)
        self.assertNotEqual(st["state"], "paused", st)
        self.assertNotIn("upgrade-failed", [e["action"] for e in self.audit()])
        self.assertEqual(d["state"], "installed", d)
        pc1.wait_log("version=%s" % nxt)

    def test_installed_is_not_taken_from_an_agent_not_running_the_version(self):
        """An agent reports `installed` only for the version its link runs, and only in a
        rollout that offered it something: an agent whose Hello said the old version (and
        that takes no upgrades, so it was skipped) cannot have the audit say it upgraded."""
        self.start_broker()
        nxt = next_version(VERSION)
        for name, prog, v in (("agent-old", binary("tether-agent"), VERSION),
                              ("agent-new", os.path.join(BIN_DIR, "agent", "tether-agent-next"), nxt)):
            pkg = self.package(name, prog)
            self.sign(pkg, v)
            self.ok(self.add(pkg))
        with WireClient(self.b.port, self.pki.ca, cert=self.pki.cert("pc-2"), key=self.pki.key("pc-2")) as w:
            w.handshake_hello(role=ROLE_AGENT, software_version=VERSION, hostname="pc-2")
            self.ok(self.start(nxt, ["pc-2"]))
            self.wait_state("pc-2", ("skipped",))
            rid = self.status()["id"]
            report = pb_varint(1, rid) + pb_varint(2, 5) + pb_bytes(6, nxt)  # UPGRADE_INSTALLED
            w.send_frame(K_REQUEST, pb_varint(1, 7) + pb_bytes(58, report))
            while True:
                kind, _, _, _ = w.read_control(answer_pings=True)
                if kind == K_RESPONSE:
                    break
            st = self.status()
            self.assertEqual(self.dev_state(st, "pc-2")["state"], "skipped", st)
            self.assertNotIn("upgrade-installed", [e["action"] for e in self.audit()])

    def test_a_rollback_is_the_last_word(self):
        """A device rolled back stays rolled back: an agent (here a hand-made one) that then
        says `installed` from a link on the new version, and rolled back again, neither
        undoes the rollback nor has it counted (and audited) as a second failure; flipping
        between the two would pause any rollout on one device's word."""
        self.start_broker()
        nxt = next_version(VERSION)
        for name, prog, v in (("agent-old", binary("tether-agent"), VERSION),
                              ("agent-new", os.path.join(BIN_DIR, "agent", "tether-agent-next"), nxt)):
            pkg = self.package(name, prog)
            self.sign(pkg, v)
            self.ok(self.add(pkg))

        def connect(version):
            w = WireClient(self.b.port, self.pki.ca, cert=self.pki.cert("pc-2"), key=self.pki.key("pc-2"))
            w.send_frame(K_HELLO, hello_body(ROLE_AGENT, software_version=version, hostname="pc-2")
                         + pb_varint(4, 32) + pb_bytes(7, self.host_arch()))  # CAP_UPGRADE
            kind, _, _, _ = w.read_control()
            self.assertEqual(kind, K_WELCOME)
            return w

        def report(w, rid, step, version, reason=""):
            body = pb_varint(1, rid) + pb_varint(2, step) + pb_bytes(3, reason) + pb_bytes(6, version)
            w.send_frame(K_REQUEST, pb_varint(1, 7) + pb_bytes(58, body))
            while w.read_control(answer_pings=True)[0] != K_RESPONSE:
                pass

        with connect(VERSION) as w:
            self.ok(self.start(nxt, ["pc-2"], pause="3"))
            rid = self.status()["id"]
            while True:  # the offer: taken (downloading)
                kind, _, _, body = w.read_control(answer_pings=True)
                if kind == K_REQUEST and 57 in pb_parse(body):
                    break
            offer = pb_parse(body)[1][0]
            w.send_frame(K_RESPONSE, pb_varint(1, offer) + pb_bytes(55, pb_varint(1, rid) + pb_varint(2, 2) +
                                                                   pb_bytes(6, VERSION)))
            self.wait_state("pc-2", ("downloading",))
            report(w, rid, 6, VERSION, "did not come back")  # UPGRADE_ROLLED_BACK
        self.wait_state("pc-2", ("rolled-back",))
        self.assertEqual(self.status()["failures"], 1)
        with connect(nxt) as w:
            for _ in range(3):
                report(w, rid, 5, nxt)                       # UPGRADE_INSTALLED
                report(w, rid, 6, nxt, "rolled back again")  # UPGRADE_ROLLED_BACK
        st = self.status()
        self.assertEqual(self.dev_state(st, "pc-2")["state"], "rolled-back", st)
        self.assertEqual(st["failures"], 1, st)
        actions = [e["action"] for e in self.audit()]
        self.assertNotIn("upgrade-installed", actions)
        self.assertEqual(actions.count("upgrade-rolled-back"), 1, actions)

    def test_a_device_named_twice(self):
        """A device named twice is the one device, not one "not enrolled"."""
        self.start_broker()
        nxt = next_version(VERSION)
        pkg = self.package("agent-new", os.path.join(BIN_DIR, "agent", "tether-agent-next"))
        self.sign(pkg, nxt)
        self.ok(self.add(pkg))
        with WireClient(self.b.port, self.pki.ca, cert=self.pki.cert("pc-2"), key=self.pki.key("pc-2")) as w:
            w.handshake_hello(role=ROLE_AGENT, software_version=VERSION, hostname="pc-2")
            self.ok(self.start(nxt, ["pc-2", "pc-2"]))
            self.assertEqual(self.status()["total"], 1)

    def test_a_canary_that_took_nothing_does_not_start_the_next_wave(self):
        """The next wave starts only once a device of the waves reached took the version: a
        canary whose every device refused (fewer than --pause-on-failure) does not wave the
        rest of the group through; the rollout pauses and says why."""
        self.start_broker()
        other = os.path.join(self.keys, "other.pub")
        self.device("pc-1", keys=other)
        self.device("pc-2", keys=other)
        nxt = next_version(VERSION)
        for name, prog, v in (("agent-old", binary("tether-agent"), VERSION),
                              ("agent-new", os.path.join(BIN_DIR, "agent", "tether-agent-next"), nxt)):
            pkg = self.package(name, prog)
            self.sign(pkg, v)
            self.ok(self.add(pkg))
        self.ok(self.admin(["rollout", "start", nxt, "pc-1", "pc-2", "--canary", "50%", "--wave", "50%",
                            "--pause-on-failure", "3", "--health", "20s"]))
        st = self.status()
        canary = [d["device"] for d in st["devices"] if d["wave"] == 0]
        rest = [d["device"] for d in st["devices"] if d["wave"] == 1]
        self.assertEqual((len(canary), len(rest)), (1, 1), st)
        self.wait_state(canary[0], ("refused",))
        self.wait_until(lambda: self.status()["state"] == "paused", "the rollout paused")
        st = self.status()
        self.assertEqual(self.dev_state(st, rest[0])["state"], "pending", st)
        self.assertEqual(st["wave"], 0, st)
        self.assertEqual(st["state"], "paused", st)

    def test_healthy_means_it_stayed_up(self):
        """A new agent that connects and dies two seconds later is not called healthy (it has
        to stay connected for a third of the health deadline first): the guard rolls it
        back."""
        self.start_broker()
        pc1 = self.device("pc-1")
        nxt = next_version(VERSION)
        old = self.package("agent-old", "tether-agent")
        flaky = self.package("agent-flaky", content=(
            "#!/bin/sh\nexec timeout -s KILL 2 %s \"$@\"\n" % os.path.join(BIN_DIR, "agent", "tether-agent-next")).encode())
        for pkg, v in ((old, VERSION), (flaky, nxt)):
            self.sign(pkg, v)
            self.ok(self.add(pkg))
        self.ok(self.start(nxt, ["pc-1"], health="15s"))
        d = self.wait_state("pc-1", ("rolled-back", "installed", "failed"))
        self.assertEqual(d["state"], "rolled-back", d)
        self.assertIn("did not come back healthy", d["reason"])
        self.assertIn("version=%s" % nxt, pc1.text(), "the new agent did start and connect")
        self.assertNotIn("upgrade-installed", [e["action"] for e in self.audit()])
        self.wait_until(lambda: self.agent_version("pc-1") == VERSION, "pc-1 back on %s" % VERSION)

    def test_reports_after_a_cancel_are_recorded(self):
        """An install under way when the rollout is cancelled goes on (the guard is out of the
        broker's reach): how it ends is still recorded and audited."""
        self.start_broker()
        go = os.path.join(self.h.dir, "go")
        self.device("pc-1", install=self.gated(go))
        nxt = next_version(VERSION)
        old = self.package("agent-old", "tether-agent")
        new = self.package("agent-new", os.path.join(BIN_DIR, "agent", "tether-agent-next"))
        for pkg, v in ((old, VERSION), (new, nxt)):
            self.sign(pkg, v)
            self.ok(self.add(pkg))
        self.ok(self.start(nxt, ["pc-1"], health="30s"))
        self.wait_state("pc-1", ("installing",))
        self.ok(self.admin(["rollout", "cancel", "--reason", "changed my mind"]))
        self.assertEqual(self.status()["state"], "cancelled")
        open(go, "w").close()
        self.wait_until(lambda: self.dev_state(self.status(), "pc-1")["state"] == "installed",
                        "the install's end recorded after the cancel", timeout=UPGRADE_TIMEOUT)
        self.assertIn("upgrade-installed", [e["action"] for e in self.audit()])

    # -- what is refused ----------------------------------------------------------------------

    def refused(self, name, version, channel, want, pid):
        self.ok(self.start(version, [name], channel=channel))
        d = self.wait_state(name, ("refused", "failed"))
        self.assertIn(want, d["reason"])
        self.ok(self.admin(["rollout", "cancel"]))
        self.assertEqual(self.devices[0].pid(), pid, "the running agent was touched")
        self.assertEqual(self.agent_version(name), VERSION)
        return d

    def test_bad_releases_refused_and_the_agent_untouched(self):
        # A broker that does not check manifests: the agent must.
        self.start_broker(keys=False)
        pc1 = self.device("pc-1")
        pid = pc1.pid()
        old = self.package("agent-old", "tether-agent")
        self.sign(old, VERSION)
        self.ok(self.add(old))
        new = os.path.join(BIN_DIR, "agent", "tether-agent-next")

        # Signed by a key the agent was not given.
        p = self.package("other-signed", new)
        self.sign(p, "9.0.1", key="other")
        self.ok(self.add(p))
        d = self.refused("pc-1", "9.0.1", "stable", "not a release key this agent trusts", pid)
        self.assertEqual(d["state"], "refused")

        # A manifest edited after it was signed (its version raised): the signature fails.
        p = self.package("edited", new)
        m = self.sign(p, "9.0.0")
        with open(m) as f:
            text = f.read()
        with open(m, "w") as f:
            f.write(text.replace("version 9.0.0\n", "version 9.0.9\n"))
        self.ok(self.add(p))
        d = self.refused("pc-1", "9.0.9", "stable", "signature does not verify", pid)
        self.assertEqual(d["state"], "refused")

        # Tampered with after it was signed and added (on the broker's disk).
        p = self.package("tampered", new)
        self.sign(p, "9.0.2")
        r = self.ok(self.add(p))
        sha = json.loads(self.ok(self.admin(["release", "list", "--json"])).out)[0]["sha256"]
        stored = os.path.join(self.b.data_dir, "releases", sha + ".pkg")
        with open(stored, "r+b") as f:
            f.seek(4096)
            f.write(b"\x90" * 16)
        d = self.refused("pc-1", "9.0.2", "stable", "sha256 is not the one its manifest signs", pid)
        self.assertEqual(d["state"], "failed")
        self.assertFalse([n for n in os.listdir(os.path.join(pc1.dir, "state", "upgrade")) if n.endswith(".pkg")
                          and n.startswith(sha)], "the tampered package was not kept")

        # For another architecture (the broker's record edited to offer it here anyway).
        p = self.package("foreign", new)
        self.sign(p, "9.0.3", arch="s390x")
        self.ok(self.add(p))
        self.b.stop()
        db = sqlite3.connect(os.path.join(self.b.data_dir, "broker.db"))
        db.execute("UPDATE agent_releases SET arch = ? WHERE version = '9.0.3'", (self.host_arch(),))
        db.commit()
        db.close()
        self.b = self.h.start_broker(port=self.b.port, data_dir=self.b.data_dir, name="broker-again")
        pc1.wait_log('msg="connected"', count=2)
        d = self.refused("pc-1", "9.0.3", "stable", "the release is for s390x", pid)

        # Not newer than what runs, and the manifest allows no downgrade.
        p = self.package("older", new)
        self.sign(p, "0.0.1")
        self.ok(self.add(p))
        self.ok(self.start("0.0.1", ["pc-1"]))
        d = self.wait_state("pc-1", ("current", "refused"))
        self.assertEqual(d["state"], "current", d)
        self.assertIn("runs %s already" % VERSION, d["reason"])
        self.wait_until(lambda: self.status()["state"] == "done", "a rollout with nothing to do is done")

    def test_broker_refuses_a_manifest_not_signed_by_its_keys(self):
        self.start_broker(keys=True)
        p = self.package("other-signed", "tether-agent")
        self.sign(p, "9.1.0", key="other")
        r = self.add(p)
        self.assertNotEqual(r.rc, 0)
        self.assertIn("not a release key", r.err)
        # A package that is not what its manifest signs is refused at the upload.
        p2 = self.package("swapped", "tether-agent")
        m = self.sign(p2, "9.1.1")
        with open(p2, "ab") as f:
            f.write(b"extra")
        r = self.add(p2, manifest=m)
        self.assertNotEqual(r.rc, 0)
        self.assertIn("size", r.err + r.out)
        self.assertEqual(json.loads(self.ok(self.admin(["release", "list", "--json"])).out), [])
        actions = [e["action"] for e in self.audit()]
        self.assertIn("release-refused", actions)

    def test_no_room_refused_before_download(self):
        """The agent's state directory is a 24 MB file system of its own (a mount namespace):
        the package and the one to roll back to, with the margin, do not fit, so the offer is
        refused with what it needs and what there is, and nothing is downloaded."""
        probe = subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                               capture_output=True, timeout=30) if shutil.which("unshare") else None
        if probe is None or probe.returncode != 0:
            self.skipTest("needs unshare --mount and tmpfs mounts (root)")
        self.start_broker()
        state = os.path.join(self.h.dir, "pc-1", "state")
        pc1 = self.device("pc-1", wrapper=["unshare", "--mount", "sh", "-c",
                                           'mount -t tmpfs -o size=24m,mode=0700 tmpfs "%s" && exec "$0" "$@"' % state])
        pid = pc1.pid()
        old = self.package("agent-old", "tether-agent")
        self.sign(old, VERSION)
        self.ok(self.add(old))
        new = self.package("agent-new", os.path.join(BIN_DIR, "agent", "tether-agent-next"))
        self.sign(new, next_version(VERSION))
        self.ok(self.add(new))
        d = self.refused("pc-1", next_version(VERSION), "stable", "not enough disk", pid)
        self.assertEqual(d["state"], "refused")
        self.assertRegex(d["reason"], r"needs \d+ MB free in \S+, \d+ MB are")
        self.assertEqual(d["done"], 0)

    def test_release_remove(self):
        """An admin removes a release (row and package file), audited; not while the active
        rollout may still offer it."""
        self.start_broker()
        self.device("pc-1", keys=os.path.join(self.keys, "other.pub"))  # refuses everything
        nxt = next_version(VERSION)
        shas = {}
        for name, prog, v in (("agent-old", binary("tether-agent"), VERSION),
                              ("agent-new", os.path.join(BIN_DIR, "agent", "tether-agent-next"), nxt)):
            pkg = self.package(name, prog)
            self.sign(pkg, v)
            shas[v] = json.loads(self.ok(self.admin(["release", "add", pkg, "--json"])).out)["sha256"]
        self.ok(self.start(nxt, ["pc-1"]))
        self.wait_until(lambda: self.status()["state"] == "paused", "the rollout paused (refused)")
        r = self.admin(["release", "remove", nxt])
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("may still offer", r.err)
        self.ok(self.admin(["rollout", "cancel"]))
        gone = json.loads(self.ok(self.admin(["release", "remove", nxt, "--json"])).out)
        self.assertEqual([g["sha256"] for g in gone], [shas[nxt]])
        left = json.loads(self.ok(self.admin(["release", "list", "--json"])).out)
        self.assertEqual([x["version"] for x in left], [VERSION])
        self.assertFalse(os.path.exists(os.path.join(self.b.data_dir, "releases", shas[nxt] + ".pkg")))
        self.assertTrue(os.path.exists(os.path.join(self.b.data_dir, "releases", shas[VERSION] + ".pkg")))
        self.ok(self.admin(["release", "remove", shas[VERSION]]))
        self.assertEqual(json.loads(self.ok(self.admin(["release", "list", "--json"])).out), [])
        r = self.admin(["release", "remove", VERSION])
        self.assertNotEqual(r.rc, 0)
        self.assertIn("no such release", r.err)
        self.assertEqual([e["action"] for e in self.audit()].count("release-remove"), 2)

    def test_download_that_cannot_be_written_fails_cleanly(self):
        """The agent's files may not grow past 1 MB (prlimit --fsize: EFBIG, as a full disk
        gives ENOSPC): the download fails with the reason, the part is removed, the agent
        runs on."""
        if not shutil.which("prlimit"):
            self.skipTest("needs prlimit")
        self.start_broker()
        pc1 = self.device("pc-1")
        # prlimit on the running agent: its later writes are bounded.
        subprocess.run(["prlimit", "--pid", str(pc1.pid()), "--fsize=1048576"], check=True, timeout=30)
        pid = pc1.pid()
        old = self.package("agent-old", "tether-agent")
        self.sign(old, VERSION)
        self.ok(self.add(old))
        new = self.package("agent-new", os.path.join(BIN_DIR, "agent", "tether-agent-next"))
        self.sign(new, next_version(VERSION))
        self.ok(self.add(new))
        d = self.refused("pc-1", next_version(VERSION), "stable", "cannot write the download", pid)
        self.assertEqual(d["state"], "failed")
        left = os.listdir(os.path.join(pc1.dir, "state", "upgrade"))
        self.assertFalse([n for n in left if n.endswith(".part")], left)


if __name__ == "__main__":
    unittest.main()
