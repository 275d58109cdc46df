// Fields: typed reads of one JSON object of a dump (docs/format.md, "Dump
// format"), for thinsim restore. Internal to thinsim_offline.
//
// Thread safety: a value type over a json it does not own.
#ifndef THINSIM_TOOLS_DUMP_FIELDS_H_
#define THINSIM_TOOLS_DUMP_FIELDS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace thinsim::offline::internal {

// Reads typed fields of one JSON object. The first problem is kept, naming
// `where`; later reads return zero values.
class Fields {
 public:
  Fields(const nlohmann::json& object, std::string where) : object_(object), where_(std::move(where)) {
    if (!object_.is_object()) Error("is not an object");
  }
  const Status& status() const { return status_; }

  const nlohmann::json* Get(const char* key) {
    if (!status_.ok()) return nullptr;
    auto it = object_.find(key);
    if (it == object_.end()) {
      Error(std::string("has no \"") + key + "\"");
      return nullptr;
    }
    return &*it;
  }
  uint64_t U64(const char* key, uint64_t max = UINT64_MAX) {
    const nlohmann::json* v = Get(key);
    if (v == nullptr) return 0;
    if (!v->is_number_unsigned() || v->get<uint64_t>() > max) {
      Error(std::string("\"") + key + "\" must be an integer 0.." + std::to_string(max));
      return 0;
    }
    return v->get<uint64_t>();
  }
  bool Bool(const char* key) {
    const nlohmann::json* v = Get(key);
    if (v == nullptr) return false;
    if (!v->is_boolean()) {
      Error(std::string("\"") + key + "\" must be true or false");
      return false;
    }
    return v->get<bool>();
  }
  std::string String(const char* key) {
    const nlohmann::json* v = Get(key);
    if (v == nullptr) return {};
    if (!v->is_string()) {
      Error(std::string("\"") + key + "\" must be a string");
      return {};
    }
    return v->get<std::string>();
  }
  const nlohmann::json& Array(const char* key) {
    static const nlohmann::json kEmpty = nlohmann::json::array();
    const nlohmann::json* v = Get(key);
    if (v == nullptr) return kEmpty;
    if (!v->is_array()) {
      Error(std::string("\"") + key + "\" must be a list");
      return kEmpty;
    }
    return *v;
  }
  // A name from `names` (index = value), or a number 0..255.
  uint8_t Enum(const char* key, const std::vector<std::string_view>& names) {
    const nlohmann::json* v = Get(key);
    if (v == nullptr) return 0;
    if (v->is_string()) {
      for (size_t i = 0; i < names.size(); ++i) {
        if (v->get<std::string>() == names[i]) return static_cast<uint8_t>(i);
      }
    } else if (v->is_number_unsigned() && v->get<uint64_t>() <= 255) {
      return static_cast<uint8_t>(v->get<uint64_t>());
    }
    Error(std::string("\"") + key + "\" has an unknown value " + v->dump());
    return 0;
  }
  void Error(const std::string& what) {
    if (status_.ok()) status_ = Status::Invalid(where_ + " " + what);
  }

 private:
  const nlohmann::json& object_;
  std::string where_;
  Status status_;
};

}  // namespace thinsim::offline::internal

#endif  // THINSIM_TOOLS_DUMP_FIELDS_H_
