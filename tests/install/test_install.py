#!/usr/bin/python3
"""`cmake --install` into a temporary prefix and with DESTDIR: everything
lands under the prefix and nowhere else, the installed CLI and plugin run,
the installed `thinsim fs-test` uses the installed harness and plugin (also
after the tree is moved), both man pages render without warnings, and the
bash completion completes commands, strategies and live volume names.

Needs no root. The .deb is test_deb.py."""

import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from install_lib import (BINDIR, BUILD, CMAKE, COMPLETION_DIR, EXPECTED,  # noqa: E402
                         FS_TEST_DIR, MANDIR, PLUGIN_FILE, PLUGINDIR, SKIP, Server, check,
                         complete, exit_status, fake_python, installed_paths, run,
                         write_read)


def install(prefix, destdir=None):
    env = {"DESTDIR": destdir} if destdir else {}
    r = run([CMAKE, "--install", BUILD, "--prefix", prefix], env=env, timeout=120)
    root = destdir + prefix if destdir else prefix
    paths, outside = installed_paths(r.stdout, root)
    check(r.returncode == 0, "cmake --install --prefix %s%s (exit %d) %s" % (
        prefix, " with DESTDIR=" + destdir if destdir else "", r.returncode, r.stderr.strip()))
    check(paths and not outside, "%d files installed, none outside %s%s" % (
        len(paths), root, (": " + ", ".join(outside[:5])) if outside else ""))
    for rel in EXPECTED:
        check(os.path.isfile(os.path.join(root, rel)), "installed %s" % rel)
    return root


def check_fs_test_launch(root, tmp, what):
    """The installed CLI runs the installed harness with the installed
    plugin: checked with a stand-in python3 that prints what it was given."""
    cli = os.path.join(root, BINDIR, "thinsim")
    fake = fake_python(tmp)
    r = run([cli, "fs-test", "--list"], env={"THINSIM_PYTHON": fake})
    env = dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)
    real = os.path.realpath(root)
    check(env.get("PYTHONPATH", "").split(":")[0] == os.path.join(real, FS_TEST_DIR),
          "%s: fs-test harness from %s (%s)" % (what, os.path.join(root, FS_TEST_DIR),
                                                env.get("PYTHONPATH")))
    check(env.get("PLUGIN") == os.path.join(real, PLUGINDIR, PLUGIN_FILE),
          "%s: fs-test plugin is the installed one (%s)" % (what, env.get("PLUGIN")))
    check(env.get("CLI") == os.path.realpath(cli), "%s: fs-test CLI is the installed one" % what)


def page_text(prefix, page):
    r = run(["groff", "-man", "-Tutf8", "-P-cbou",
             os.path.join(prefix, MANDIR, "man1", page + ".1")], env={"LC_ALL": "C.UTF-8"})
    return r.stdout


def check_pages_complete(prefix, cli, plugin):
    """Every parameter `nbdkit PLUGIN --help` lists has an entry in
    nbdkit-thinsim-plugin(1), and every command `thinsim --help` lists one
    in thinsim(1): a new key or command fails here until it is documented."""
    helptext = run(["nbdkit", plugin, "--help"]).stdout
    keys = re.findall(r"^([a-z][a-z-]*)=", helptext.split("plugin: thinsim", 1)[-1], re.M)
    text = page_text(prefix, "nbdkit-thinsim-plugin")
    missing = [k for k in keys if not re.search(r"^\s+%s=" % re.escape(k), text, re.M)]
    check(keys and not missing, "nbdkit-thinsim-plugin(1) documents all %d parameters%s" % (
        len(keys), ": missing " + ", ".join(missing) if missing else ""))
    helptext = run([cli, "--help"]).stdout
    commands = re.findall(r"^  ([a-z][a-z-]*)\s", helptext.split("Subcommands:", 1)[-1], re.M)
    text = page_text(prefix, "thinsim")
    missing = [c for c in commands if not re.search(r"^\s+%s\b" % re.escape(c), text, re.M)]
    check(commands and not missing, "thinsim(1) documents all %d commands%s" % (
        len(commands), ": missing " + ", ".join(missing) if missing else ""))


def check_prefix_install(prefix, tmp):
    cli = os.path.join(prefix, BINDIR, "thinsim")
    plugin = os.path.join(prefix, PLUGINDIR, PLUGIN_FILE)
    r = run([cli, "--help"])
    check(r.returncode == 0 and "snapshot" in r.stdout and "fs-test" in r.stdout,
          "installed thinsim --help (exit %d)" % r.returncode)
    r = run(["nbdkit", plugin, "--help"])
    check(r.returncode == 0 and "pool=DIR" in r.stdout and "volume=NAME" in r.stdout,
          "nbdkit %s --help loads the installed plugin (exit %d) %s" % (
              plugin, r.returncode, r.stderr.strip()[-300:]))
    r = run([cli, "fs-test", "--list"])
    check(r.returncode == 0 and "snapshot-overwrite" in r.stdout,
          "installed thinsim fs-test --list runs the installed harness (exit %d) %s" % (
              r.returncode, r.stderr.strip()[-300:]))
    check(not os.path.exists(os.path.join(prefix, FS_TEST_DIR, "fs_test", "__pycache__")),
          "the installed harness leaves no __pycache__ behind")
    check_fs_test_launch(prefix, tmp, "prefix install")

    check_pages_complete(prefix, cli, plugin)
    for page in ("thinsim", "nbdkit-thinsim-plugin"):
        path = os.path.join(prefix, MANDIR, "man1", page + ".1")
        env = {"MANWIDTH": "80", "MAN_KEEP_FORMATTING": "", "LC_ALL": "C.UTF-8"}
        if shutil.which("man"):
            r = run(["man", "--warnings", "-l", path], env=env)
            check(r.returncode == 0 and "SYNOPSIS" in r.stdout and "SEE ALSO" in r.stdout
                  and not r.stderr.strip(),
                  "man -l %s renders without warnings %s" % (page + ".1", r.stderr.strip()[:300]))
        r = run(["groff", "-ww", "-man", "-Tutf8", path], env=env)
        check(r.returncode == 0 and "NAME" in r.stdout and not r.stderr.strip(),
              "groff -ww -man %s: no warnings %s" % (page + ".1", r.stderr.strip()[:300]))

    # A real run of the installed plugin, and completion against it.
    server = Server(os.path.join(tmp, "srv"), plugin,
                    ["size=16M", "volume=alpha:16M", "volume=beta:8M"])
    os.mkdir(server.tmp)
    server.start()
    try:
        ok, err = write_read(server.sock, "alpha")
        check(ok, "write and read back through the installed plugin %s" % err)
        r = run([cli, "--socket", server.ctl, "ls"])
        check(r.returncode == 0 and "alpha" in r.stdout and "beta" in r.stdout,
              "installed thinsim --socket ... ls (exit %d)" % r.returncode)
        script = os.path.join(prefix, COMPLETION_DIR, "thinsim")
        path_env = {"PATH": os.path.join(prefix, BINDIR) + ":/usr/bin:/bin"}
        cases = [
            ("thinsim sn", ["snapshot"]),
            ("thinsim --j", ["--json"]),
            ("thinsim create x 1G --reserve v", ["volume"]),
            ("thinsim --socket %s ls " % server.ctl, ["alpha", "beta"]),
            ("thinsim --socket %s delete b" % server.ctl, ["beta"]),
            ("thinsim --socket %s snapshot alpha:a1 b" % server.ctl, ["beta"]),
            ("thinsim --socket %s set alpha reserve=f" % server.ctl, ["full"]),
            ("thinsim fs-test --fs x", ["xfs"]),
            ("thinsim fs-test two", ["two-tenants"]),
            ("thinsim job ca", ["cancel"]),
            ("thinsim --socket %s/nothing-here ls " % tmp, []),
        ]
        for line, want in cases:
            got = complete(script, line, env=path_env)
            check(got == want, "completion of '%s': %s" % (line, got))
    finally:
        server.stop()


def main():
    if not os.path.isfile(os.path.join(BUILD, "cmake_install.cmake")):
        print("SKIP: %s is not a configured build directory" % BUILD)
        return SKIP
    tmp = tempfile.mkdtemp(prefix="thinsim-install-")
    try:
        prefix = os.path.join(tmp, "prefix")
        install(prefix)
        check_prefix_install(prefix, tmp)

        # DESTDIR staging of a /usr install, as packaging does, then the
        # staged tree moved elsewhere: the CLI still finds its harness.
        stage = os.path.join(tmp, "stage")
        root = install("/usr", destdir=stage)
        moved = os.path.join(tmp, "moved")
        os.rename(root, moved)
        check_fs_test_launch(moved, tmp, "DESTDIR install, moved")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return exit_status()


if __name__ == "__main__":
    sys.exit(main())
