// CommandTest: a fixture base for control command tests: run a command by
// name and arguments, expect it to succeed (its "return") or to be refused
// ("CLASS: desc"). The fixture owns its pool and ControlCommands (and
// destroys them in its own order); it only says where they are. Header-only,
// for plugin/*_test.cc.
#ifndef THINSIM_PLUGIN_TESTING_COMMAND_TEST_H_
#define THINSIM_PLUGIN_TESTING_COMMAND_TEST_H_

#include <cstdint>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/status.h"
#include "plugin/control_commands.h"
#include "pool/pool.h"

namespace thinsim {

class CommandTest : public ::testing::Test {
 protected:
  using json = nlohmann::json;

  // The commands to run. REQUIRES: set up before the first Run().
  virtual ControlCommands* commands() = 0;

  // An in-memory pool of `blocks` blocks of `block_size` bytes.
  static Status OpenMemoryPool(uint64_t blocks, uint64_t block_size, std::unique_ptr<Pool>* pool) {
    PoolOptions options;
    options.size = blocks * block_size;
    options.block_size = block_size;
    return Pool::Open(options, pool);
  }

  // The whole reply.
  json Run(const std::string& execute, const json& arguments = json::object()) {
    json request = {{"execute", execute}, {"arguments", arguments}};
    return json::parse(commands()->Execute(request.dump()).line);
  }
  // The "return" of a command that must succeed.
  json Ok(const std::string& execute, const json& arguments = json::object()) {
    json reply = Run(execute, arguments);
    EXPECT_TRUE(reply.contains("return")) << execute << " " << arguments.dump() << " -> " << reply.dump();
    return reply["return"];
  }
  // "CLASS: desc" of a command that must be refused.
  std::string Refused(const std::string& execute, const json& arguments) {
    json reply = Run(execute, arguments);
    EXPECT_TRUE(reply.contains("error")) << execute << " " << arguments.dump() << " -> " << reply.dump();
    return reply["error"].value("class", "") + ": " + reply["error"].value("desc", "");
  }
};

}  // namespace thinsim

#endif  // THINSIM_PLUGIN_TESTING_COMMAND_TEST_H_
