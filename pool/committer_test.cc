#include "pool/committer.h"

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

namespace thinsim {
namespace {

using std::chrono::milliseconds;

TEST(CommitterTest, TicksEveryPeriodUntilStopped) {
  Committer c;
  std::atomic<int> ticks{0};
  c.Start(milliseconds(5), [&] { ++ticks; });
  EXPECT_TRUE(c.running());
  while (ticks.load() < 3) std::this_thread::sleep_for(milliseconds(1));
  c.Stop();
  EXPECT_FALSE(c.running());
  const int after_stop = ticks.load();
  std::this_thread::sleep_for(milliseconds(30));
  EXPECT_EQ(ticks.load(), after_stop);  // no tick once Stop has returned
}

TEST(CommitterTest, StopDoesNotWaitForThePeriod) {
  Committer c;
  c.Start(milliseconds(60 * 60 * 1000), [] {});
  const auto start = std::chrono::steady_clock::now();
  c.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(CommitterTest, ZeroPeriodStartsNothing) {
  Committer c;
  c.Start(milliseconds(0), [] { FAIL() << "ticked"; });
  EXPECT_FALSE(c.running());
  c.Stop();  // a no-op
}

TEST(CommitterTest, SecondStartIsANoOpAndRestartWorks) {
  Committer c;
  std::atomic<int> first{0}, second{0};
  c.Start(milliseconds(2), [&] { ++first; });
  c.Start(milliseconds(2), [&] { ++second; });  // already running
  while (first.load() < 2) std::this_thread::sleep_for(milliseconds(1));
  c.Stop();
  EXPECT_EQ(second.load(), 0);
  c.Start(milliseconds(2), [&] { ++second; });
  while (second.load() < 1) std::this_thread::sleep_for(milliseconds(1));
  c.Stop();
}

TEST(CommitterTest, DestructorStops) {
  std::atomic<int> ticks{0};
  {
    Committer c;
    c.Start(milliseconds(1), [&] { ++ticks; });
  }
  const int after = ticks.load();
  std::this_thread::sleep_for(milliseconds(10));
  EXPECT_EQ(ticks.load(), after);
}

}  // namespace
}  // namespace thinsim
