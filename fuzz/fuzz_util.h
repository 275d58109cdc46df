// Helpers shared by the fuzz targets: reporting a violated property so that
// libFuzzer records the input, and a per-process scratch directory.
#ifndef THINSIM_FUZZ_FUZZ_UTIL_H_
#define THINSIM_FUZZ_FUZZ_UTIL_H_

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace thinsim::fuzz {

// A property does not hold: say which, then abort(). libFuzzer treats the
// abort as a crash and saves the input as a crash-* file.
[[noreturn]] inline void Fail(const std::string& what) {
  std::fprintf(stderr, "\n==== fuzz property violated ====\n%s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// Splits on '\n'; a trailing empty piece is dropped.
inline std::vector<std::string_view> SplitLines(std::string_view in) {
  std::vector<std::string_view> lines;
  while (!in.empty()) {
    size_t nl = in.find('\n');
    lines.push_back(in.substr(0, nl));
    if (nl == std::string_view::npos) break;
    in.remove_prefix(nl + 1);
  }
  return lines;
}

// A directory made once per process and removed at exit, under /dev/shm
// when there is one (the journal syncs every file it writes; on tmpfs that
// costs nothing), else $TMPDIR or /tmp. Fuzz targets that need files
// rewrite them for every input.
inline const std::string& ScratchDir() {
  // Never destroyed, so that the exit handler still has it.
  static const std::string* const dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
    std::error_code ec;
    if (std::filesystem::is_directory("/dev/shm", ec)) base = "/dev/shm";
    std::string tmpl = base + "/thinsim-fuzz-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) Fail("mkdtemp failed for " + tmpl);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(ScratchDir(), ignored);
    });
    return new std::string(tmpl);
  }();
  return *dir;
}

}  // namespace thinsim::fuzz

#endif  // THINSIM_FUZZ_FUZZ_UTIL_H_
