// Fuzz target: engine operation sequences checked against the reference
// model, with pool/testing/model_driver.h (the driver of pool_model_test).
//
// Input: the bytes are the driver's choices. The first byte picks an
// in-memory pool or (1 in 4) a pool in a directory (commits, flushes,
// reopens); the rest, read by FuzzedDataProvider, choose the pool's size
// and default strategy, then each step's operation (create, snapshot,
// write, trim, zero with and without MAY_TRIM and FAST_ZERO, provision,
// resize, delete, strategy changes, activation, connections, pool growth)
// and its arguments, until the bytes run out (at most kMaxSteps steps).
//
// Properties: everything pool_model_test checks after every step (outcome
// codes, every byte, extent and counter against the model, state unchanged
// after a failed operation, TEST_CheckCounters); a violation abort()s with
// the operations so far.
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include <fuzzer/FuzzedDataProvider.h>

#include "fuzz/fuzz_util.h"
#include "pool/testing/model_driver.h"

namespace thinsim::fuzz {
namespace {

constexpr int kMaxSteps = 48;

class FuzzDriver : public model::ModelDriver {
 public:
  FuzzDriver(const uint8_t* data, size_t size) : in_(data, size) {}
  bool exhausted() { return in_.remaining_bytes() == 0; }
  void Report(bool fatal, const char* file, int line, const std::string& what) override {
    std::string log;
    for (size_t i = 0; i < history_.size(); ++i) log += "\n  " + std::to_string(i) + ": " + history_[i];
    Fail(std::string(fatal ? "" : "(non-fatal) ") + file + ":" + std::to_string(line) + ": " + what +
         "\nin step: " + desc_ + "\npool " + std::to_string(model_.total) + " blocks" +
         (dir_.empty() ? "" : ", persistent") + "; operations:" + log);
  }

 protected:
  uint64_t Choose(uint64_t n) override {
    if (in_.remaining_bytes() == 0) return 0;
    return in_.ConsumeIntegralInRange<uint64_t>(0, n - 1);
  }

 private:
  FuzzedDataProvider in_;
};

}  // namespace
}  // namespace thinsim::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Persistent pools sync every commit: on tmpfs that costs nothing.
  std::error_code ec;
  if (std::filesystem::is_directory("/dev/shm", ec)) setenv("TMPDIR", "/dev/shm", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace thinsim;
  if (size == 0) return 0;
  fuzz::FuzzDriver driver(data + 1, size - 1);
  driver.Start(/*persistent=*/data[0] % 4 == 0);
  for (int step = 0; step < fuzz::kMaxSteps && !driver.exhausted(); ++step) driver.Step();
  return 0;
}
