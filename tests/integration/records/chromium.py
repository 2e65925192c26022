"""Headless Chromium driver for report tests: loads a local HTML file and evaluates JavaScript.

Talks the DevTools protocol over --remote-debugging-pipe (Chromium reads commands on fd 3 and
writes replies on fd 4, each a JSON message ended by a NUL byte), so no port and no websocket
library are needed. Every read is bounded by a deadline, the browser never reaches the network
(host resolver maps everything to NOTFOUND) and __exit__ always kills the whole process group
and removes the temporary profile. Standard library only.
"""

import base64
import fcntl
import functools
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         "--disable-background-networking", "--disable-sync", "--metrics-recording-only",
         "--mute-audio", "--disable-dev-shm-usage",
         "--host-resolver-rules=MAP * ~NOTFOUND"]


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """True when /usr/bin/chromium exists and answers --version."""
    if not os.access(CHROMIUM, os.X_OK):
        return False
    try:
        return subprocess.run([CHROMIUM, "--version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


class Chromium:
    def __init__(self, timeout=60.0):
        self.timeout = timeout
        self._proc = None
        self._pending = []      # messages read but not yet consumed by a _wait
        self._buf = b""
        self._next_id = 0
        self._errors = []
        self._urls = {}         # Network requestId -> URL, to name failed requests

    def __enter__(self) -> "Chromium":
        self._dir = tempfile.mkdtemp(prefix="tt-chromium-")
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self):
        cmd_r, self._cmd_w = os.pipe()    # we write commands, chromium reads them on fd 3
        self._rep_r, rep_w = os.pipe()    # chromium writes replies on fd 4, we read them
        # The child dup2()s its ends onto 3 and 4. Copies at fds >= 10 cannot be clobbered by
        # the first dup2, and keeping the originals open until after the fork means fds 3 and 4
        # are taken in the parent, so subprocess's own error pipe cannot sit there either.
        hi_r, hi_w = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(rep_w, fcntl.F_DUPFD, 10)

        def child_fds():
            os.dup2(hi_r, 3)    # dup2 clears close-on-exec, so these survive exec
            os.dup2(hi_w, 4)

        self._stderr = open(os.path.join(self._dir, "stderr.log"), "wb")
        profile = os.path.join(self._dir, "profile")
        try:
            self._proc = subprocess.Popen(
                [CHROMIUM, *FLAGS, "--user-data-dir=" + profile, "about:blank"],
                env=dict(os.environ, XDG_CONFIG_HOME=self._dir, XDG_CACHE_HOME=self._dir),
                stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
                close_fds=False,            # our fds are non-inheritable anyway (PEP 446)
                preexec_fn=child_fds,
                start_new_session=True)     # own process group: zygote/renderers die with it
        except BaseException:
            for fd in (self._cmd_w, self._rep_r):
                os.close(fd)
            self._stderr.close()
            raise
        finally:
            for fd in (cmd_r, rep_w, hi_r, hi_w):
                os.close(fd)

    def __exit__(self, *exc):
        if self._proc is not None:
            # Crashpad handlers setsid() out of our process group, so also take every process
            # whose command line names our temp dir (--user-data-dir, crashpad --database=).
            pids = self._ours() | {self._proc.pid}
            for kill, pid in [(os.killpg, self._proc.pid)] + [(os.kill, p) for p in pids]:
                try:
                    kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._proc.wait()
            # Orphans are re-parented to init, which may reap them a second later; wait (bounded)
            # so callers see no chromium process, not even a zombie, once the block is left.
            until = time.monotonic() + 5
            while time.monotonic() < until and any(os.path.exists(f"/proc/{p}") for p in pids):
                time.sleep(0.05)
            self._proc = None
            for fd in (self._cmd_w, self._rep_r):
                os.close(fd)
            self._stderr.close()
        shutil.rmtree(self._dir, ignore_errors=True)
        return False

    def _ours(self):
        """PIDs of live processes whose command line mentions our temp dir."""
        pids = set()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if self._dir.encode() in f.read():
                        pids.add(int(pid))
            except OSError:     # exited meanwhile
                pass
        return pids

    # --- protocol --------------------------------------------------------------------------

    def _fail(self, what, exc=RuntimeError):
        self._stderr.flush()
        with open(self._stderr.name, "rb") as f:
            tail = f.read()[-3000:].decode(errors="replace")
        return exc(f"chromium: {what}\n--- chromium stderr (tail) ---\n{tail}")

    def _send(self, method, params=None, session=None):
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        try:
            while data:     # commands are small; the pipe buffer absorbs them
                data = data[os.write(self._cmd_w, data):]
        except BrokenPipeError:
            raise self._fail(f"pipe closed while sending {method}") from None
        return self._next_id

    def _wait(self, match, deadline, what):
        """Return (and consume) the first message for which match(msg) is true."""
        while True:
            for i, msg in enumerate(self._pending):
                if match(msg):
                    return self._pending.pop(i)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._rep_r], [], [], left)[0]:
                raise self._fail(f"timed out waiting for {what}", TimeoutError)
            chunk = os.read(self._rep_r, 1 << 20)
            if not chunk:
                raise self._fail(f"browser exited while waiting for {what}")
            *msgs, self._buf = (self._buf + chunk).split(b"\0")
            for raw in msgs:
                msg = json.loads(raw)
                self._note(msg)
                self._pending.append(msg)

    def _note(self, msg):
        """Record console errors, uncaught exceptions and failed loads seen in any tab."""
        m, p = msg.get("method"), msg.get("params", {})
        if m == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self._errors.append("exception: " + d.get("exception", {}).get("description", d["text"]))
        elif m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            self._errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                         for a in p["args"]))
        elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
            self._errors.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}".strip())
        elif m == "Network.requestWillBeSent":
            self._urls[p["requestId"]] = p["request"]["url"]
        elif m == "Network.loadingFailed":
            self._errors.append(f"network: {p['errorText']} {self._urls.get(p['requestId'], '?')}")

    def _call(self, method, params, session, deadline):
        i = self._send(method, params, session)
        reply = self._wait(lambda m: m.get("id") == i, deadline, method)
        if "error" in reply:
            raise self._fail(f"{method} failed: {reply['error']}")
        return reply["result"]

    def _with_page(self, html_path, width, height, action):
        """Open html_path in a fresh tab, wait for its load event, run action(call), close the tab."""
        deadline = time.monotonic() + self.timeout
        target = self._call("Target.createTarget", {"url": "about:blank"}, None, deadline)["targetId"]
        try:
            s = self._call("Target.attachToTarget", {"targetId": target, "flatten": True},
                           None, deadline)["sessionId"]
            call = lambda method, params=None: self._call(method, params, s, deadline)  # noqa: E731
            for domain in ("Page", "Runtime", "Log", "Network"):
                call(domain + ".enable")
            call("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
            nav = call("Page.navigate", {"url": "file://" + os.path.abspath(html_path)})
            if nav.get("errorText"):
                raise self._fail(f"loading {html_path}: {nav['errorText']}")
            self._wait(lambda m: m.get("method") == "Page.loadEventFired" and m.get("sessionId") == s,
                       deadline, "Page.loadEventFired")
            return action(call)
        finally:
            try:    # best effort: a failure here must not hide the original error
                self._call("Target.closeTarget", {"targetId": target}, None, time.monotonic() + 5)
            except (RuntimeError, TimeoutError):
                pass
            self._pending = []      # only stale events and late replies are left

    # --- API -------------------------------------------------------------------------------

    def evaluate(self, html_path: str, expression: str, width=1200, height=900):
        """Load html_path, evaluate expression in it and return its JSON-serialisable value."""
        def run(call):
            r = call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                          "awaitPromise": True})
            if "exceptionDetails" in r:
                d = r["exceptionDetails"]
                raise RuntimeError("evaluate: " + d.get("exception", {}).get("description", d["text"]))
            return r["result"].get("value")     # undefined has no value -> None
        return self._with_page(html_path, width, height, run)

    def screenshot(self, html_path: str, png_path: str, width=1200, height=900) -> None:
        """Load html_path in a width x height viewport and write a PNG of it to png_path."""
        data = self._with_page(html_path, width, height,
                               lambda call: call("Page.captureScreenshot", {"format": "png"})["data"])
        with open(png_path, "wb") as f:
            f.write(base64.b64decode(data))

    def console_errors(self) -> list:
        """Console errors, uncaught exceptions and failed requests seen so far (should be none)."""
        return list(self._errors)


if __name__ == "__main__":
    start = time.monotonic()
    if not available():
        raise SystemExit(f"{CHROMIUM} is not available")
    with tempfile.TemporaryDirectory() as tmp:
        page = os.path.join(tmp, "page.html")
        with open(page, "w") as f:
            f.write('<!doctype html><html><body><svg width=200 height=100>'
                    '<rect class="bar" x=10 y=10 width=50 height=80 fill="#36c"/></svg></body></html>')
        with Chromium(timeout=30) as c:
            heights = c.evaluate(page, "Array.from(document.querySelectorAll('svg rect.bar'))"
                                       ".map(r => r.getBBox().height)")
            width = c.evaluate(page, "document.querySelector('svg').getBoundingClientRect().width")
            png = os.path.join(tmp, "page.png")
            c.screenshot(page, png)
            with open(png, "rb") as f:
                sig_ok = f.read(8) == b"\x89PNG\r\n\x1a\n"
            print("bar heights:", heights, "| svg width:", width, "| png signature ok:", sig_ok,
                  "| console errors:", c.console_errors())
            assert heights == [80] and width == 200 and sig_ok and not c.console_errors()
    print(f"ok in {time.monotonic() - start:.2f}s")
