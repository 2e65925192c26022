"""Adversarial review of file transfer (issue 9): what a local user of either machine, or a
hostile peer, can do with the files a transfer makes. Each test is one attack against the
real console, broker and agent on 127.0.0.1:

- a file received keeps the sender's setuid/setgid bits (fchmod bypasses the umask): a
  device's setuid binary pulled becomes a setuid-technician one on the technician's machine;
- a local user of the device who plants ".NAME.tether-part" beside a target (a file of their
  own in a sticky directory like /tmp, or a hard link) gets the technician's data written
  into their file, or a file outside every root truncated and overwritten;
- a file or directory transferred under a name a transfer keeps its partial files under
  (".x.tether-part", "x.tether-part.state") is taken for another transfer's partial file:
  a later transfer of x truncates it, or renames it into place as x;
- a local user of the technician's machine who can write where a pull -r puts its tree (a
  shared 0777 directory) puts a symbolic link where a directory of the tree goes (or swaps
  one in after the console made it): the files must not be written through it;
- what a transfer makes takes the sender's mode less the receiver's umask, as scp and
  sftp-server do: a 0777 directory pushed from a laptop is not world-writable on a device
  whose agent runs under umask 027 (its local users could plant files in it).

Run by ctest as `integration.files_planted` (TT_BIN_DIR names the build directory)."""
import hashlib
import os
import stat
import unittest

from harness import TetherTestCase, Pki
from test_session import SessionWorld

NOBODY = 65534


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class FilesPlantedTest(SessionWorld, TetherTestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("agent", "dev1")):
            cls.pki.issue(role, name)

    def files_world(self):
        self.root = os.path.join(self.h.dir, "root")
        self.local = os.path.join(self.h.dir, "local")
        for d in (self.root, self.local):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.root, 0o1777)  # a shared directory like /tmp (a default root)
        self.world(policy="unattended", agent_extra=["--files-roots", self.root])
        self.tid = self.new_ticket()

    def files(self, args, timeout=120):
        return self.tech(args, timeout=timeout)

    def test_pull_does_not_make_setuid_files(self):
        """A setuid file on the device, pulled, must not be setuid on the technician's
        machine (nor setgid): any local user there could run it as the technician."""
        self.files_world()
        src = os.path.join(self.root, "tool")
        with open(src, "wb") as f:
            f.write(b"#!/bin/sh\necho hi\n")
        os.chmod(src, 0o6755)
        back = os.path.join(self.local, "back")
        os.makedirs(back)
        r = self.files(["pull", "dev1", "--ticket", self.tid, src, back + "/"])
        self.assertEqual(r.rc, 0, r)
        mode = stat.S_IMODE(os.stat(os.path.join(back, "tool")).st_mode)
        self.assertEqual(mode & 0o7000, 0, "pulled file is mode %o" % mode)

    def test_push_does_not_make_setuid_files(self):
        """Likewise a push: a setuid file appears on the device owned by shell.user."""
        self.files_world()
        src = os.path.join(self.local, "tool")
        with open(src, "wb") as f:
            f.write(b"#!/bin/sh\necho hi\n")
        os.chmod(src, 0o4755)
        dst = os.path.join(self.root, "tool")
        r = self.files(["push", "dev1", "--ticket", self.tid, src, dst])
        self.assertEqual(r.rc, 0, r)
        mode = stat.S_IMODE(os.stat(dst).st_mode)
        self.assertEqual(mode & 0o7000, 0, "pushed file is mode %o" % mode)

    def test_planted_part_file_of_another_user(self):
        """Another local user plants .NAME.tether-part (theirs, 0666) beside the target in a
        sticky shared directory: the technician's data must not go into their file, and the
        file put in place must not be theirs (they could change it after the audit's
        sha256 was taken)."""
        self.files_world()
        planted = os.path.join(self.root, ".report.txt.tether-part")
        with open(planted, "wb") as f:
            f.write(b"")
        os.chown(planted, NOBODY, NOBODY)
        os.chmod(planted, 0o666)
        src = os.path.join(self.local, "report.txt")
        payload = b"confidential payroll data\n" * 100
        with open(src, "wb") as f:
            f.write(payload)
        dst = os.path.join(self.root, "report.txt")
        r = self.files(["push", "dev1", "--ticket", self.tid, src, dst])
        leaked = os.path.exists(planted) and open(planted, "rb").read() == payload
        self.assertFalse(leaked, "the planted file received the data")
        if os.path.exists(dst):
            self.assertNotEqual(os.stat(dst).st_uid, NOBODY, "the target belongs to the user who planted it")
        self.assertIn(r.rc, (0, 1), r)

    def test_planted_part_hard_link_outside_root(self):
        """.NAME.tether-part planted as a hard link to a file outside every root (who can
        link it depends on fs.protected_hardlinks): the agent must not truncate or write
        that file."""
        self.files_world()
        outside = os.path.join(self.h.dir, "outside")
        os.makedirs(outside)
        victim = os.path.join(outside, "victim")
        with open(victim, "wb") as f:
            f.write(b"precious\n")
        os.link(victim, os.path.join(self.root, ".x.tether-part"))
        src = os.path.join(self.local, "x")
        with open(src, "wb") as f:
            f.write(b"overwritten by a push\n")
        r = self.files(["push", "dev1", "--ticket", self.tid, src, os.path.join(self.root, "x")])
        with open(victim, "rb") as f:
            self.assertEqual(f.read(), b"precious\n", "a file outside the roots was written (%r)" % (r,))

    def test_planted_state_hard_link_outside_root(self):
        """The same with .NAME.tether-part.state: it is truncated and written to as well."""
        self.files_world()
        outside = os.path.join(self.h.dir, "outside")
        os.makedirs(outside)
        victim = os.path.join(outside, "victim")
        with open(victim, "wb") as f:
            f.write(b"precious\n")
        os.link(victim, os.path.join(self.root, ".y.tether-part.state"))
        src = os.path.join(self.local, "y")
        with open(src, "wb") as f:
            f.write(b"pushed\n")
        r = self.files(["push", "dev1", "--ticket", self.tid, src, os.path.join(self.root, "y")])
        with open(victim, "rb") as f:
            self.assertEqual(f.read(), b"precious\n", "a file outside the roots was written (%r)" % (r,))

    PART_NAMES = (".x.tether-part", "y.tether-part.state", "d.tether-part")

    def assert_part_names_refused(self, r, dest):
        """r refused each of PART_NAMES with a line of its own and nothing of them is in
        dest; ok.txt (the file beside them) arrived."""
        self.assertEqual(r.rc, 1, r)
        with open(os.path.join(dest, "ok.txt"), "rb") as f:
            self.assertEqual(f.read(), b"fine\n")
        for name in self.PART_NAMES:
            self.assertFalse(os.path.lexists(os.path.join(dest, name)), (name, r))
            lines = [ln for ln in r.err.splitlines() if name in ln]
            self.assertTrue(lines, (name, r))
            self.assertIn("refused", lines[0], (name, r))
            self.assertIn("partial", lines[0], (name, r))

    def part_tree(self, base):
        """base/tree holding ok.txt and one file or directory named after each of PART_NAMES."""
        tree = os.path.join(base, "tree")
        os.makedirs(os.path.join(tree, "d.tether-part"))
        with open(os.path.join(tree, "d.tether-part", "in"), "wb") as f:
            f.write(b"inside\n")
        for name in ("ok.txt",) + self.PART_NAMES[:2]:
            with open(os.path.join(tree, name), "wb") as f:
                f.write(b"fine\n" if name == "ok.txt" else b"not a partial file\n")
        return tree

    def test_push_refuses_part_names(self):
        """The agent refuses to make a file or directory under a name ending in .tether-part
        or .tether-part.state (a file, several files, a tree): each one fails with a line of
        its own, the rest are done, exit 1."""
        self.files_world()
        tree = self.part_tree(self.local)
        srcs = [os.path.join(tree, n) for n in ("ok.txt",) + self.PART_NAMES[:2]]
        dest = os.path.join(self.root, "flat")
        os.makedirs(dest)
        r = self.files(["push", "dev1", "--ticket", self.tid] + srcs + [dest + "/"])
        self.assertEqual(r.rc, 1, r)
        self.assertTrue(os.path.exists(os.path.join(dest, "ok.txt")), r)
        for name in self.PART_NAMES[:2]:
            self.assertFalse(os.path.lexists(os.path.join(dest, name)), (name, r))
        r = self.files(["push", "dev1", "--ticket", self.tid, "-r", tree + "/", os.path.join(self.root, "pushed")])
        self.assert_part_names_refused(r, os.path.join(self.root, "pushed"))
        self.assertIn("1 more not transferred", r.err)  # d.tether-part/in

    def test_pull_refuses_part_names(self):
        """The console refuses the same names on a pull, of one file and of a tree."""
        self.files_world()
        tree = self.part_tree(self.root)
        dest = os.path.join(self.local, "flat")
        os.makedirs(dest)
        r = self.files(["pull", "dev1", "--ticket", self.tid, os.path.join(tree, ".x.tether-part"),
                        os.path.join(tree, "ok.txt"), dest + "/"])
        self.assertEqual(r.rc, 1, r)
        self.assertTrue(os.path.exists(os.path.join(dest, "ok.txt")), r)
        self.assertFalse(os.path.lexists(os.path.join(dest, ".x.tether-part")), r)
        self.assertIn("refused", r.err)
        r = self.files(["pull", "dev1", "--ticket", self.tid, "-r", tree + "/", os.path.join(self.local, "pulled")])
        self.assert_part_names_refused(r, os.path.join(self.local, "pulled"))
        self.assertIn("1 more not transferred", r.err)

    def test_part_name_does_not_clobber_a_transfer(self):
        """Why: a file pushed as .x.tether-part, then x pushed beside it, used to take that
        file for x's partial copy and truncate it."""
        self.files_world()
        one = os.path.join(self.local, ".x.tether-part")
        with open(one, "wb") as f:
            f.write(b"a file of its own\n")
        two = os.path.join(self.local, "x")
        with open(two, "wb") as f:
            f.write(b"x\n")
        r1 = self.files(["push", "dev1", "--ticket", self.tid, one, self.root + "/"])
        r2 = self.files(["push", "dev1", "--ticket", self.tid, two, self.root + "/"])
        self.assertEqual(r2.rc, 0, r2)
        planted = os.path.join(self.root, ".x.tether-part")
        if r1.rc == 0:
            self.assertTrue(os.path.exists(planted), "the file pushed as .x.tether-part became x")
            with open(planted, "rb") as f:
                self.assertEqual(f.read(), b"a file of its own\n", "it was taken as x's partial copy")
        else:
            self.assertEqual(r1.rc, 1, r1)
            self.assertFalse(os.path.lexists(planted), r1)
    def test_pull_tree_not_through_a_planted_link(self):
        """pull -r into a directory others can write (0777, not sticky: no protected_symlinks
        there): a symbolic link of another user where a directory of the tree goes, below
        the tree's root or as the root the pull names itself, is refused with a clear line;
        nothing is written through it, the other files are done, exit 1. A link the user
        names as the target is theirs and is followed."""
        self.files_world()
        tree = os.path.join(self.root, "tree")
        os.makedirs(os.path.join(tree, "sub"))
        for rel, data in (("top.txt", b"top\n"), ("sub/f.txt", b"below\n")):
            with open(os.path.join(tree, rel), "wb") as f:
                f.write(data)
        outside = os.path.join(self.h.dir, "outside")
        os.makedirs(outside)

        def planted_link(at):
            os.symlink(outside, at)
            os.lchown(at, NOBODY, NOBODY)

        shared = os.path.join(self.local, "shared")
        os.makedirs(os.path.join(shared, "tree"))
        os.chmod(shared, 0o777)
        os.chmod(os.path.join(shared, "tree"), 0o777)
        planted_link(os.path.join(shared, "tree", "sub"))
        r = self.files(["pull", "dev1", "--ticket", self.tid, "-r", tree, shared + "/"])
        self.assertEqual(os.listdir(outside), [], r)
        self.assertEqual(r.rc, 1, r)
        with open(os.path.join(shared, "tree", "top.txt"), "rb") as f:
            self.assertEqual(f.read(), b"top\n")
        self.assertIn("symbolic link", r.err)
        self.assertTrue(os.path.islink(os.path.join(shared, "tree", "sub")))

        shared2 = os.path.join(self.local, "shared2")
        os.makedirs(shared2)
        os.chmod(shared2, 0o777)
        planted_link(os.path.join(shared2, "tree"))
        r = self.files(["pull", "dev1", "--ticket", self.tid, "-r", tree, shared2 + "/"])
        self.assertEqual(os.listdir(outside), [], r)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("symbolic link", r.err)

        mine = os.path.join(self.local, "mine")
        os.makedirs(mine)
        os.symlink(mine, os.path.join(self.local, "link-to-mine"))
        r = self.files(["pull", "dev1", "--ticket", self.tid, "-r", tree + "/", os.path.join(self.local, "link-to-mine")])
        self.assertEqual(r.rc, 0, r)
        with open(os.path.join(mine, "sub", "f.txt"), "rb") as f:
            self.assertEqual(f.read(), b"below\n")

    def test_modes_less_the_umask(self):
        """Files and directories made by push -r and pull -r get the sender's permission bits
        less the receiving program's umask (the agent's, the console's), a directory always
        0700 for its owner (it must be filled); the same on both sides."""
        old = os.umask(0o027)
        self.addCleanup(os.umask, old)
        self.files_world()  # the agent and every console run under umask 027
        tree = os.path.join(self.local, "tree")
        os.makedirs(os.path.join(tree, "open"))
        os.makedirs(os.path.join(tree, "ro"))
        for rel, mode in (("open/w.txt", 0o666), ("run.sh", 0o755), ("ro/in.txt", 0o644)):
            with open(os.path.join(tree, rel), "wb") as f:
                f.write(rel.encode())
            os.chmod(os.path.join(tree, rel), mode)
        os.chmod(os.path.join(tree, "open"), 0o777)
        os.chmod(os.path.join(tree, "ro"), 0o555)
        want = {"open": "750", "ro": "750", "open/w.txt": "640", "run.sh": "750", "ro/in.txt": "640"}

        def modes(base):
            return {rel: "%o" % stat.S_IMODE(os.stat(os.path.join(base, rel)).st_mode) for rel in want}

        dev = os.path.join(self.root, "tree")
        r = self.files(["push", "dev1", "--ticket", self.tid, "-r", tree + "/", dev])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(modes(dev), want)
        # Back, from the device's copy made 0777 and 0666 again.
        os.chmod(os.path.join(dev, "open"), 0o777)
        os.chmod(os.path.join(dev, "open", "w.txt"), 0o666)
        back = os.path.join(self.local, "back")
        r = self.files(["pull", "dev1", "--ticket", self.tid, "-r", dev + "/", back])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(modes(back), want)


if __name__ == "__main__":
    unittest.main()
