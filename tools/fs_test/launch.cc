#include "tools/fs_test/launch.h"

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <sys/stat.h>

#ifndef THINSIM_SOURCE_DIR
#define THINSIM_SOURCE_DIR ""
#endif
// From the installed bin directory to the directory holding the installed
// fs_test/ and to the installed plugin directory
// (cmake/ThinsimInstallDirs.cmake).
#ifndef THINSIM_BIN_TO_FS_TEST
#define THINSIM_BIN_TO_FS_TEST ""
#endif
#ifndef THINSIM_BIN_TO_PLUGINDIR
#define THINSIM_BIN_TO_PLUGINDIR ""
#endif

namespace thinsim::cli {
namespace {

std::string Getenv(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

bool IsFile(const std::string& path) {
  struct stat st;
  return !path.empty() && ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string Dirname(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string StripSlashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

// `path` with "." and ".." components resolved lexically (the installed
// plugin directory is reached through "../lib/..."); messages then show a
// plain path. Symlinks are left alone: self_exe has been resolved already.
std::string Clean(const std::string& path) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    const std::string part = path.substr(start, end - start);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    start = end + 1;
  }
  std::string out;
  for (const std::string& part : parts) out += "/" + part;
  return out.empty() ? "/" : out;
}

// The directory that holds fs_test/ (the one to put on PYTHONPATH), given
// either that directory or the package directory itself.
std::string PackageParent(const std::string& dir) {
  if (dir.empty()) return "";
  const std::string d = StripSlashes(dir);
  if (IsFile(d + "/fs_test/__main__.py")) return d;
  if (IsFile(d + "/__main__.py") && d.size() >= 7 && d.substr(d.size() - 7) == "fs_test") {
    return Dirname(d);
  }
  return "";
}

// Global options that take a value (they may come before the subcommand).
bool TakesValue(const std::string& arg) {
  return arg == "--socket" || arg == "--pool" || arg == "--timeout";
}

}  // namespace

FsTestEnvironment FsTestEnvironment::FromProcess() {
  FsTestEnvironment env;
  env.fs_test_dir = Getenv("THINSIM_FS_TEST_DIR");
  env.python = Getenv("THINSIM_PYTHON");
  env.plugin = Getenv("THINSIM_PLUGIN");
  env.cli = Getenv("THINSIM_CLI");
  env.pythonpath = Getenv("PYTHONPATH");
  char buf[PATH_MAX];
  if (::realpath("/proc/self/exe", buf) != nullptr) env.self_exe = buf;
  return env;
}

bool IsFsTestCommand(const std::vector<std::string>& args, std::vector<std::string>* fs_args) {
  std::size_t i = 0;
  for (; i < args.size(); ++i) {
    if (TakesValue(args[i])) {
      ++i;
      continue;
    }
    if (!args[i].empty() && args[i][0] == '-') continue;
    break;
  }
  if (i >= args.size() || args[i] != "fs-test") return false;
  fs_args->clear();
  for (std::size_t j = 0; j < i; ++j) {
    const std::string& a = args[j];
    if (a == "--json" || a == "--help" || a == "-h") {
      fs_args->push_back(a);
    } else if (a == "--timeout" && j + 1 < i) {
      fs_args->push_back(a);
      fs_args->push_back(args[j + 1]);
    } else if (a.rfind("--timeout=", 0) == 0) {
      fs_args->push_back(a);
    }
    if (TakesValue(a)) ++j;
  }
  fs_args->insert(fs_args->end(), args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
  return true;
}

bool PlanFsTest(const std::vector<std::string>& fs_args, const FsTestEnvironment& env,
                FsTestLaunch* launch, std::string* error) {
  std::string parent = PackageParent(env.fs_test_dir);
  if (parent.empty() && !env.fs_test_dir.empty()) {
    *error = "THINSIM_FS_TEST_DIR=" + env.fs_test_dir +
             " holds no fs_test package (expected DIR/fs_test/__main__.py)";
    return false;
  }
  // An installed thinsim has its harness at a fixed place relative to its
  // own path, whatever the prefix (and after DESTDIR staging or a .deb); a
  // built one has none there and uses the source tree it was built from.
  bool installed = false;
  const std::string bin_to_fs_test = THINSIM_BIN_TO_FS_TEST;
  if (parent.empty() && !env.self_exe.empty() && !bin_to_fs_test.empty()) {
    parent = PackageParent(Clean(Dirname(env.self_exe) + "/" + bin_to_fs_test));
    installed = !parent.empty();
  }
  const std::string source_dir = THINSIM_SOURCE_DIR;
  if (parent.empty() && !source_dir.empty()) parent = PackageParent(source_dir + "/tools");
  if (parent.empty()) {
    *error = "cannot find the fs_test package (neither installed beside this thinsim, in " +
             (env.self_exe.empty() ? std::string("?") : Dirname(env.self_exe)) + "/" +
             bin_to_fs_test + ", nor tools/fs_test in the source tree " +
             (source_dir.empty() ? std::string("unknown") : source_dir) +
             "); set THINSIM_FS_TEST_DIR to the directory that holds fs_test/";
    return false;
  }
  launch->program = env.python.empty() ? "/usr/bin/python3" : env.python;
  launch->argv = {launch->program, "-m", "fs_test"};
  launch->argv.insert(launch->argv.end(), fs_args.begin(), fs_args.end());
  launch->env.clear();
  launch->env.emplace_back("PYTHONPATH",
                           env.pythonpath.empty() ? parent : parent + ":" + env.pythonpath);
  if (env.plugin.empty() && !env.self_exe.empty()) {
    // Installed: <bindir>/<bin-to-plugindir>/nbdkit-thinsim-plugin.so;
    // built: <build>/tools/thinsim -> <build>/plugin/nbdkit-thinsim-plugin.so.
    const std::string plugin_dir =
        installed ? Clean(Dirname(env.self_exe) + "/" + THINSIM_BIN_TO_PLUGINDIR)
                  : Dirname(Dirname(env.self_exe)) + "/plugin";
    launch->env.emplace_back("THINSIM_PLUGIN", plugin_dir + "/nbdkit-thinsim-plugin.so");
  }
  if (env.cli.empty() && !env.self_exe.empty()) launch->env.emplace_back("THINSIM_CLI", env.self_exe);
  // No __pycache__ in an installed (package-owned) directory: a root run
  // would leave files there that `dpkg -r` does not know about.
  if (installed) launch->env.emplace_back("PYTHONDONTWRITEBYTECODE", "1");
  return true;
}

int RunFsTest(const std::vector<std::string>& fs_args, const FsTestEnvironment& env,
              std::ostream& err) {
  FsTestLaunch launch;
  std::string error;
  if (!PlanFsTest(fs_args, env, &launch, &error)) {
    err << "thinsim: fs-test: " << error << "\n";
    return 1;
  }
  for (const auto& [key, value] : launch.env) ::setenv(key.c_str(), value.c_str(), 1);
  std::vector<char*> argv;
  for (std::string& a : launch.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  err.flush();
  ::execv(launch.program.c_str(), argv.data());
  err << "thinsim: fs-test: cannot run " << launch.program << ": " << std::strerror(errno)
      << " (set THINSIM_PYTHON to a python3 with libnbd's module)\n";
  return 1;
}

}  // namespace thinsim::cli
