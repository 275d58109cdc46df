// Request (request.h): operation names.
#include "workload/request.h"

#include <array>
#include <utility>

namespace thinsim::workload {
namespace {

constexpr std::array<std::pair<Op, std::string_view>, 10> kNames = {{
    {Op::kRead, "read"},
    {Op::kWrite, "write"},
    {Op::kZero, "zero"},
    {Op::kTrim, "trim"},
    {Op::kFlush, "flush"},
    {Op::kProvision, "provision"},
    {Op::kCreateVolume, "create"},
    {Op::kSnapshot, "snapshot"},
    {Op::kDeleteVolume, "delete"},
    {Op::kResize, "resize"},
}};

}  // namespace

std::string_view OpName(Op op) {
  for (const auto& [o, name] : kNames) {
    if (o == op) return name;
  }
  return "?";
}

Status ParseOp(std::string_view name, Op* out) {
  for (const auto& [o, n] : kNames) {
    if (n == name) {
      *out = o;
      return Status::OK();
    }
  }
  return Status::Invalid("unknown request op '" + std::string(name) +
                         "': read, write, zero, trim, flush, provision, create, snapshot, delete or resize");
}

}  // namespace thinsim::workload
