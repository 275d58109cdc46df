// MirrorFixture: what the mirror layer's tests share - an in-memory pool
// with a 4 MiB volume "v" open for writing, an nbdkit target (Serve), and
// the bytes of both sides to compare. Test-only code.
#ifndef THINSIM_MIRROR_TESTING_MIRROR_FIXTURE_H_
#define THINSIM_MIRROR_TESTING_MIRROR_FIXTURE_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "base/status_test_util.h"
#include "mirror/nbd_target.h"
#include "mirror/testing/nbd_server.h"
#include "pool/pool.h"

namespace thinsim::testing {

class MirrorFixture : public ::testing::Test {
 protected:
  static constexpr uint32_t kBS = 4096;
  static constexpr uint64_t kSize = 4 << 20;

  void SetUp() override {
    PoolOptions o;
    o.block_size = kBS;
    o.size = 64 << 20;
    ASSERT_OK(Pool::Open(o, &pool_));
    ASSERT_OK(pool_->CreateVolume("v", kSize, std::nullopt));
    ASSERT_OK(pool_->OpenVolume("v", true, &v_));
  }
  void TearDown() override {
    if (v_) pool_->CloseVolume(v_, true);
  }

  // Starts an nbdkit target serving `plugin_args`.
  const NbdServer& Serve(const std::vector<std::string>& plugin_args) {
    server_ = std::make_unique<NbdServer>(NbdServer::Nbdkit(plugin_args));
    EXPECT_TRUE(server_->ok()) << "nbdkit did not start";
    return *server_;
  }
  void Write(uint64_t off, uint64_t len, uint8_t byte) {
    std::vector<uint8_t> b(len, byte);
    ASSERT_OK(pool_->Write(*v_, b.data(), len, off));
  }
  std::vector<uint8_t> Source() {
    std::vector<uint8_t> b(kSize);
    EXPECT_OK(pool_->Read(*v_, b.data(), kSize, 0));
    return b;
  }
  // Reads the target through a connection of its own.
  std::vector<uint8_t> Target() {
    std::unique_ptr<NbdTarget> t;
    EXPECT_OK(NbdTarget::Connect(server_->Uri(), 1, &t));
    std::vector<uint8_t> b(kSize);
    if (t) EXPECT_OK(t->Read(b.data(), kSize, 0));
    return b;
  }

  // Declared first: destroyed last, after every connection to it closed.
  std::unique_ptr<NbdServer> server_;
  std::unique_ptr<Pool> pool_;
  std::shared_ptr<Volume> v_;
};

}  // namespace thinsim::testing

#endif  // THINSIM_MIRROR_TESTING_MIRROR_FIXTURE_H_
