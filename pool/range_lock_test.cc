#include "pool/range_lock.h"

#include <atomic>
#include <chrono>
#include <deque>
#include <future>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace thinsim {
namespace {

using namespace std::chrono_literals;

// Long enough for a thread that is not blocked to finish its lock call.
constexpr auto kSettle = 50ms;

// Starts a thread that locks [first, last] and records when it got it.
struct Locker {
  std::atomic<bool> acquired{false};
  std::atomic<bool> release{false};
  std::thread thread;

  Locker(RangeLock* lock, vblock_t first, vblock_t last, bool exclusive) {
    thread = std::thread([=, this] {
      ScopedRange r(lock, first, last, exclusive);
      acquired = true;
      while (!release) std::this_thread::sleep_for(1ms);
    });
  }
  bool WaitAcquired(std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!acquired && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    return acquired;
  }
  ~Locker() {
    release = true;
    thread.join();
  }
};

TEST(RangeLockTest, ExclusiveExcludesOverlap) {
  for (auto [first, last] : {std::pair<vblock_t, vblock_t>{5, 15}, {9, 9}, {0, 100}, {0, 0}}) {
    SCOPED_TRACE(first);
    RangeLock lock;
    RangeLock::Range h(0, 9, /*exclusive=*/true);
    lock.Lock(&h);
    Locker writer(&lock, first, last, true);
    Locker reader(&lock, first, last, false);
    std::this_thread::sleep_for(kSettle);
    EXPECT_FALSE(writer.acquired);
    EXPECT_FALSE(reader.acquired);
    lock.Unlock(&h);
    // One of them gets it at once; the other after the first lets go.
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!writer.acquired && !reader.acquired && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    EXPECT_NE(writer.acquired.load(), reader.acquired.load());  // never both: they conflict
    writer.release = true;
    reader.release = true;
    EXPECT_TRUE(writer.WaitAcquired(5s));
    EXPECT_TRUE(reader.WaitAcquired(5s));
  }
}

TEST(RangeLockTest, SharedExcludesExclusive) {
  RangeLock lock;
  RangeLock::Range h(10, 20, /*exclusive=*/false);
  lock.Lock(&h);
  Locker writer(&lock, 20, 30, true);
  std::this_thread::sleep_for(kSettle);
  EXPECT_FALSE(writer.acquired);
  lock.Unlock(&h);
  EXPECT_TRUE(writer.WaitAcquired(5s));
}

TEST(RangeLockTest, SharedReadersCoexist) {
  RangeLock lock;
  RangeLock::Range h1(0, 10, false);
  lock.Lock(&h1);
  RangeLock::Range h2(5, 15, false);
  lock.Lock(&h2);  // would deadlock the test if readers excluded each other
  Locker reader(&lock, 0, 100, false);
  EXPECT_TRUE(reader.WaitAcquired(5s));
  lock.Unlock(&h1);
  lock.Unlock(&h2);
}

TEST(RangeLockTest, NonOverlappingExclusivesRunConcurrently) {
  RangeLock lock;
  RangeLock::Range h(0, 9, true);
  lock.Lock(&h);
  Locker right(&lock, 10, 19, true);
  Locker far(&lock, 1000, 1000000, true);
  EXPECT_TRUE(right.WaitAcquired(5s));
  EXPECT_TRUE(far.WaitAcquired(5s));
  // While all three are held, an overlapping one waits.
  Locker blocked(&lock, 9, 10, false);
  std::this_thread::sleep_for(kSettle);
  EXPECT_FALSE(blocked.acquired);
  lock.Unlock(&h);
  std::this_thread::sleep_for(kSettle);
  EXPECT_FALSE(blocked.acquired);  // [10,19] is still held
  right.release = true;
  EXPECT_TRUE(blocked.WaitAcquired(5s));
}

TEST(RangeLockTest, UnlockInAnyOrder) {
  RangeLock lock;
  std::deque<RangeLock::Range> ranges;  // stable addresses
  for (vblock_t i = 0; i < 10; ++i) lock.Lock(&ranges.emplace_back(i * 2, i * 2 + 1, true));
  for (size_t i : {3, 0, 9, 5, 1, 2, 8, 7, 4, 6}) lock.Unlock(&ranges[i]);
  RangeLock::Range h(0, 100, true);
  lock.Lock(&h);  // everything was released
  lock.Unlock(&h);
}

// Stress: exclusive holders of overlapping ranges never overlap in time.
TEST(RangeLockTest, StressMutualExclusion) {
  constexpr int kBlocks = 32;
  RangeLock lock;
  std::vector<std::atomic<int>> writers(kBlocks);
  std::vector<std::atomic<int>> readers(kBlocks);
  std::atomic<bool> bad{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 2000; ++i) {
        vblock_t a = rng() % kBlocks, b = rng() % kBlocks;
        if (a > b) std::swap(a, b);
        bool excl = rng() % 2;
        ScopedRange r(&lock, a, b, excl);
        for (vblock_t x = a; x <= b; ++x) {
          if (excl) {
            if (writers[x]++ != 0 || readers[x] != 0) bad = true;
          } else {
            readers[x]++;
            if (writers[x] != 0) bad = true;
          }
        }
        for (vblock_t x = a; x <= b; ++x) {
          if (excl) writers[x]--; else readers[x]--;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_FALSE(bad);
}

}  // namespace
}  // namespace thinsim
