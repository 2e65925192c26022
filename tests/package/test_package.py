"""The Debian packages: scripts/package.sh builds them, then dpkg-deb, the programs
themselves, systemd-analyze and lintian check what came out (Packages: no root, each package
only unpacked into a temporary directory). Then, as root with mmdebstrap, they are installed
into a fresh Debian 12 root: installed, started, upgraded from an older version over a store
of an older schema, downgraded, purged (DebianRoot).

TT_PKG_DEBS=DIR checks the packages already in DIR instead of building (scripts/package.sh
has put them in dist/). Otherwise the build goes to $TT_PKG_WORK (ctest: a directory in its
build tree), incremental from one run to the next; the older version's tree for the upgrade
is there too. TT_VERSION is the project's version. Standard library only, but for
python3-cryptography in the upgrade (tests/integration/store_rewind.py signs checkpoints).
"""

import glob
import gzip
import hashlib
import os
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import store_rewind  # noqa: E402  (the store tests' rewind to schema 15, shared)

VERSION = os.environ.get("TT_VERSION", "")
# The version the upgrade starts from: the same tree built as an older package. '~' sorts
# before everything, so it is older than VERSION whatever VERSION is (dpkg --compare-versions).
OLD_VERSION = VERSION + "~prev"
BUILD_TIMEOUT = 1500  # seconds: a cold Release build of the five programs on 2 cores, and cpack
TOOL_TIMEOUT = 120
BROKER_TIMEOUT = 60  # a broker's start (a store migrated, the chain re-hashed) and stop

# package -> (programs in /usr/bin, units, conffiles)
PACKAGES = {
    "tether-broker": (["tether-broker", "tether-certs", "tether-sshd"],
                      ["tether-broker.service", "tether-sshd.service"],
                      ["/etc/tether/broker.conf", "/etc/tether/sshd.conf"]),
    "tether-agent": (["tether-agent"], ["tether-agent.service"], ["/etc/tether/agent.conf"]),
    "tether-console": (["tether"], [], []),
}
# program -> the section of its man page (help2man, packaging/CMakeLists.txt)
MAN_SECTIONS = {"tether-broker": "8", "tether-certs": "8", "tether-sshd": "8", "tether-agent": "8", "tether": "1"}
UNIT_DIR = "/lib/systemd/system"
# The trees a package may put files in; anything else (headers, test programs) is a mistake.
ALLOWED = ("/usr/bin/", "/etc/tether/", UNIT_DIR + "/", "/usr/share/doc/", "/usr/share/man/",
           "/usr/share/lintian/overrides/")
# Which program reads which config file, and the flag that stops it right after reading it.
CONFIG_READERS = {"broker.conf": "tether-broker", "agent.conf": "tether-agent", "sshd.conf": "tether-sshd"}

DEBS = {}       # package -> path of its .deb
ROOTS = {}      # package -> the directory it was unpacked into
LINTIAN = None  # (exit status, output), or None when lintian is not installed
WORK = None     # where the builds go
_tmp = None


def run(argv, timeout=TOOL_TIMEOUT, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, **kw)


def build_packages(name, **env):
    """scripts/package.sh into WORK/build-NAME and WORK/dist-NAME, with env added (TT_PKG_...);
    lintian is test_lintian's. Returns the directory of the packages."""
    debs = os.path.join(WORK, "dist" + name)
    env = dict(os.environ, TT_PKG_BUILD=os.path.join(WORK, "build" + name), TT_PKG_DIST=debs,
               TT_PKG_NO_DEPS="1", TT_PKG_NO_LINTIAN="1", **env)
    # Packages of an earlier run must not stand in for ones this run failed to make.
    for old in glob.glob(os.path.join(debs, "tether-*.deb")):
        os.unlink(old)
    r = run(["bash", os.path.join(TOP, "scripts", "package.sh")], timeout=BUILD_TIMEOUT, env=env)
    print(r.stdout)
    if r.returncode != 0 or not glob.glob(os.path.join(debs, "tether-*.deb")):
        raise RuntimeError("scripts/package.sh made no package (exit %d)" % r.returncode)
    return debs


def setUpModule():
    global _tmp, LINTIAN, WORK
    if not VERSION:
        raise RuntimeError("TT_VERSION is not set (run through ctest, or export it)")
    if shutil.which("dpkg-deb") is None:
        raise unittest.SkipTest("dpkg-deb is not installed: not a Debian machine")
    _tmp = tempfile.mkdtemp(prefix="tt-pkg-")
    WORK = os.environ.get("TT_PKG_WORK") or os.path.join(_tmp, "work")
    debs = os.environ.get("TT_PKG_DEBS") or build_packages("")
    for pkg in PACKAGES:
        found = glob.glob(os.path.join(debs, "%s_*.deb" % pkg))
        if len(found) == 1:
            DEBS[pkg] = found[0]
            ROOTS[pkg] = os.path.join(_tmp, pkg)
            r = run(["dpkg-deb", "-x", found[0], ROOTS[pkg]])
            if r.returncode != 0:
                raise RuntimeError("dpkg-deb -x %s: %s" % (found[0], r.stdout))
    if shutil.which("lintian") and DEBS:
        r = run(["lintian", "--tag-display-limit", "0", "--display-info"] + sorted(DEBS.values()), timeout=600)
        LINTIAN = (r.returncode, r.stdout)


def tearDownModule():
    if _tmp:
        shutil.rmtree(_tmp, ignore_errors=True)


def field(pkg, name):
    r = run(["dpkg-deb", "-f", DEBS[pkg], name])
    return r.stdout.strip()


def contents(pkg):
    """path -> (mode string, owner/group) from dpkg-deb -c."""
    r = run(["dpkg-deb", "-c", DEBS[pkg]])
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split(None, 5)
        path = parts[5].split(" -> ")[0]
        out[path[1:] if path.startswith("./") else path] = (parts[0], parts[1])
    return out


def control_file(pkg, name):
    r = run(["dpkg-deb", "-I", DEBS[pkg], name])
    return r.stdout if r.returncode == 0 else None


def unit_root(pkg):
    """The unpacked package as the root systemd-analyze sees, so that ExecStart's /usr/bin/...
    is the packaged program; the targets and slices the units order against come from this
    machine."""
    unit_dir = os.path.join(ROOTS[pkg], UNIT_DIR.lstrip("/"))
    for f in glob.glob(UNIT_DIR + "/*.target") + glob.glob(UNIT_DIR + "/*.slice"):
        dest = os.path.join(unit_dir, os.path.basename(f))
        if not os.path.lexists(dest):
            shutil.copy2(f, dest, follow_symlinks=False)
    return ROOTS[pkg]


def uncomment_examples(text):
    """Every commented setting ('# key = value') made live, so that the examples are checked
    as well as the live lines."""
    return re.sub(r"(?m)^#\s*([a-z_][a-z0-9_.]*\s*=\s*\S.*)$", r"\1", text)


class Packages(unittest.TestCase):
    def test_three_packages_of_this_version(self):
        self.assertEqual(sorted(DEBS), sorted(PACKAGES), "one .deb per package")
        for pkg, deb in DEBS.items():
            self.assertEqual(field(pkg, "Package"), pkg)
            self.assertEqual(field(pkg, "Version"), VERSION)
            self.assertTrue(os.path.basename(deb).startswith("%s_%s_" % (pkg, VERSION)), deb)

    def test_control_fields(self):
        for pkg in PACKAGES:
            with self.subTest(pkg=pkg):
                for name in ("Maintainer", "Section", "Priority", "Architecture", "Description", "Installed-Size"):
                    self.assertTrue(field(pkg, name), "%s has no %s" % (pkg, name))
                desc = field(pkg, "Description").splitlines()
                self.assertLessEqual(len(desc[0]), 80, "the synopsis is one short line")
                self.assertGreater(len(desc), 1, "an extended description")
                depends = field(pkg, "Depends")
                self.assertIn("libc6", depends, "dpkg-shlibdeps ran")
                self.assertIn("libssl3", depends)
        broker = field("tether-broker", "Depends")
        for dep in ("adduser", "init-system-helpers", "libsqlite3-0", "libssh-4", "libuv1"):
            self.assertIn(dep, broker)
        self.assertIn("init-system-helpers", field("tether-agent", "Depends"))
        self.assertNotIn("libsqlite3", field("tether-agent", "Depends"), "the agent keeps no store")
        self.assertNotIn("libssh", field("tether-console", "Depends"))

    def test_files(self):
        for pkg, (progs, units, conffiles) in PACKAGES.items():
            with self.subTest(pkg=pkg):
                files = contents(pkg)
                for prog in progs:
                    mode, owner = files.get("/usr/bin/" + prog, (None, None))
                    self.assertEqual(mode, "-rwxr-xr-x", "/usr/bin/%s" % prog)
                    self.assertEqual(owner, "root/root")
                for unit in units:
                    self.assertEqual(files.get("%s/%s" % (UNIT_DIR, unit), (None,))[0], "-rw-r--r--", unit)
                for conf in conffiles:
                    self.assertEqual(files.get(conf, (None,))[0], "-rw-r--r--", conf)
                for doc in ("copyright", "changelog.gz"):
                    self.assertIn("/usr/share/doc/%s/%s" % (pkg, doc), files)
                for path, (mode, owner) in files.items():
                    self.assertEqual(owner, "root/root", path)
                    if not mode.startswith("d"):
                        self.assertTrue(path.startswith(ALLOWED), "unexpected file %s" % path)
                # Units of another package stay out of this one.
                shipped = {p.rsplit("/", 1)[1] for p in files if p.startswith(UNIT_DIR + "/")}
                self.assertEqual(shipped - {""}, set(units))

    def test_binaries_stripped_and_hardened(self):
        readelf = shutil.which("readelf")
        if not readelf:
            self.skipTest("readelf is not installed")
        for pkg, (progs, _, _) in PACKAGES.items():
            for prog in progs:
                path = os.path.join(ROOTS[pkg], "usr", "bin", prog)
                with self.subTest(prog=prog):
                    sections = run([readelf, "-S", "-W", path]).stdout
                    self.assertNotIn(".symtab", sections, "stripped")
                    self.assertIn("DYN", run([readelf, "-h", path]).stdout, "PIE")
                    dyn = run([readelf, "-d", "-W", path]).stdout
                    self.assertRegex(dyn, r"BIND_NOW|FLAGS.*NOW", "BIND_NOW")
                    self.assertIn("GNU_RELRO", run([readelf, "-l", "-W", path]).stdout)

    def test_man_pages(self):
        """A page per program in its package, compressed as policy wants (gzip -9n: no name,
        no time), named for the program and its section and version, with its options (from
        --help), its files and what to see also, and rendered by man without a warning (as
        lintian renders it; when man or groff is installed)."""
        for pkg, (progs, _, _) in PACKAGES.items():
            files = contents(pkg)
            for prog in progs:
                sec = MAN_SECTIONS[prog]
                path = "/usr/share/man/man%s/%s.%s.gz" % (sec, prog, sec)
                with self.subTest(page=path):
                    self.assertEqual(files.get(path, (None,))[0], "-rw-r--r--", "%s in %s" % (path, pkg))
                    page = os.path.join(ROOTS[pkg], path.lstrip("/"))
                    with open(page, "rb") as f:
                        head = f.read(10)
                    self.assertEqual(head[:3], b"\x1f\x8b\x08", "gzip")
                    self.assertEqual(head[3] & 0x08, 0, "no file name in the gzip header (-n)")
                    self.assertEqual(head[4:8], b"\0\0\0\0", "no time in the gzip header (-n)")
                    self.assertEqual(head[8], 2, "gzip -9")
                    with gzip.open(page, "rt", encoding="utf-8") as f:
                        text = f.read()
                    th = re.search(r'(?m)^\.TH\s+"?([^"\s]+)"?\s+"?(\w+)"?\s+"[^"]*"\s+"([^"]*)"', text)
                    self.assertIsNotNone(th, "a .TH header:\n" + text[:400])
                    self.assertEqual(th.group(1), prog.upper())
                    self.assertEqual(th.group(2), sec)
                    self.assertTrue(th.group(3).startswith("%s %s" % (prog, VERSION)), th.group(3))
                    self.assertTrue(re.search(r"(?m)^\.SH NAME\n%s \\- \S" % re.escape(prog), text),
                                    "NAME: %s \\- what it is (whatis):\n%s" % (prog, text[:400]))
                    for part in (".SH DESCRIPTION", ".SH FILES", ".SH \"SEE ALSO\"", "\\-\\-version"):
                        self.assertIn(part, text)
                    home = os.path.expanduser("~")
                    if len(home) > 1:
                        self.assertNotIn(home + "/", text, "the builder's home")
                    self.assert_renders(page)

    def assert_renders(self, page):
        env = dict(os.environ, LC_ALL="C.UTF-8", MANROFFSEQ="", MANWIDTH="80")
        if shutil.which("man"):
            # lintian's manpage-has-errors-from-man: man's warnings on stderr are the errors.
            argv = ["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", page]
        elif shutil.which("groff"):
            argv = ["sh", "-c", 'zcat "$1" | groff -man -Tutf8 -ww -z', "sh", page]
        else:
            return
        r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           timeout=TOOL_TIMEOUT, env=env)
        self.assertEqual((r.returncode, r.stderr), (0, ""), " ".join(argv))

    def test_conffiles(self):
        for pkg, (_, _, conffiles) in PACKAGES.items():
            with self.subTest(pkg=pkg):
                listed = (control_file(pkg, "conffiles") or "").split()
                self.assertEqual(sorted(listed), sorted(conffiles))
                in_etc = sorted(p for p, (m, _) in contents(pkg).items()
                                if p.startswith("/etc/") and not m.startswith("d"))
                self.assertEqual(in_etc, sorted(conffiles), "every file in /etc is a conffile")

    def test_maintainer_scripts(self):
        for pkg in ("tether-broker", "tether-agent"):
            for script in ("postinst", "prerm", "postrm"):
                with self.subTest(pkg=pkg, script=script):
                    text = control_file(pkg, script)
                    self.assertIsNotNone(text, "%s has a %s" % (pkg, script))
                    self.assertTrue(text.startswith("#!/bin/sh\n"))
                    self.assertIn("set -e", text)
                    r = run(["sh", "-n"], input=text)
                    self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("adduser --system --group --home /var/lib/tether", control_file("tether-broker", "postinst"))
        self.assertIn("rm -rf /var/lib/tether", control_file("tether-broker", "postrm"))
        self.assertIn("rm -rf /var/lib/tether-agent", control_file("tether-agent", "postrm"))
        self.assertIsNone(control_file("tether-console", "postinst"), "the console needs no script")

    def test_changelog_matches_version(self):
        for pkg in PACKAGES:
            with gzip.open(os.path.join(ROOTS[pkg], "usr/share/doc", pkg, "changelog.gz"), "rt") as f:
                first = f.readline()
            self.assertTrue(first.startswith("tether (%s) " % VERSION),
                            "packaging/deb/changelog's top entry is for %s: %r" % (VERSION, first))

    def test_config_files_load(self):
        """Each packaged config file, and each commented example in it made live, is read by
        its program without error (--version stops right after the config is read)."""
        for conf, prog in CONFIG_READERS.items():
            pkg = next(p for p, (progs, _, _) in PACKAGES.items() if prog in progs)
            exe = os.path.join(ROOTS[pkg], "usr", "bin", prog)
            path = os.path.join(ROOTS[pkg], "etc", "tether", conf)
            with open(path) as f:
                text = f.read()
            live = os.path.join(_tmp, "examples-" + conf)
            with open(live, "w") as f:
                f.write(uncomment_examples(text))
            self.assertNotEqual(text, uncomment_examples(text), "%s shows its settings" % conf)
            for p in (path, live):
                with self.subTest(conf=os.path.basename(p)):
                    r = run([exe, "--config", p, "--version"])
                    self.assertEqual(r.returncode, 0, r.stdout)
                    self.assertIn(VERSION, r.stdout)

    def test_units_verify(self):
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            self.skipTest("systemd-analyze is not installed: the units are not verified")
        for pkg, (_, units, _) in PACKAGES.items():
            for unit in units:
                with self.subTest(unit=unit):
                    r = run([analyze, "verify", "--man=no", "--root=" + unit_root(pkg), "%s/%s" % (UNIT_DIR, unit)])
                    # Nothing at all is printed for a unit systemd reads without complaint.
                    self.assertEqual((r.returncode, r.stdout.strip()), (0, ""), r.stdout)

    def test_units_hardening(self):
        """systemd's exposure score of the broker's and the gateway's units stays where the
        hardening put it (1.7 and 2.9 of 10 when written; the agent is not sandboxed on
        purpose, see its unit)."""
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            self.skipTest("systemd-analyze is not installed: the units' hardening is not measured")
        root = unit_root("tether-broker")
        for unit, most in (("tether-broker.service", 2.0), ("tether-sshd.service", 3.2)):
            with self.subTest(unit=unit):
                r = run([analyze, "security", "--offline=yes", "--root=" + root, unit])
                m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
                if m is None and "offline" in r.stdout:
                    self.skipTest("this systemd-analyze cannot judge units offline")
                self.assertIsNotNone(m, r.stdout[-2000:])
                self.assertLessEqual(float(m.group(1)), most, r.stdout[-4000:])

    def test_lintian(self):
        if LINTIAN is None:
            self.skipTest("lintian is not installed: the packages are not checked (scripts/deps.sh installs it)")
        status, out = LINTIAN
        print("lintian:\n" + (out or "(nothing to say)\n"))
        errors = [line for line in out.splitlines() if line.startswith("E:")]
        self.assertEqual(errors, [], "lintian errors")
        self.assertNotIn("no-manual-page", out, "every program has its man page")


class DebianRoot(unittest.TestCase):
    """Installed into a fresh Debian 12 root (mmdebstrap, once, unpacked anew for each test;
    chroot, so root only): the users, directories and enabled units the broker's package sets
    up; the broker started from it as its unit starts it makes and migrates its store; a
    reinstall keeps an edited config file and the store; an upgrade from an older version
    migrates a store of an older schema and keeps what the admin made; a downgrade leaves the
    store alone; purge removes what the packages made and keeps the PKI (the CA key cannot be
    made again)."""

    DEPS = "adduser,init-system-helpers,libuv1,libssl3,libsqlite3-0,libzstd1,libprotobuf-c1,libssh-4,libjansson4"
    # The environment systemd (Debian 12's) gives a unit with User=tether, less the ids of
    # the invocation and the journal.
    UNIT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/var/lib/tether",
                "USER": "tether", "LOGNAME": "tether", "SHELL": "/usr/sbin/nologin"}
    tarball = None
    old_debs = None  # package -> path, of OLD_VERSION

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0 or shutil.which("mmdebstrap") is None or shutil.which("chroot") is None:
            raise unittest.SkipTest("needs root and mmdebstrap (scripts/deps.sh installs it)")
        # The root is fetched while the older broker package builds: one waits on the mirror,
        # the other on the compiler.
        cls.tarball = os.path.join(_tmp, "bookworm.tar")
        strap = subprocess.Popen(["mmdebstrap", "--variant=apt", "--include=" + cls.DEPS, "bookworm", cls.tarball],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            # Only the broker's package: the upgrade is the broker's store's.
            debs = build_packages("-prev", TT_PKG_VERSION=OLD_VERSION, TT_PKG_ONLY="tether-broker")
            cls.old_debs = {"tether-broker": glob.glob(os.path.join(debs, "tether-broker_*.deb"))[0]}
            out, _ = strap.communicate(timeout=900)
        finally:
            if strap.poll() is None:  # mmdebstrap and the apt it runs
                os.killpg(strap.pid, signal.SIGKILL)
                strap.wait()
        if strap.returncode != 0:
            raise RuntimeError("mmdebstrap failed:\n" + out[-3000:])

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="tt-deb12-")
        self.proc = False
        r = run(["tar", "--numeric-owner", "-xpf", self.tarball, "-C", self.root])
        self.assertEqual(r.returncode, 0, r.stdout[-3000:])

    def tearDown(self):
        if getattr(self, "proc", False):
            run(["umount", os.path.join(self.root, "proc")])
        if getattr(self, "root", None):
            shutil.rmtree(self.root, ignore_errors=True)

    def sh(self, script, timeout=TOOL_TIMEOUT):
        return run(["chroot", self.root, "sh", "-c", script], timeout=timeout)

    def ok(self, script, timeout=TOOL_TIMEOUT):
        r = self.sh(script, timeout)
        self.assertEqual(r.returncode, 0, "%s\n%s" % (script, r.stdout[-3000:]))
        return r.stdout

    def path(self, p):
        return os.path.join(self.root, p.lstrip("/"))

    def copy_in(self, deb, name):
        """deb into the root's /tmp as NAME.deb; returns its path in the root."""
        os.makedirs(self.path("/tmp/debs"), exist_ok=True)
        shutil.copy(deb, self.path("/tmp/debs/%s.deb" % name))
        return "/tmp/debs/%s.deb" % name

    def mount_proc(self):
        self.assertEqual(run(["mount", "-t", "proc", "proc", self.path("/proc")]).returncode, 0)
        self.proc = True

    def broker(self, until=r'msg="listening"'):
        """The packaged broker, run as its unit runs it: user and group tether with their
        groups (setpriv, as systemd's User= and Group=), UMask=0027, its config, its
        environment; here on a loopback port of its choosing. Once it logs `until` it is
        stopped as systemd stops it (SIGTERM); with until None it is waited for. Returns
        (exit status, what it logged)."""
        p = subprocess.Popen(["chroot", self.root, "setpriv", "--reuid=tether", "--regid=tether", "--init-groups",
                              "--", "/usr/bin/tether-broker", "--config", "/etc/tether/broker.conf",
                              "--listen", "127.0.0.1:0"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.UNIT_ENV, umask=0o027)
        out, deadline, stopped = b"", time.monotonic() + BROKER_TIMEOUT, False
        try:
            while True:  # until EOF: the broker and its signer gone
                left = deadline - time.monotonic()
                if left <= 0:
                    self.fail("the broker did not %s within %ds:\n%s" % (
                        "exit" if stopped or until is None else "log %r" % until, BROKER_TIMEOUT,
                        out.decode(errors="replace")[-3000:]))
                if not select.select([p.stdout], [], [], left)[0]:
                    continue
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
                if until and not stopped and re.search(until, out.decode(errors="replace")):
                    p.send_signal(signal.SIGTERM)
                    stopped = True
            rc = p.wait(timeout=max(1, deadline - time.monotonic()))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
        return rc, out.decode(errors="replace")

    def store(self):
        """The root's store, opened from outside as an admin's sqlite3 would (the broker stopped)."""
        return sqlite3.connect(self.path("/var/lib/tether/broker.db"))

    def store_query(self, sql):
        db = self.store()
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    def schema(self):
        return self.store_query("PRAGMA user_version")[0][0]

    def digest(self, path):
        with open(self.path(path), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    def pki(self):
        """The PKI by content: no upgrade, downgrade or purge may change it."""
        return {p[len(self.root):]: self.digest(p[len(self.root):])
                for p in glob.glob(self.path("/etc/tether/pki/*"))}

    def kept(self):
        """What no upgrade or downgrade may change: the PKI and erase.key (the key of every
        erasure's released values), by content."""
        return dict(self.pki(), erase_key=self.digest("/var/lib/tether/erase.key"))

    def test_install_start_reinstall_purge(self):
        self.assertEqual(sorted(DEBS), sorted(PACKAGES))
        debs = [self.copy_in(deb, pkg) for pkg, deb in DEBS.items()]
        self.ok("apt-get install -y -q " + " ".join(debs), timeout=600)
        self.assertIn("/var/lib/tether:/usr/sbin/nologin", self.ok("getent passwd tether"))
        self.ok("getent passwd tether-sshd")
        self.assertEqual(self.ok("stat -c '%U %a' /var/lib/tether /etc/tether/pki").split("\n")[:2],
                         ["tether 750", "tether 700"])
        wants = self.ok("ls /etc/systemd/system/multi-user.target.wants").split()
        self.assertIn("tether-broker.service", wants)
        self.assertIn("tether-agent.service", wants)
        self.assertNotIn("tether-sshd.service", wants)  # no SSH port until the admin wants one

        # The broker from the package, as its unit runs it: the store made and migrated.
        self.mount_proc()
        self.ok("runuser -u tether -- tether-certs init --dir /etc/tether/pki")
        rc, out = self.broker()
        self.assertEqual(rc, 0, out)
        self.assertIn('msg="listening"', out)
        self.assertRegex(out, r'msg="store schema migrated" version=\d+')
        self.ok("test -s /var/lib/tether/broker.db && test -s /var/lib/tether/erase.key")

        # A reinstall keeps the admin's edit and the store.
        self.ok("echo '# edited by the admin' >> /etc/tether/broker.conf")
        self.ok("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall -o Dpkg::Options::=--force-confold "
                + self.copy_in(DEBS["tether-broker"], "tether-broker"), timeout=600)
        self.assertIn("# edited by the admin", self.ok("cat /etc/tether/broker.conf"))
        self.ok("test -s /var/lib/tether/broker.db")

        # Purge: the state goes, the PKI and the users stay.
        self.ok("apt-get purge -y -q " + " ".join(PACKAGES), timeout=600)
        self.assertNotEqual(self.sh("test -e /var/lib/tether").returncode, 0)
        self.assertNotEqual(self.sh("test -e /var/lib/tether-agent").returncode, 0)
        self.assertNotEqual(self.sh("test -e /usr/bin/tether-broker").returncode, 0)
        self.ok("test -s /etc/tether/pki/ca.key")

    def test_upgrade_migrates_the_store_and_a_downgrade_leaves_it(self):
        self.assertEqual(run(["dpkg", "--compare-versions", OLD_VERSION, "lt", VERSION]).returncode, 0,
                         "dpkg sees %s -> %s as an upgrade" % (OLD_VERSION, VERSION))
        old = self.copy_in(self.old_debs["tether-broker"], "tether-broker-old")
        new = self.copy_in(DEBS["tether-broker"], "tether-broker-new")
        installed = "dpkg-query -W -f '${Version} ${Status}' tether-broker"
        # dpkg's trace of the maintainer scripts it runs, with their arguments.
        traced = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--debug=2 " \
                 "-o Dpkg::Options::=--force-confold "

        # The older package, its broker run once: a store of the current schema, PKI, erase.key.
        self.ok("apt-get install -y -q " + old, timeout=600)
        self.assertEqual(self.ok(installed), OLD_VERSION + " install ok installed")
        self.mount_proc()
        self.ok("runuser -u tether -- tether-certs init --dir /etc/tether/pki")
        rc, out = self.broker()
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r'msg="listening" addr=\S+ version=%s ' % re.escape(OLD_VERSION))
        latest = self.schema()
        self.assertGreater(latest, store_rewind.SCHEMA, "a store the rewind can take back")

        # Records to keep: an open ticket, and a closed one whose closing time migration 20
        # takes from its "closed" event (4000), not from its last change (5000).
        db = self.store()
        db.executescript(
            "INSERT INTO tickets(id, device, summary, priority, state, created_ms, updated_ms)"
            "  VALUES(901, 'laptop-7', 'printer offline', 1, 1, 1000, 1000),"
            "        (902, 'laptop-7', 'VPN drops', 2, 3, 2000, 5000);"
            "INSERT INTO ticket_events(ticket, ts_ms, actor, kind, text) VALUES(902, 4000, 'tech', 'closed', 'fixed');")
        db.close()
        # The admin's doing: an edited config file; the SSH gateway enabled and the broker
        # disabled, by the links systemctl would make and remove (the root runs no systemd).
        self.ok("echo '# edited by the admin' >> /etc/tether/broker.conf")
        self.ok("cd /etc/systemd/system/multi-user.target.wants && rm tether-broker.service"
                " && ln -s /lib/systemd/system/tether-sshd.service .")
        user, kept = self.ok("getent passwd tether"), self.kept()

        # The store as a broker of schema 15 left it, its audit chain in format 1.
        entries = store_rewind.rewind(self.path("/var/lib/tether"), self.path("/etc/tether/pki/broker.key"),
                                      self.path("/etc/tether/pki/broker.pem"))
        self.assertEqual(self.schema(), store_rewind.SCHEMA)
        self.assertEqual(glob.glob(self.path("/var/lib/tether/broker.db-*")), [], "no WAL of root's left behind")

        # The upgrade: dpkg runs the old prerm and the new postinst as an upgrade's.
        out = self.ok(traced + new, timeout=600)
        self.assertIn("Unpacking tether-broker (%s) over (%s)" % (VERSION, OLD_VERSION), out)
        self.assertRegex(out, r"tether-broker\.prerm\b.* upgrade %s\b" % re.escape(VERSION))
        self.assertRegex(out, r"tether-broker\.postinst\b.* configure %s\b" % re.escape(OLD_VERSION))
        self.assertEqual(self.ok(installed), VERSION + " install ok installed")
        self.assertIn("# edited by the admin", self.ok("cat /etc/tether/broker.conf"))
        wants = self.ok("ls /etc/systemd/system/multi-user.target.wants").split()
        self.assertNotIn("tether-broker.service", wants, "the admin's choice stands")
        self.assertIn("tether-sshd.service", wants, "the admin's choice stands")
        self.assertEqual(self.ok("getent passwd tether"), user)

        # The new broker, started as the unit restarts it after an upgrade: every step from 15
        # run, the chain re-hashed once, the records there.
        rc, out = self.broker()
        self.assertEqual(rc, 0, out)
        steps = [int(v) for v in re.findall(r'msg="store schema migrated" version=(\d+)', out)]
        self.assertEqual(steps, list(range(store_rewind.SCHEMA + 1, latest + 1)), out)
        self.assertRegex(out, r'msg="audit chain re-hashed in format 2" entries=%d format1=%d ' % (entries, entries))
        self.assertRegex(out, r'msg="listening" addr=\S+ version=%s ' % re.escape(VERSION))
        self.assertEqual(self.schema(), latest)
        self.assertEqual(self.store_query("SELECT id, summary, state, closed_ms FROM tickets WHERE id > 900 ORDER BY id"),
                         [(901, "printer offline", 1, 0), (902, "VPN drops", 3, 4000)])
        self.assertEqual(self.kept(), kept, "erase.key and the PKI as they were")

        # A downgrade (dpkg -i of the older package): a store of the schema that broker knows
        # is left as it is and served.
        out = self.ok("dpkg -i --force-confold " + old, timeout=600)
        self.assertIn("downgrading tether-broker from %s to %s" % (VERSION, OLD_VERSION), out)
        self.assertEqual(self.ok(installed), OLD_VERSION + " install ok installed")
        rc, out = self.broker()
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r'msg="listening" addr=\S+ version=%s ' % re.escape(OLD_VERSION))
        self.assertNotIn("store schema migrated", out)
        self.assertEqual(self.schema(), latest)
        self.assertEqual(len(self.store_query("SELECT id FROM tickets WHERE id > 900")), 2)
        # A store a newer broker left (one schema further): refused before anything is
        # written, with the reason.
        db = self.store()
        db.execute("PRAGMA user_version = %d" % (latest + 1))
        db.close()
        before = self.digest("/var/lib/tether/broker.db")
        rc, out = self.broker(until=None)
        self.assertEqual(rc, 3, out)  # the unit's RestartPreventExitStatus: no restart loop
        self.assertIn("store schema %d is newer than this broker (%d)" % (latest + 1, latest), out)
        self.assertNotIn('msg="listening"', out)
        self.assertEqual(self.digest("/var/lib/tether/broker.db"), before, "the newer store untouched")
        self.assertEqual(glob.glob(self.path("/var/lib/tether/broker.db-*")), [])
        self.assertEqual(self.kept(), kept)

        # Purge, as after an install: the state goes, the PKI stays as it was.
        self.ok("apt-get purge -y -q tether-broker", timeout=600)
        self.assertNotEqual(self.sh("test -e /var/lib/tether").returncode, 0)
        self.assertNotEqual(self.sh("test -e /usr/bin/tether-broker").returncode, 0)
        self.assertEqual(self.pki(), {k: v for k, v in kept.items() if k != "erase_key"})


if __name__ == "__main__":
    unittest.main()
