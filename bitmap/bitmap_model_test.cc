// Model-based test of dirty bitmaps (SPEC section 12) in the engine's random
// operation sequences: pool_model_test's operations, every one still checked
// against its reference model, with bitmap operations added (add, remove,
// clear, enable, disable, merge, cut, a job's busy mark, and requests aimed
// at volumes with bitmaps) and every bitmap of every volume checked after
// every step against the bitmaps' own model, which every request that
// reached the volume's observers marks (bitmap/testing/
// bitmap_model_driver.h). Live bits must be exact; a persistent bitmap may
// come back from a reopen dirtier, by whole write-intent chunks only.
//
// Two suites: in-memory pools (seeds 1-20) and pools in a temporary
// directory (seeds 101-105), which add persistent bitmaps, commits, flushes
// and reopens. Each seed prints its number and a summary: the driver's
// outcomes, then each bitmap operation's outcomes and what the bitmaps went
// through (marks by kind, marks by failed requests, resizes, reopens), so
// that a change of the generator that stops reaching one is noticed. A
// failure names the seed and the last operations. THINSIM_MODEL_SEED=N runs
// one seed, THINSIM_MODEL_STEPS=N changes the steps per seed
// (pool/testing/seeded_model_test.h).
#include <gtest/gtest.h>

#include "bitmap/testing/bitmap_model_driver.h"
#include "pool/testing/seeded_model_test.h"

namespace thinsim {
namespace {

class BitmapModelTest : public model::SeededModelTest<model::BitmapModelDriver> {};

// In-memory pools.
TEST_P(BitmapModelTest, RandomOperationsMatchModel) { Run(/*persistent=*/false); }
INSTANTIATE_TEST_SUITE_P(Seeds, BitmapModelTest, ::testing::Range<uint32_t>(1, 21));

// Pools in a directory: persistent bitmaps, commits, flushes and reopens.
class BitmapModelPersistentTest : public BitmapModelTest {};
TEST_P(BitmapModelPersistentTest, RandomOperationsMatchModel) { Run(/*persistent=*/true); }
INSTANTIATE_TEST_SUITE_P(Seeds, BitmapModelPersistentTest, ::testing::Range<uint32_t>(101, 106));

}  // namespace
}  // namespace thinsim
