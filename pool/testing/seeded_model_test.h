// SeededDriver and SeededModelTest: a ModelDriver (pool/testing/
// model_driver.h) or a subclass of it run from a seeded PRNG as a gtest,
// shared by pool/pool_model_test.cc and bitmap/bitmap_model_test.cc.
// Test-only code; unlike the driver, it needs gtest.
//
// A suite is a value-parameterised test over seeds: each seed prints its
// number, then the driver's Summary() (what it exercised); the suite prints
// its outcomes by operation (ModelDriver::coverage_) when it ends, so that a
// change of the generator that stops reaching some refusal is noticed. A
// failure names the seed, the step and the last operations. Reproduce one
// seed with THINSIM_MODEL_SEED=N (each suite runs only that seed, in the
// test of its first seed); THINSIM_MODEL_STEPS=N changes the number of
// steps per seed (default 400).
//
// Thread safety: one thread.
#ifndef THINSIM_POOL_TESTING_SEEDED_MODEL_TEST_H_
#define THINSIM_POOL_TESTING_SEEDED_MODEL_TEST_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "pool/testing/model_driver.h"

namespace thinsim::model {

inline uint64_t EnvOr(const char* name, uint64_t def) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : def;
}

// Choices from a seeded PRNG; failures go to gtest. `Driver` is ModelDriver
// or a subclass that leaves Choose and Report to it.
template <typename Driver>
class SeededDriver : public Driver {
 public:
  explicit SeededDriver(uint32_t seed) { rng_.seed(seed); }
  void Report(bool fatal, const char* file, int line, const std::string& what) override {
    (void)fatal;  // the driver throws after a fatal one; gtest records both alike
    ADD_FAILURE_AT(file, line) << what;
  }
  // What the run had when it ended, for the failure message.
  std::string Context(bool persistent) const {
    std::ostringstream log;
    const auto& history = this->history_;
    size_t from = history.size() > 16 ? history.size() - 16 : 0;
    for (size_t i = from; i < history.size(); ++i) log << "\n  " << i << ": " << history[i];
    return std::string(persistent ? "persistent pool, " : "") + "pool " + std::to_string(this->model_.total) +
           " blocks, default strategy " + std::string(StrategyName(this->default_strategy_)) +
           "\nlast operations:" + log.str();
  }
  uint64_t guaranteed_failures() const { return this->guaranteed_failures_; }

 protected:
  uint64_t Choose(uint64_t n) override { return rng_() % n; }

 private:
  std::mt19937_64 rng_;
};

// The fixture: TEST_P bodies call Run. Seeds start at 1 for in-memory pools
// and at 101 for persistent ones (THINSIM_MODEL_SEED runs in that test).
template <typename Driver>
class SeededModelTest : public ::testing::TestWithParam<uint32_t> {
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

  void Run(bool persistent) {
    const uint32_t first_seed = persistent ? 101 : 1;
    const char* env_seed = std::getenv("THINSIM_MODEL_SEED");
    const bool one_seed = env_seed != nullptr && *env_seed != '\0';
    if (one_seed && GetParam() != first_seed) GTEST_SKIP();  // THINSIM_MODEL_SEED runs one seed
    const uint32_t seed = static_cast<uint32_t>(EnvOr("THINSIM_MODEL_SEED", GetParam()));
    const uint64_t steps = EnvOr("THINSIM_MODEL_STEPS", 400);
    std::printf("seed %u (THINSIM_MODEL_SEED=%u)%s\n", seed, seed, persistent ? ", persistent pool" : "");
    SeededDriver<Driver> driver(seed);
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
    std::printf("seed %u: %llu steps;%s\n", seed, static_cast<unsigned long long>(steps),
                driver.Summary().c_str());
    EXPECT_EQ(driver.guaranteed_failures(), 0u);
  }
};

}  // namespace thinsim::model

#endif  // THINSIM_POOL_TESTING_SEEDED_MODEL_TEST_H_
