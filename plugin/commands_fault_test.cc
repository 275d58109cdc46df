// The fault-* and power-cut commands (SPEC section 15) through
// ControlCommands: over a pool=DIR pool's FaultEnv they add, list and remove
// rules, refuse bad input changing nothing, and power-cut is refused without
// a volatile cache; an in-memory pool refuses them all as Unsupported.
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "base/status_test_util.h"
#include "env/fault_env.h"
#include "plugin/control_commands.h"

namespace thinsim {
namespace {

using nlohmann::json;

class FaultCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thinsim-faultcmd-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    env_ = std::make_unique<FaultEnv>(Env::Default(), FaultEnv::Options{});
    PoolOptions options;
    options.size = 8 << 20;
    options.block_size = 64 << 10;
    options.dir = dir_ + "/pool";
    options.env = env_.get();
    ASSERT_OK(Pool::Open(options, &pool_));
    commands_ = std::make_unique<ControlCommands>(pool_.get(), env_.get());
  }
  void TearDown() override {
    commands_.reset();
    pool_.reset();
    env_.reset();
    std::filesystem::remove_all(dir_);
  }

  json Run(ControlCommands* commands, const std::string& line) {
    return json::parse(commands->Execute(line).line);
  }
  json Run(const std::string& line) { return Run(commands_.get(), line); }

  std::string dir_;
  std::unique_ptr<FaultEnv> env_;
  std::unique_ptr<Pool> pool_;
  std::unique_ptr<ControlCommands> commands_;
};

TEST_F(FaultCommandsTest, AddListRemove) {
  json added = Run(R"({"execute":"fault-add","arguments":{"layer":"data","op":"write",)"
                   R"("errno":"EIO","offset":"1M","length":"64K","count":3}})");
  ASSERT_TRUE(added["return"]["id"].is_number_unsigned()) << added.dump();
  const uint64_t id = added["return"]["id"];
  json list = Run(R"({"execute":"query-faults"})")["return"];
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["id"], id);
  EXPECT_EQ(list[0]["layer"], "data");
  EXPECT_EQ(list[0]["op"], "write");
  EXPECT_EQ(list[0]["errno"], "EIO");
  EXPECT_EQ(list[0]["offset"], 1 << 20);
  EXPECT_EQ(list[0]["length"], 64 << 10);
  EXPECT_EQ(list[0]["count"], 3);
  EXPECT_EQ(list[0]["fired"], 0);
  json removed = Run(R"({"execute":"fault-remove","arguments":{"id":)" + std::to_string(id) + "}}");
  EXPECT_TRUE(removed.contains("return")) << removed.dump();
  EXPECT_TRUE(env_->Faults().empty());
  json again = Run(R"({"execute":"fault-remove","arguments":{"id":)" + std::to_string(id) + "}}");
  EXPECT_EQ(again["error"]["class"], "NotFound") << again.dump();
}

TEST_F(FaultCommandsTest, BadInputChangesNothing) {
  for (const char* args : {
           R"({"layer":"disk","op":"write","errno":"EIO"})",
           R"({"layer":"data","op":"scribble","errno":"EIO"})",
           R"({"layer":"data","op":"write","errno":"EWHAT"})",
           R"({"layer":"data","op":"write"})",
           R"({"layer":"data","op":"write","errno":"EIO","length":"12Q"})",
           R"({"layer":"data","op":"write","errno":"EIO","offset":"1M"})",
           R"({"layer":"data","op":"write","errno":"EIO","probability":1.5})",
           R"({"layer":"data","op":"write","errno":"EIO","count":-1})",
           R"({"layer":"data","op":"write","errno":"EIO","bogus":1})",
       }) {
    json reply = Run(std::string(R"({"execute":"fault-add","arguments":)") + args + "}");
    EXPECT_EQ(reply["error"]["class"], "Invalid") << args << " -> " << reply.dump();
  }
  EXPECT_TRUE(env_->Faults().empty());
}

TEST_F(FaultCommandsTest, PowerCutNeedsVolatileCache) {
  json reply = Run(R"({"execute":"power-cut"})");
  EXPECT_EQ(reply["error"]["class"], "Unsupported") << reply.dump();
  EXPECT_NE(reply["error"]["desc"].get<std::string>().find("volatile-cache=on"), std::string::npos);
  EXPECT_OK(pool_->Commit());  // the pool still works
}

TEST_F(FaultCommandsTest, InMemoryPoolRefusesAsUnsupported) {
  PoolOptions options;
  options.size = 8 << 20;
  std::unique_ptr<Pool> memory;
  ASSERT_OK(Pool::Open(options, &memory));
  ControlCommands commands(memory.get());
  for (const char* line : {
           R"({"execute":"fault-add","arguments":{"layer":"data","op":"write","errno":"EIO"}})",
           R"({"execute":"fault-remove","arguments":{"id":1}})",
           R"({"execute":"query-faults"})",
           R"({"execute":"power-cut"})",
       }) {
    json reply = Run(&commands, line);
    EXPECT_EQ(reply["error"]["class"], "Unsupported") << line << " -> " << reply.dump();
  }
}

}  // namespace
}  // namespace thinsim
