// `thinsim fs-test ...`: the real-filesystem harness is a Python package
// (tools/fs_test/, see docs/fs-testing.md). The CLI only finds it and execs
//
//     $THINSIM_PYTHON (default /usr/bin/python3) -m fs_test ARGS...
//
// with PYTHONPATH pointing at the directory that holds fs_test/
// ($THINSIM_FS_TEST_DIR; else, for an installed thinsim, the installed
// harness found relative to the binary's own path, e.g.
// <prefix>/share/thinsim; else the source tree's tools/ compiled in as
// THINSIM_SOURCE_DIR), and THINSIM_PLUGIN / THINSIM_CLI pointing at the
// plugin and CLI the running binary belongs to (installed: the plugin in
// the installed plugin directory; built: <build>/plugin/
// nbdkit-thinsim-plugin.so next to <build>/tools/thinsim) unless already
// set.

#ifndef THINSIM_TOOLS_FS_TEST_LAUNCH_H_
#define THINSIM_TOOLS_FS_TEST_LAUNCH_H_

#include <iosfwd>
#include <string>
#include <vector>

namespace thinsim::cli {

// What the process environment contributes to an fs-test launch.
//
// Thread safety: a plain value type.
struct FsTestEnvironment {
  std::string fs_test_dir;  // $THINSIM_FS_TEST_DIR
  std::string python;       // $THINSIM_PYTHON
  std::string plugin;       // $THINSIM_PLUGIN
  std::string cli;          // $THINSIM_CLI
  std::string pythonpath;   // $PYTHONPATH
  std::string self_exe;     // this binary (realpath of /proc/self/exe)

  static FsTestEnvironment FromProcess();
};

// A resolved launch: the program, its argv and the variables to set.
struct FsTestLaunch {
  std::string program;
  std::vector<std::string> argv;
  std::vector<std::pair<std::string, std::string>> env;  // set before exec
};

// If `args` (the command line without the program name) runs `fs-test`
// (after any global options), returns true and fills *fs_args with the
// arguments for the harness: those after `fs-test`, preceded by the global
// --json, --timeout and --help given before it.
bool IsFsTestCommand(const std::vector<std::string>& args, std::vector<std::string>* fs_args);

// Works out what to exec. Returns false with *error set when the fs_test
// package cannot be found.
bool PlanFsTest(const std::vector<std::string>& fs_args, const FsTestEnvironment& env,
                FsTestLaunch* launch, std::string* error);

// Plans and execs the harness. Returns only on failure (exit status 1,
// message on `err`).
int RunFsTest(const std::vector<std::string>& fs_args, const FsTestEnvironment& env,
              std::ostream& err);

}  // namespace thinsim::cli

#endif  // THINSIM_TOOLS_FS_TEST_LAUNCH_H_
