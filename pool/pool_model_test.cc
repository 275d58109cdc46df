// Model-based property test of the engine, reservations included.
//
// A naive dense reference model keeps, for every volume, all of its bytes
// and for every vblock the identity of the data block it maps (a "block id";
// 0 for a hole) and its provisioned mark, plus the volume's reservation
// strategy, read-only flag, activation pin, open connections (writable and
// all) and creation order. Block ids are shared exactly when the engine
// shares a dblock, so the model derives by brute force, from scratch after
// every change, each block's owners o(b) and guarantors g(b), the pool's
// used/free/reserved blocks and every per-volume counter (SPEC section 5):
//   - a volume guarantees nothing if it is a read-only snapshot; otherwise
//     `full` guarantees every vblock, `volume` every vblock while active
//     (pinned or a writable connection open), `provision` its provisioned
//     vblocks, `none` nothing;
//   - reserved = sum over blocks of need(b) (g if o > g, else g - 1, 0 when
//     g = 0) + 1 per guaranteed unmapped vblock;
//   - a volume is charged (VolumeInfo::reserved_blocks) 1 per guaranteed
//     unmapped vblock, 1 per guaranteed block with o > g, and 1 per block
//     every owner guarantees unless it is the oldest owner.
//
// Random sequences of operations run against both: data requests (through a
// writable connection held open, or one opened for the request, which
// activates the volume), provision by name, strategy changes, pins,
// connections, snapshots (single and multi-origin, read-only and writable),
// deletes, resizes, volume creation and pool growth. The model predicts every
// outcome exactly (NoSpace, ReadOnly, Busy, Unsupported, Exists, NotFound):
//   - a data request needs one block per touched hole or shared block (trims
//     never allocate; MAY_TRIM zeroes allocate only for shared partial
//     edges, holes stay holes) and fits iff, with those blocks taken and the
//     mappings changed (before any unmapping the request also does),
//     reserved <= free (AllocateBlocks);
//   - activation (pin or writable open), a strategy change, snapshots
//     (all-or-nothing, checked after each one in order), creating a `full`
//     volume and growing a fully guaranteed one are refused iff afterwards
//     reserved > free.
// After every step every byte, every Extents answer, every counter of every
// volume and of the pool must agree with the model, reserved <= free, and
// TEST_CheckCounters() must pass. A request whose every block-needing vblock
// is guaranteed must never fail with NoSpace. After any step with a failed
// operation the engine's whole state (QueryPool, QueryVolumes, all bytes,
// all extents; the pool mode aside) must equal the state captured before it,
// and the model must be unchanged.
//
// Two suites: in-memory pools (seeds 1-20) and pools in a temporary
// directory (seeds 101-105), which add commits, flushes and reopens (every
// connection closes, the pool is opened again and must match the model,
// pins and reservations included).
//
// Each seed prints its number and a summary of outcomes; each suite prints
// its outcomes by operation, so that a change of the generator that stops
// reaching some refusal is noticed. Reproduce one seed with
// THINSIM_MODEL_SEED=N (each suite runs only that seed);
// THINSIM_MODEL_STEPS=N changes the number of steps per seed.
//
// The model and the operations live in pool/testing/ (reference_model.h,
// model_driver.h), shared with fuzz/engine_fuzzer.cc.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "pool/testing/model_driver.h"

namespace thinsim {
namespace {

using model::ModelDriver;

uint64_t EnvOr(const char* name, uint64_t def) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : def;
}

// Choices from a seeded PRNG; failures go to gtest.
class SeededDriver : public ModelDriver {
 public:
  explicit SeededDriver(uint32_t seed) { rng_.seed(seed); }
  void Report(bool fatal, const char* file, int line, const std::string& what) override {
    (void)fatal;  // the driver throws after a fatal one; gtest records both alike
    ADD_FAILURE_AT(file, line) << what;
  }
  // What the run had when it ended, for the failure message.
  std::string Context(bool persistent) const {
    std::ostringstream log;
    size_t from = history_.size() > 16 ? history_.size() - 16 : 0;
    for (size_t i = from; i < history_.size(); ++i) log << "\n  " << i << ": " << history_[i];
    return std::string(persistent ? "persistent pool, " : "") + "pool " + std::to_string(model_.total) +
           " blocks, default strategy " + std::string(StrategyName(default_strategy_)) +
           "\nlast operations:" + log.str();
  }
  uint64_t guaranteed_failures() const { return guaranteed_failures_; }

 protected:
  uint64_t Choose(uint64_t n) override { return rng_() % n; }

 private:
  std::mt19937_64 rng_;
};

class PoolModelTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  static void TearDownTestSuite() {
    std::string line = "outcomes over all seeds of this suite:";
    int n = 0;
    for (const auto& [what, count] : ModelDriver::coverage_) {
      line += (n++ % 6 == 0 ? "\n  " : "; ") + what + "=" + std::to_string(count);
    }
    std::printf("%s\n", line.c_str());
    ModelDriver::coverage_.clear();
  }

  void Run(bool persistent);
};

// In-memory pools.
TEST_P(PoolModelTest, RandomOperationsMatchModel) { Run(/*persistent=*/false); }
INSTANTIATE_TEST_SUITE_P(Seeds, PoolModelTest, ::testing::Range<uint32_t>(1, 21));

// Pools in a directory, with commits, flushes and reopens.
class PoolModelPersistentTest : public PoolModelTest {};
TEST_P(PoolModelPersistentTest, RandomOperationsMatchModel) { Run(/*persistent=*/true); }
INSTANTIATE_TEST_SUITE_P(Seeds, PoolModelPersistentTest, ::testing::Range<uint32_t>(101, 106));

void PoolModelTest::Run(bool persistent) {
  const uint32_t first_seed = persistent ? 101 : 1;
  const char* env_seed = std::getenv("THINSIM_MODEL_SEED");
  const bool one_seed = env_seed != nullptr && *env_seed != '\0';
  if (one_seed && GetParam() != first_seed) GTEST_SKIP();  // THINSIM_MODEL_SEED runs one seed
  const uint32_t seed = static_cast<uint32_t>(EnvOr("THINSIM_MODEL_SEED", GetParam()));
  const uint64_t steps = EnvOr("THINSIM_MODEL_STEPS", 400);
  std::printf("seed %u (THINSIM_MODEL_SEED=%u)%s\n", seed, seed, persistent ? ", persistent pool" : "");
  SeededDriver driver(seed);
  try {
    driver.Start(persistent);
  } catch (const ModelDriver::StepFailed&) {
    FAIL() << "seed " << seed << ": the pool did not start as the model says";
  }
  for (uint64_t step = 0; step < steps; ++step) {
    try {
      driver.Step();
    } catch (const ModelDriver::StepFailed&) {
    }
    if (HasFailure()) {
      FAIL() << "seed " << seed << " (THINSIM_MODEL_SEED=" << seed << "), step " << step << ": "
             << driver.desc() << "\n" << driver.Context(persistent);
    }
  }
  // What the seed exercised, so that a change of the generator that stops
  // reaching a full pool is noticed.
  std::printf("seed %u: %llu steps;%s\n", seed, static_cast<unsigned long long>(steps), driver.Summary().c_str());
  EXPECT_EQ(driver.guaranteed_failures(), 0u);
}

}  // namespace
}  // namespace thinsim
