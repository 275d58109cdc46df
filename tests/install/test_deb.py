#!/usr/bin/python3
"""The .deb: `cpack -G DEB` builds it, `dpkg -i` installs it, then
`nbdkit thinsim` (by name), /usr/bin/thinsim, a short real run, the man
pages and the installed fs-test harness work; `dpkg -r` removes every file
again. The package is removed even when a check fails.

Skipped (exit 77) where it cannot run: not root, no dpkg, or thinsim
already installed on this machine (as a package or as loose files in
/usr), which this test must not replace or remove."""

import glob
import os
import re
import sys
import shutil
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from install_lib import (BUILD, CPACK, FS_TEST_DIR, PLUGIN_FILE, PLUGINDIR,  # noqa: E402
                         SKIP, Server, check, exit_status, fake_python, run,
                         write_read)

PACKAGE = "thinsim"
# dpkg waits for no lock; another apt or dpkg may hold it for a while.
LOCK_WAIT = 60


def nbdkit_plugindir():
    r = run(["nbdkit", "--dump-config"])
    m = re.search(r"^plugindir=(.*)$", r.stdout, re.M)
    return m.group(1) if m else None


def why_not():
    """The reason this machine cannot run the test, or None."""
    if os.geteuid() != 0:
        return "needs root (it installs and removes the thinsim package with dpkg)"
    for tool in ("dpkg", "dpkg-deb", "dpkg-query"):
        if not shutil.which(tool):
            return "%s is not installed (not a Debian system?)" % tool
    r = run(["dpkg-query", "-W", "-f=${Status}", PACKAGE])
    if r.returncode == 0 and "not-installed" not in r.stdout and r.stdout.strip():
        return ("the %s package is already installed (%s); this test will not replace or "
                "remove it: dpkg -r %s first to run it" % (PACKAGE, r.stdout.strip(), PACKAGE))
    plugindir = nbdkit_plugindir()
    for path in ("/usr/bin/thinsim", os.path.join(plugindir or "/nonexistent", PLUGIN_FILE),
                 "/usr/share/thinsim"):
        if os.path.exists(path):
            return ("%s exists (a thinsim installed without dpkg?); this test will not "
                    "overwrite it" % path)
    return None


def dpkg(args):
    """dpkg ARGS, retried while another process holds dpkg's lock."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        r = run(["dpkg"] + args, timeout=120)
        if r.returncode == 0 or "lock" not in r.stderr or time.monotonic() > deadline:
            return r
        time.sleep(2)


def check_package(deb):
    fields = {f: run(["dpkg-deb", "-f", deb, f]).stdout.strip()
              for f in ("Package", "Depends", "Maintainer", "Description")}
    print("     %s: %d bytes; Depends: %s" % (os.path.basename(deb), os.path.getsize(deb),
                                               fields["Depends"]))
    check(fields["Package"] == PACKAGE, "package name %s" % fields["Package"])
    check(re.search(r"(^|, )nbdkit\b", fields["Depends"]) is not None and
          "python3" in fields["Depends"], "Depends lists nbdkit and python3")
    check(bool(fields["Maintainer"]) and bool(fields["Description"]),
          "Maintainer and Description are set")
    listing = run(["dpkg-deb", "-c", deb]).stdout
    check(all(p in listing for p in ("./usr/bin/thinsim", PLUGIN_FILE, "man1/thinsim.1",
                                     "man1/nbdkit-thinsim-plugin.1", "completions/thinsim",
                                     "fs_test/__main__.py")),
          "the package holds the CLI, plugin, man pages, completion and harness")


def check_installed(tmp, plugindir):
    r = run(["nbdkit", "thinsim", "--help"])
    check(r.returncode == 0 and "pool=DIR" in r.stdout,
          "nbdkit thinsim --help finds the plugin by name (exit %d) %s" % (
              r.returncode, r.stderr.strip()[-300:]))
    r = run(["thinsim", "--help"], env={"PATH": "/usr/bin:/bin"})
    check(r.returncode == 0 and "snapshot" in r.stdout, "thinsim --help (exit %d)" % r.returncode)
    r = run(["man", "-w", "thinsim"]) if shutil.which("man") else None
    if r is not None:
        check(r.returncode == 0 and r.stdout.startswith("/usr/share/man/man1/thinsim.1"),
              "man -w thinsim: %s" % r.stdout.strip())
        r = run(["man", "-w", "nbdkit-thinsim-plugin"])
        check(r.returncode == 0, "man -w nbdkit-thinsim-plugin: %s" % r.stdout.strip())
    r = run(["/usr/bin/thinsim", "fs-test", "--list"])
    check(r.returncode == 0 and "two-tenants" in r.stdout,
          "thinsim fs-test --list runs /usr/%s/fs_test (exit %d) %s" % (
              FS_TEST_DIR, r.returncode, r.stderr.strip()[-300:]))
    fake = fake_python(tmp)
    r = run(["/usr/bin/thinsim", "fs-test", "--list"], env={"THINSIM_PYTHON": fake})
    check("PYTHONPATH=/usr/%s" % FS_TEST_DIR in r.stdout and
          "PLUGIN=%s" % os.path.join(plugindir, PLUGIN_FILE) in r.stdout,
          "fs-test uses the packaged harness and plugin: %s" % r.stdout.strip().replace("\n", "; "))

    # A short real run: `nbdkit -U sock thinsim size=16M volume=v:16M`.
    server = Server(os.path.join(tmp, "srv"), "thinsim", ["size=16M", "volume=v:16M"])
    os.mkdir(server.tmp)
    server.start()
    try:
        ok, err = write_read(server.sock, "v")
        check(ok, "write and read back through nbdkit thinsim %s" % err)
        r = run(["/usr/bin/thinsim", "--socket", server.ctl, "ls"])
        check(r.returncode == 0 and re.search(r"^v\s", r.stdout, re.M) is not None,
              "thinsim --socket ... ls shows v (exit %d)" % r.returncode)
    finally:
        server.stop()


def main():
    reason = why_not()
    if reason:
        print("SKIP: " + reason)
        return SKIP
    plugindir = nbdkit_plugindir()
    check(plugindir == "/usr/" + PLUGINDIR,
          "the package's plugin directory /usr/%s is nbdkit's (%s)" % (PLUGINDIR, plugindir))
    tmp = tempfile.mkdtemp(prefix="thinsim-deb-")
    installed = False
    try:
        out = os.path.join(tmp, "pkg")
        r = run([CPACK, "--config", os.path.join(BUILD, "CPackConfig.cmake"), "-G", "DEB",
                 "-B", out], cwd=BUILD, timeout=120)
        debs = glob.glob(os.path.join(out, "*.deb"))
        if not check(r.returncode == 0 and len(debs) == 1,
                     "cpack -G DEB (exit %d) %s" % (r.returncode, (r.stdout + r.stderr)[-500:])):
            return 1
        check_package(debs[0])
        r = dpkg(["-i", debs[0]])
        installed = True  # also when dpkg failed half-way: remove what it left
        if check(r.returncode == 0, "dpkg -i (exit %d) %s" % (r.returncode, r.stderr.strip()[-500:])):
            owned = run(["dpkg", "-L", PACKAGE]).stdout.split()
            check_installed(tmp, plugindir)
        else:
            owned = []
        r = dpkg(["-r", PACKAGE])
        installed = r.returncode != 0
        check(r.returncode == 0, "dpkg -r %s (exit %d) %s" % (PACKAGE, r.returncode, r.stderr.strip()))
        left = [p for p in owned if os.path.isfile(p)]
        check(owned and not left, "dpkg -r removed every file (%d owned%s)" % (
            len(owned), (", left: " + ", ".join(left[:5])) if left else ""))
        check(not os.path.exists("/usr/share/thinsim"), "no /usr/share/thinsim left")
        r = run(["nbdkit", "thinsim", "--help"])
        check(r.returncode != 0, "nbdkit thinsim is gone")
    finally:
        if installed:
            dpkg(["-r", PACKAGE])
        shutil.rmtree(tmp, ignore_errors=True)
    return exit_status()


if __name__ == "__main__":
    sys.exit(main())
