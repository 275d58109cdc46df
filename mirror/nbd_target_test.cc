// Tests of NbdTarget against real nbdkit servers (the memory plugin, with
// filters for block sizes, multi-conn and injected errors): what it learns
// at connect, data calls, block status, errno mapping, and a target that
// goes away.
#include "mirror/nbd_target.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/status_test_util.h"
#include "mirror/testing/nbd_server.h"

namespace thinsim {
namespace {

using testing::NbdServer;
constexpr uint64_t kMiB = 1 << 20;

std::unique_ptr<NbdTarget> ConnectOrFail(const NbdServer& server, size_t connections = 1) {
  std::unique_ptr<NbdTarget> t;
  EXPECT_TRUE(server.ok()) << "nbdkit did not start";
  EXPECT_OK(NbdTarget::Connect(server.Uri(), connections, &t));
  return t;
}

TEST(NbdTargetTest, LearnsWhatTheServerAdvertises) {
  NbdServer server(NbdServer::Nbdkit({"--filter=blocksize-policy", "memory", "16M", "blocksize-preferred=64K",
                                      "blocksize-minimum=512", "blocksize-maximum=32M"}));
  auto t = ConnectOrFail(server, 4);
  ASSERT_TRUE(t);
  const NbdTarget::Info& i = t->info();
  EXPECT_EQ(i.size, 16 * kMiB);
  EXPECT_EQ(i.preferred_block, 64u << 10);
  EXPECT_EQ(i.min_block, 512u);
  EXPECT_EQ(i.max_block, 32 * kMiB);
  EXPECT_FALSE(i.read_only);
  EXPECT_TRUE(i.can_flush);
  EXPECT_TRUE(i.can_trim);
  EXPECT_TRUE(i.can_zero);
  EXPECT_TRUE(i.base_allocation);
  EXPECT_TRUE(i.can_multi_conn);  // the memory plugin: one store behind every connection
  EXPECT_EQ(t->connections(), 4u);
}

TEST(NbdTargetTest, WithoutMultiConnOneConnectionServesEveryCall) {
  NbdServer server(NbdServer::Nbdkit({"--filter=multi-conn", "memory", "1M", "multi-conn-mode=disable"}));
  auto t = ConnectOrFail(server, 4);
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->info().can_multi_conn);
  EXPECT_EQ(t->connections(), 1u);
  EXPECT_EQ(t->info().preferred_block, 0u);  // not advertised
}

TEST(NbdTargetTest, WritesReadsZeroesAndKnowsWhatReadsZero) {
  NbdServer server(NbdServer::Nbdkit({"memory", "4M"}));
  auto t = ConnectOrFail(server, 2);
  ASSERT_TRUE(t);
  bool zero = false;
  ASSERT_OK(t->ReadsZero(4 * kMiB, 0, &zero));
  EXPECT_TRUE(zero);  // a fresh memory disk
  std::vector<uint8_t> data(8192, 'm');
  ASSERT_OK(t->Write(data.data(), data.size(), kMiB));
  ASSERT_OK(t->Flush());
  std::vector<uint8_t> back(data.size());
  ASSERT_OK(t->Read(back.data(), back.size(), kMiB));
  EXPECT_EQ(back, data);
  ASSERT_OK(t->ReadsZero(kMiB, 0, &zero));
  EXPECT_TRUE(zero);
  ASSERT_OK(t->ReadsZero(kMiB, kMiB / 2, &zero));
  EXPECT_FALSE(zero);
  ASSERT_OK(t->Zero(4096, kMiB, /*fast=*/false, /*may_trim=*/true));
  ASSERT_OK(t->Read(back.data(), back.size(), kMiB));
  EXPECT_EQ(std::vector<uint8_t>(back.begin(), back.begin() + 4096), std::vector<uint8_t>(4096, 0));
  EXPECT_EQ(back[4096], 'm');
}

TEST(NbdTargetTest, FastZeroIsRefusedUpFrontWhereTheServerCannot) {
  NbdServer server(NbdServer::Nbdkit({"--filter=nozero", "memory", "1M", "zeromode=notrim", "fastzeromode=none"}));
  auto t = ConnectOrFail(server);
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->info().can_fast_zero);
  Status s = t->Zero(4096, 0, /*fast=*/true, /*may_trim=*/true);
  EXPECT_EQ(s.code(), ErrorCode::kUnsupported) << s.ToString();
  ASSERT_OK(t->Zero(4096, 0, /*fast=*/false, /*may_trim=*/false));
}

TEST(NbdTargetTest, ServerErrnosBecomeStatusCodes) {
  NbdServer nospc(NbdServer::Nbdkit({"--filter=error", "memory", "1M", "error-pwrite=ENOSPC", "error-pwrite-rate=1"}));
  auto t = ConnectOrFail(nospc);
  ASSERT_TRUE(t);
  std::vector<uint8_t> data(512, 'x');
  Status s = t->Write(data.data(), data.size(), 4096);
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace) << s.ToString();
  EXPECT_NE(s.message().find("write of 512 bytes at offset 4096"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("ENOSPC"), std::string::npos) << s.message();

  NbdServer eio(NbdServer::Nbdkit({"--filter=error", "memory", "1M", "error-pread=EIO", "error-pread-rate=1"}));
  auto r = ConnectOrFail(eio);
  ASSERT_TRUE(r);
  s = r->Read(data.data(), data.size(), 0);
  EXPECT_EQ(s.code(), ErrorCode::kIO) << s.ToString();
}

TEST(NbdTargetTest, UnreachableAndMalformedTargetsAreRefused) {
  std::unique_ptr<NbdTarget> t;
  Status s = NbdTarget::Connect("nbd+unix:///?socket=/nonexistent/thinsim.sock", 1, &t);
  EXPECT_EQ(s.code(), ErrorCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("/nonexistent/thinsim.sock"), std::string::npos) << s.message();
  s = NbdTarget::Connect("http://example.invalid/disk", 1, &t);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(t);
}

TEST(NbdTargetTest, ATargetThatGoesAwayFailsCallsCleanly) {
  NbdServer server(NbdServer::Nbdkit({"memory", "1M"}));
  auto t = ConnectOrFail(server);
  ASSERT_TRUE(t);
  server.Kill();
  std::vector<uint8_t> data(4096, 'g');
  Status s = t->Write(data.data(), data.size(), 0);
  EXPECT_EQ(s.code(), ErrorCode::kIO) << s.ToString();
  EXPECT_FALSE(t->Flush().ok());
}

}  // namespace
}  // namespace thinsim
