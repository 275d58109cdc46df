// CommandArgs: typed reading of a control request's "arguments" object, for
// the command handlers (plugin/command_table.h). Unknown keys are refused so
// that a typo never silently does something else; every refusal is an
// Invalid status whose message names the argument.
//
// Thread safety: a CommandArgs reads a caller-owned json and is used by one
// thread. REQUIRES: `args` outlives the CommandArgs.
#ifndef THINSIM_PLUGIN_COMMAND_ARGS_H_
#define THINSIM_PLUGIN_COMMAND_ARGS_H_

#include <cstdint>
#include <initializer_list>
#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace thinsim {

class CommandArgs {
 public:
  // `allowed`: every key the command knows. status() tells whether `args`
  // holds only those.
  CommandArgs(const nlohmann::json& args, std::initializer_list<const char*> allowed);
  const Status& status() const { return status_; }

  // Each reader leaves *out alone when the key is absent; an absent key is an
  // error only when `required`.
  Status String(const char* key, std::string* out, bool required = true) const;
  // A size or offset: a JSON integer or a string with a suffix ("64K").
  Status Size(const char* key, uint64_t* out, bool required = true) const;
  // Optional.
  Status Bool(const char* key, bool* out) const;

  bool Has(const char* key) const { return args_.contains(key); }
  // REQUIRES: Has(key).
  const nlohmann::json& Get(const char* key) const { return args_.at(key); }

 private:
  static Status Missing(const char* key, bool required);

  const nlohmann::json& args_;
  Status status_;
};

}  // namespace thinsim

#endif  // THINSIM_PLUGIN_COMMAND_ARGS_H_
