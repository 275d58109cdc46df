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
// model_driver.h), shared with fuzz/engine_fuzzer.cc; the seeded gtest
// harness (seeded_model_test.h) with bitmap/bitmap_model_test.cc.
#include <gtest/gtest.h>

#include "pool/testing/model_driver.h"
#include "pool/testing/seeded_model_test.h"

namespace thinsim {
namespace {

class PoolModelTest : public model::SeededModelTest<model::ModelDriver> {};

// In-memory pools.
TEST_P(PoolModelTest, RandomOperationsMatchModel) { Run(/*persistent=*/false); }
INSTANTIATE_TEST_SUITE_P(Seeds, PoolModelTest, ::testing::Range<uint32_t>(1, 21));

// Pools in a directory, with commits, flushes and reopens.
class PoolModelPersistentTest : public PoolModelTest {};
TEST_P(PoolModelPersistentTest, RandomOperationsMatchModel) { Run(/*persistent=*/true); }
INSTANTIATE_TEST_SUITE_P(Seeds, PoolModelPersistentTest, ::testing::Range<uint32_t>(101, 106));

}  // namespace
}  // namespace thinsim
