#include "plugin/command_args.h"

#include "base/sizes.h"

namespace thinsim {

using nlohmann::json;

CommandArgs::CommandArgs(const json& args, std::initializer_list<const char*> allowed) : args_(args) {
  for (const auto& [key, value] : args_.items()) {
    bool known = false;
    for (const char* a : allowed) known = known || key == a;
    if (!known && status_.ok()) status_ = Status::Invalid("unknown argument '" + key + "'");
  }
}

Status CommandArgs::String(const char* key, std::string* out, bool required) const {
  auto it = args_.find(key);
  if (it == args_.end()) return Missing(key, required);
  if (!it->is_string()) return Status::Invalid(std::string("argument '") + key + "' must be a string");
  *out = it->get<std::string>();
  return Status::OK();
}

Status CommandArgs::Size(const char* key, uint64_t* out, bool required) const {
  auto it = args_.find(key);
  if (it == args_.end()) return Missing(key, required);
  if (it->is_number_unsigned()) {
    *out = it->get<uint64_t>();
    return Status::OK();
  }
  if (it->is_string()) return ParseSize(it->get<std::string>(), key, out);
  return Status::Invalid(std::string("argument '") + key +
                         "' must be a non-negative integer or a size string like \"64K\"");
}

Status CommandArgs::Bool(const char* key, bool* out) const {
  auto it = args_.find(key);
  if (it == args_.end()) return Status::OK();
  if (!it->is_boolean()) return Status::Invalid(std::string("argument '") + key + "' must be true or false");
  *out = it->get<bool>();
  return Status::OK();
}

Status CommandArgs::Missing(const char* key, bool required) {
  if (!required) return Status::OK();
  return Status::Invalid(std::string("missing argument '") + key + "'");
}

}  // namespace thinsim
