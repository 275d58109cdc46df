// CheckImage finds each kind of damage with the right severity, and
// RepairImage leaves an image CheckImage finds clean.
#include "metadata/check.h"

#include <gtest/gtest.h>

#include <string>

#include "metadata/test_util.h"

namespace thinsim::metadata {
namespace {

using test::AddVolume;
using test::DeriveRefcounts;
using test::MakeChunk;
using test::MakePool;

// A healthy pool: vol (id 1) with two chunks, snap (id 2) of vol sharing
// chunk 0, and refcounts that agree.
Image HealthyImage() {
  Image image = MakePool(100);
  AddVolume(&image, 1, "vol");
  AddVolume(&image, 2, "snap", 64ull << 20, /*origin_id=*/1, /*family=*/1);
  auto shared = MakeChunk({{0, 10}, {1, 11}}, {1});
  image.volumes[1].chunks[0] = shared;
  image.volumes[2].chunks[0] = shared;
  image.volumes[1].chunks[2] = MakeChunk({{5, 12}});
  DeriveRefcounts(&image);
  return image;
}

CheckResult Check(const Image& image) { return CheckImage(image, LoadReport()); }

// The damage lines of `r` that contain `needle`.
std::vector<Damage> Matching(const CheckResult& r, const std::string& needle) {
  std::vector<Damage> out;
  for (const Damage& d : r.damage) {
    if (d.what.find(needle) != std::string::npos) out.push_back(d);
  }
  return out;
}

std::string Describe(const CheckResult& r) {
  std::string s;
  for (const Damage& d : r.damage) s += (d.fatal ? "fatal: " : "non-fatal: ") + d.what + "\n";
  return s;
}

// Repairs and expects a clean result; returns what was lost.
std::vector<std::string> RepairToClean(Image* image, std::vector<std::string>* fixed = nullptr) {
  std::vector<std::string> f, lost;
  RepairImage(image, &f, &lost);
  CheckResult after = Check(*image);
  EXPECT_TRUE(after.clean()) << Describe(after);
  if (fixed != nullptr) *fixed = f;
  return lost;
}

TEST(CheckImage, HealthyImageIsClean) {
  CheckResult r = Check(HealthyImage());
  EXPECT_TRUE(r.clean()) << Describe(r);
  EXPECT_FALSE(r.fatal());
}

TEST(CheckImage, LoadDamageIsFatalAndWarningsAreNotes) {
  LoadReport report;
  report.fatal.push_back("log is truncated");
  report.warnings.push_back("17 bytes of an interrupted commit");
  CheckResult r = CheckImage(HealthyImage(), report);
  ASSERT_EQ(r.damage.size(), 1u);
  EXPECT_TRUE(r.damage[0].fatal);
  EXPECT_EQ(r.notes, report.warnings);
}

TEST(CheckImage, RefcountMismatchIsNonFatalAndRepairRebuildsIt) {
  Image image = HealthyImage();
  image.refcounts[10] = 5;   // too high
  image.refcounts.erase(12);  // missing
  image.refcounts[50] = 1;   // nothing maps it
  CheckResult r = Check(image);
  EXPECT_EQ(Matching(r, "refcount mismatch").size(), 3u) << Describe(r);
  EXPECT_FALSE(r.fatal());
  std::vector<std::string> fixed;
  EXPECT_TRUE(RepairToClean(&image, &fixed).empty());
  EXPECT_EQ(image.refcounts, HealthyImage().refcounts);
  ASSERT_EQ(fixed.size(), 1u);
  EXPECT_NE(fixed[0].find("reference counts"), std::string::npos);
}

TEST(CheckImage, ManyRefcountMismatchesAreSummed) {
  Image image = HealthyImage();
  for (uint32_t b = 50; b < 90; ++b) image.refcounts[b] = 1;
  CheckResult r = Check(image);
  EXPECT_EQ(r.damage.size(), 21u);
  EXPECT_NE(r.damage.back().what.find("20 more refcount mismatches"), std::string::npos) << r.damage.back().what;
}

TEST(CheckImage, BlockOutOfRangeIsFatalAndRepairUnmapsIt) {
  Image image = HealthyImage();
  image.volumes[1].chunks[2] = MakeChunk({{5, 12}, {6, 100}});
  DeriveRefcounts(&image);
  CheckResult r = Check(image);
  auto found = Matching(r, "maps data block 100");
  ASSERT_EQ(found.size(), 1u) << Describe(r);
  EXPECT_TRUE(found[0].fatal);
  std::vector<std::string> lost = RepairToClean(&image);
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_NE(lost[0].find("vblock 134"), std::string::npos) << lost[0];
  EXPECT_EQ(image.volumes[1].chunks[2]->dblocks, (std::vector<uint32_t>{12}));
}

TEST(CheckImage, RepairKeepsASharedChunkShared) {
  Image image = HealthyImage();
  auto shared = MakeChunk({{0, 10}, {1, 11}, {2, 500}});
  image.volumes[1].chunks[0] = shared;
  image.volumes[2].chunks[0] = shared;
  DeriveRefcounts(&image);
  RepairToClean(&image);
  EXPECT_EQ(image.volumes[1].chunks[0].get(), image.volumes[2].chunks[0].get());
  EXPECT_EQ(image.refcounts.at(10), 1u);
}

TEST(CheckImage, DanglingOriginIsNonFatalAndRepairClearsIt) {
  Image image = HealthyImage();
  image.volumes[2].attrs.origin_id = 77;
  CheckResult r = Check(image);
  auto found = Matching(r, "dangles");
  ASSERT_EQ(found.size(), 1u) << Describe(r);
  EXPECT_FALSE(found[0].fatal);
  RepairToClean(&image);
  EXPECT_EQ(image.volumes[2].attrs.origin_id, 0u);
}

TEST(CheckImage, CyclicOriginsAreFoundAndRepairBreaksTheCycleOnce) {
  Image image = HealthyImage();
  AddVolume(&image, 3, "third", 64ull << 20, /*origin_id=*/2, /*family=*/1);
  image.volumes[1].attrs.origin_id = 3;  // 1 -> 3 -> 2 -> 1
  CheckResult r = Check(image);
  EXPECT_EQ(Matching(r, "cycle").size(), 3u) << Describe(r);
  EXPECT_FALSE(r.fatal());
  RepairToClean(&image);
  int relations = 0;
  for (const auto& [id, v] : image.volumes) relations += v.attrs.origin_id != 0;
  EXPECT_EQ(relations, 2);
}

TEST(CheckImage, ChunkBeyondSizeIsFatalAndRepairDropsIt) {
  Image image = HealthyImage();
  image.volumes[1].attrs.size = 2 * 64 * 65536;  // chunks 0 and 1 only
  CheckResult r = Check(image);
  auto found = Matching(r, "beyond its size");
  ASSERT_EQ(found.size(), 1u) << Describe(r);
  EXPECT_TRUE(found[0].fatal);
  std::vector<std::string> lost = RepairToClean(&image);
  EXPECT_EQ(lost.size(), 1u);
  EXPECT_EQ(image.volumes[1].chunks.count(2), 0u);
}

// Found by fuzz/metadata_pool_fuzzer: index * 64 wrapped to 0, so a chunk
// at a huge index passed as inside the volume and reached the engine.
TEST(CheckImage, ChunkAtAHugeIndexIsBeyondTheSize) {
  Image image = HealthyImage();
  image.volumes[1].chunks[uint64_t{1} << 58] = MakeChunk({{0, 40}});
  DeriveRefcounts(&image);
  CheckResult r = Check(image);
  auto found = Matching(r, "beyond its size");
  ASSERT_EQ(found.size(), 1u) << Describe(r);
  EXPECT_TRUE(found[0].fatal);
  RepairToClean(&image);
  EXPECT_EQ(image.volumes[1].chunks.count(uint64_t{1} << 58), 0u);
}

TEST(CheckImage, DuplicateNamesAreFatalAndRepairRenames) {
  Image image = HealthyImage();
  image.volumes[2].attrs.name = "vol";
  CheckResult r = Check(image);
  auto found = Matching(r, "used twice");
  ASSERT_EQ(found.size(), 1u) << Describe(r);
  EXPECT_TRUE(found[0].fatal);
  RepairToClean(&image);
  EXPECT_EQ(image.volumes[1].attrs.name, "vol");
  EXPECT_EQ(image.volumes[2].attrs.name, "vol-2");
}

TEST(CheckImage, InvalidNameIsFatalAndRepairRenames) {
  Image image = HealthyImage();
  image.volumes[2].attrs.name = "bad name/";
  EXPECT_TRUE(Check(image).fatal());
  RepairToClean(&image);
  EXPECT_EQ(image.volumes[2].attrs.name, "volume-2");
}

TEST(CheckImage, BadSizeIsFatalAndRepairRoundsItUp) {
  Image image = HealthyImage();
  image.volumes[1].attrs.size = 64ull << 20 | 100;
  EXPECT_TRUE(Check(image).fatal());
  RepairToClean(&image);
  EXPECT_EQ(image.volumes[1].attrs.size, (64ull << 20) + 512);
}

// Found by fuzz/metadata_records_fuzzer: rounding a size near 2^64 up to
// 512 bytes wrapped to 0, and repair left the size as it was.
TEST(CheckImage, RepairClampsAHugeSize) {
  Image image = HealthyImage();
  image.volumes[2].attrs.size = UINT64_MAX;
  EXPECT_TRUE(Check(image).fatal());
  RepairToClean(&image);
  EXPECT_EQ(image.volumes[2].attrs.size, (uint64_t{1} << 31) * 65536);  // 2^31 blocks
}

TEST(CheckImage, UnknownStrategyAndModeAreNonFatal) {
  Image image = HealthyImage();
  image.volumes[1].attrs.strategy = 9;
  image.mode = 7;
  CheckResult r = Check(image);
  EXPECT_EQ(r.damage.size(), 2u) << Describe(r);
  EXPECT_FALSE(r.fatal());
  RepairToClean(&image);
  EXPECT_EQ(image.volumes[1].attrs.strategy, 0u);
  EXPECT_EQ(image.mode, 0u);
}

TEST(CheckImage, BlockMappedAtTwoVblocksIsFatalAndRepairKeepsTheFirst) {
  Image image = HealthyImage();
  image.volumes[1].chunks[2] = MakeChunk({{5, 12}, {6, 10}});  // 10 is also vblock 0's
  DeriveRefcounts(&image);
  CheckResult r = Check(image);
  ASSERT_EQ(Matching(r, "mapped at vblocks 0 and 134").size(), 1u) << Describe(r);
  EXPECT_TRUE(r.fatal());
  std::vector<std::string> lost = RepairToClean(&image);
  EXPECT_EQ(lost.size(), 1u);
  EXPECT_EQ(image.volumes[1].chunks[2]->dblocks, (std::vector<uint32_t>{12}));
}

TEST(CheckImage, SharingAcrossFamiliesIsNonFatalAndRepairJoinsThem) {
  Image image = HealthyImage();
  image.volumes[2].attrs.family = 2;
  CheckResult r = Check(image);
  ASSERT_EQ(Matching(r, "different families").size(), 2u) << Describe(r);
  EXPECT_FALSE(r.fatal());
  RepairToClean(&image);
  EXPECT_EQ(image.volumes[2].attrs.family, 1u);
}

TEST(CheckImage, VolumeIdZeroIsFatalAndRepairRenumbers) {
  Image image = HealthyImage();
  AddVolume(&image, 0, "zero");
  image.volumes[0].attrs.family = 0;
  EXPECT_TRUE(Check(image).fatal());
  RepairToClean(&image);
  EXPECT_EQ(image.volumes.count(0), 0u);
  EXPECT_EQ(image.volumes.at(3).attrs.name, "zero");
}

TEST(CheckImage, BadPoolAttributesAreFatal) {
  Image image = HealthyImage();
  image.block_size = 1000;
  EXPECT_FALSE(Matching(Check(image), "block size").empty());
  std::vector<std::string> fixed, lost;
  RepairImage(&image, &fixed, &lost);
  EXPECT_FALSE(lost.empty());  // cannot be derived
  image = HealthyImage();
  image.nr_blocks = 0;
  EXPECT_TRUE(Check(image).fatal());
  RepairToClean(&image);
  EXPECT_EQ(image.nr_blocks, 13u);  // highest mapped block 12, plus one
}

TEST(CheckImage, RepairOfACleanImageChangesNothing) {
  Image image = HealthyImage();
  std::vector<std::string> fixed, lost;
  RepairImage(&image, &fixed, &lost);
  EXPECT_TRUE(fixed.empty());
  EXPECT_TRUE(lost.empty());
  EXPECT_EQ(test::Encoded(image), test::Encoded(HealthyImage()));
}

}  // namespace
}  // namespace thinsim::metadata
