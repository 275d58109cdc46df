#!/usr/bin/python3
"""`thinsim fs-test` hands over to the Python harness correctly (no root
needed): the arguments after `fs-test` (and the global --json/--timeout
before it) reach `python3 -m fs_test`, PYTHONPATH points at the source
tree's tools/, THINSIM_PLUGIN/THINSIM_CLI point at the same build, and a
bad THINSIM_FS_TEST_DIR is reported."""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fs_env  # noqa: E402

CLI = os.path.realpath(fs_env.CLI)
if not os.path.isfile(CLI):
    print("SKIP: the CLI %s is not built" % CLI)
    sys.exit(fs_env.SKIP)

FAILURES = []


def check(ok, what):
    print("%s %s" % ("ok  " if ok else "FAIL", what))
    if not ok:
        FAILURES.append(what)


def run(args, **env):
    e = {k: v for k, v in os.environ.items()
         if k not in ("THINSIM_PLUGIN", "THINSIM_CLI", "THINSIM_FS_TEST_DIR", "THINSIM_PYTHON")}
    e.update(env)
    return subprocess.run([CLI] + args, capture_output=True, text=True, timeout=60, env=e)


def main():
    r = run(["--help"])
    check(r.returncode == 0 and "fs-test" in r.stdout, "thinsim --help lists fs-test")

    r = run(["fs-test", "--list"])
    check(r.returncode == 0 and "snapshot-overwrite" in r.stdout and "two-tenants" in r.stdout,
          "thinsim fs-test --list runs the harness (exit %d)" % r.returncode)

    with tempfile.TemporaryDirectory() as tmp:
        fake = os.path.join(tmp, "python3")
        with open(fake, "w") as f:
            f.write("#!/bin/sh\nfor a in \"$@\"; do echo \"ARG=$a\"; done\n"
                    "echo \"PYTHONPATH=$PYTHONPATH\"\necho \"PLUGIN=$THINSIM_PLUGIN\"\n"
                    "echo \"CLI=$THINSIM_CLI\"\n")
        os.chmod(fake, 0o755)
        r = run(["--timeout", "7", "--json", "fs-test", "snapshot-overwrite", "--fs", "xfs"],
                THINSIM_PYTHON=fake)
        lines = r.stdout.splitlines()
        args = [l[4:] for l in lines if l.startswith("ARG=")]
        env = dict(l.split("=", 1) for l in lines if not l.startswith("ARG="))
        check(args == ["-m", "fs_test", "--timeout", "7", "--json", "snapshot-overwrite", "--fs", "xfs"],
              "argv passed on: %s" % args)
        tools = os.path.join(fs_env.REPO, "tools")
        check(env.get("PYTHONPATH", "").split(":")[0] == tools,
              "PYTHONPATH starts with %s (%s)" % (tools, env.get("PYTHONPATH")))
        build = os.path.dirname(os.path.dirname(CLI))
        check(env.get("PLUGIN") == os.path.join(build, "plugin", "nbdkit-thinsim-plugin.so"),
              "THINSIM_PLUGIN from the CLI's build (%s)" % env.get("PLUGIN"))
        check(env.get("CLI") == CLI, "THINSIM_CLI is the running CLI (%s)" % env.get("CLI"))

        r = run(["fs-test", "--list"], THINSIM_PYTHON=fake, THINSIM_PLUGIN="/x/p.so")
        check("PLUGIN=/x/p.so" in r.stdout, "an existing THINSIM_PLUGIN is kept")

        r = run(["fs-test", "--list"], THINSIM_FS_TEST_DIR=os.path.join(tools, "fs_test"))
        check(r.returncode == 0 and "two-tenants" in r.stdout,
              "THINSIM_FS_TEST_DIR may name the package directory itself")

        r = run(["fs-test", "--list"], THINSIM_FS_TEST_DIR=tmp)
        check(r.returncode == 1 and "THINSIM_FS_TEST_DIR" in r.stderr,
              "a THINSIM_FS_TEST_DIR without fs_test/ is an error: %s" % r.stderr.strip())

    r = run(["fs-test", "no-such-scenario"])
    check(r.returncode == 2 and "unknown scenario" in r.stderr, "unknown scenario: usage error")
    if FAILURES:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
