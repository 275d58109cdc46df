"""What the install tests share: the build's install layout (from CMake,
through the environment), check(), command runs, an nbdkit server on a
given plugin, and completion of a command line by the installed bash
completion script.

  THINSIM_BUILD_DIR  the build directory to install from
  THINSIM_CMAKE      cmake (CMAKE_COMMAND), THINSIM_CPACK cpack
  THINSIM_LAYOUT     bindir;plugindir;mandir;fs-test dir;completion dir,
                     relative to the prefix (cmake/ThinsimInstallDirs.cmake)
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import thinsim_testlib as lib  # noqa: E402

SKIP = 77
BUILD = os.environ.get("THINSIM_BUILD_DIR") or os.path.join(lib.REPO, "build")
CMAKE = os.environ.get("THINSIM_CMAKE") or "cmake"
CPACK = os.environ.get("THINSIM_CPACK") or "cpack"
_layout = (os.environ.get("THINSIM_LAYOUT") or
           "bin;lib/x86_64-linux-gnu/nbdkit/plugins;share/man;share/thinsim;"
           "share/bash-completion/completions").split(";")
BINDIR, PLUGINDIR, MANDIR, FS_TEST_DIR, COMPLETION_DIR = _layout

PLUGIN_FILE = "nbdkit-thinsim-plugin.so"
# Every file an install must put under its prefix (relative paths).
EXPECTED = [
    os.path.join(BINDIR, "thinsim"),
    os.path.join(PLUGINDIR, PLUGIN_FILE),
    os.path.join(MANDIR, "man1", "thinsim.1"),
    os.path.join(MANDIR, "man1", "nbdkit-thinsim-plugin.1"),
    os.path.join(COMPLETION_DIR, "thinsim"),
    os.path.join(FS_TEST_DIR, "fs_test", "__main__.py"),
    os.path.join(FS_TEST_DIR, "fs_test", "runner.py"),
]

FAILURES = []


def check(ok, what):
    print("%s %s" % ("ok  " if ok else "FAIL", what), flush=True)
    if not ok:
        FAILURES.append(what)
    return ok


def exit_status():
    """0 if every check passed, else 1 (with a count)."""
    if FAILURES:
        print("%d check(s) failed" % len(FAILURES))
        return 1
    return 0


def fake_python(tmp):
    """A stand-in for python3 that prints the harness's search path and the
    plugin and CLI `thinsim fs-test` hands it, one VAR=VALUE a line."""
    path = os.path.join(tmp, "fake-python3")
    with open(path, "w") as f:
        f.write('#!/bin/sh\necho "PYTHONPATH=$PYTHONPATH"\necho "PLUGIN=$THINSIM_PLUGIN"\n'
                'echo "CLI=$THINSIM_CLI"\n')
    os.chmod(path, 0o755)
    return path


def run(argv, timeout=60, env=None, **kw):
    """Runs argv (tools such as nbdsh with /usr/bin first on PATH); never
    raises for a non-zero exit."""
    e = dict(lib.TOOL_ENV)
    # The fs-test launcher honours these: none may leak in from the caller.
    for k in ("THINSIM_PLUGIN", "THINSIM_CLI", "THINSIM_FS_TEST_DIR", "THINSIM_PYTHON",
              "THINSIM_SOCKET", "DESTDIR"):
        e.pop(k, None)
    e.update(env or {})
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=e, **kw)
    except FileNotFoundError as err:
        return subprocess.CompletedProcess(argv, 127, "", str(err))


def installed_paths(output, root):
    """The paths an install reports (`-- Installing:` / `-- Up-to-date:`),
    and those of them outside `root`."""
    paths = [l.split(": ", 1)[1].strip() for l in output.splitlines()
             if l.startswith(("-- Installing: ", "-- Up-to-date: "))]
    root = os.path.realpath(root) + os.sep
    return paths, [p for p in paths if not os.path.realpath(p).startswith(root)]


class Server(lib.Nbdkit):
    """lib.Nbdkit on a given plugin: a path, or a name such as "thinsim"."""

    def __init__(self, tmp, plugin, params=()):
        super().__init__(tmp, params)
        self.plugin = plugin

    def argv(self):
        argv = super().argv()
        argv[argv.index(lib.PLUGIN)] = self.plugin
        return argv


def write_read(sock, export):
    """Writes a pattern to `export` through nbdsh and reads it back."""
    uri = "nbd+unix:///%s?socket=%s" % (export, sock)
    r = run(["nbdsh", "-u", uri, "-c", 'h.pwrite(b"thinsim" * 1000, 65536)',
             "-c", "h.flush()", "-c", 'print(h.pread(7000, 65536) == b"thinsim" * 1000)'])
    return r.returncode == 0 and r.stdout.strip() == "True", r.stderr.strip()


def complete(script, line, env=None):
    """The words bash completion offers for `line` (completing its last
    word, '' after a trailing space), with `script` sourced."""
    driver = r'''
source "$1"
line="$2"
read -r -a COMP_WORDS <<< "$line"
[[ "$line" == *" " ]] && COMP_WORDS+=("")
# Split at ':' and '=' as readline does.
split=()
for w in "${COMP_WORDS[@]}"; do
  while [[ "$w" =~ ^([^:=]*)([:=])(.*)$ ]]; do
    [[ -n "${BASH_REMATCH[1]}" ]] && split+=("${BASH_REMATCH[1]}")
    split+=("${BASH_REMATCH[2]}"); w="${BASH_REMATCH[3]}"
  done
  [[ -n "$w" || ${#split[@]} -eq 0 || "${split[-1]}" != [:=] ]] && split+=("$w")
done
COMP_WORDS=("${split[@]}")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="$line"; COMP_POINT=${#line}
_thinsim thinsim "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
'''
    r = run(["bash", "-c", driver, "complete", script, line], env=env, timeout=20)
    return sorted(w for w in r.stdout.split("\n") if w)
