// Fault injection and power cuts (SPEC section 15): fault-add, fault-remove,
// query-faults, power-cut. They act on the FaultEnv under a pool=DIR pool's
// files (CommandCall::faults); an in-memory pool has no files, so they are
// refused there with Unsupported rather than silently doing nothing.
#include <cerrno>
#include <cmath>
#include <string>

#include "plugin/command_args.h"
#include "plugin/command_table.h"

namespace thinsim {

namespace {

// The errno names fault-add accepts, and the values FaultEnv fails with.
struct ErrnoEntry {
  const char* name;
  int value;
};
constexpr ErrnoEntry kErrnos[] = {
    {"EIO", EIO},       {"ENOSPC", ENOSPC},   {"EDQUOT", EDQUOT}, {"EROFS", EROFS},
    {"EOPNOTSUPP", EOPNOTSUPP}, {"EPERM", EPERM}, {"ENOMEM", ENOMEM},
};

const char* ErrnoText(int value) {
  for (const ErrnoEntry& e : kErrnos) {
    if (e.value == value) return e.name;
  }
  return "EIO";
}

Status NeedFaults(const CommandCall& c) {
  if (c.faults != nullptr) return Status::OK();
  return Status::Unsupported(
      "fault injection needs a persistent pool (pool=DIR): an in-memory pool has no files to fail");
}

Status ReadErrno(const CommandArgs& a, int* out) {
  std::string name;
  THINSIM_RETURN_IF_ERROR(a.String("errno", &name));
  for (const ErrnoEntry& e : kErrnos) {
    if (name == e.name) {
      *out = e.value;
      return Status::OK();
    }
  }
  return Status::Invalid("errno: unknown '" + name + "' (use EIO, ENOSPC, EDQUOT, EROFS, EOPNOTSUPP, EPERM or ENOMEM)");
}

Status ReadProbability(const CommandArgs& a, double* out) {
  if (!a.Has("probability")) return Status::OK();
  const nlohmann::json& v = a.Get("probability");
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0 || v.get<double>() > 1) {
    return Status::Invalid("probability: expected a number from 0 to 1");
  }
  *out = v.get<double>();
  return Status::OK();
}

Status ReadCount(const CommandArgs& a, uint64_t* out) {
  if (!a.Has("count")) return Status::OK();
  const nlohmann::json& v = a.Get("count");
  if (!v.is_number_unsigned()) return Status::Invalid("count: expected a non-negative integer");
  *out = v.get<uint64_t>();
  return Status::OK();
}

// Every argument is checked before the rule is added: bad input changes
// nothing.
Status ReadRule(const CommandArgs& a, FaultRule* rule) {
  std::string layer, op;
  THINSIM_RETURN_IF_ERROR(a.String("layer", &layer));
  if (!ParseFaultLayer(layer, &rule->layer)) {
    return Status::Invalid("layer: unknown '" + layer + "' (use data or metadata)");
  }
  THINSIM_RETURN_IF_ERROR(a.String("op", &op));
  if (!ParseFaultOp(op, &rule->op)) {
    return Status::Invalid("op: unknown '" + op + "' (use read, write, flush, discard, sync or any)");
  }
  THINSIM_RETURN_IF_ERROR(ReadErrno(a, &rule->error));
  THINSIM_RETURN_IF_ERROR(a.Size("offset", &rule->offset, false));
  THINSIM_RETURN_IF_ERROR(a.Size("length", &rule->length, false));
  if (rule->length == 0 && rule->offset != 0) {
    return Status::Invalid("offset: needs a length (a rule without one covers every byte)");
  }
  if (rule->offset + rule->length < rule->offset) return Status::Invalid("length: range overflows");
  THINSIM_RETURN_IF_ERROR(ReadProbability(a, &rule->probability));
  return ReadCount(a, &rule->count);
}

Status FaultAdd(const CommandCall& c) {
  CommandArgs a(c.args, {"layer", "op", "errno", "offset", "length", "probability", "count"});
  THINSIM_RETURN_IF_ERROR(a.status());
  FaultRule rule;
  THINSIM_RETURN_IF_ERROR(ReadRule(a, &rule));
  THINSIM_RETURN_IF_ERROR(NeedFaults(c));
  *c.result = {{"id", c.faults->AddFault(rule)}};
  return Status::OK();
}

Status FaultRemove(const CommandCall& c) {
  CommandArgs a(c.args, {"id"});
  THINSIM_RETURN_IF_ERROR(a.status());
  if (!a.Has("id") || !a.Get("id").is_number_unsigned()) {
    return Status::Invalid("id: expected a fault id (a non-negative integer)");
  }
  THINSIM_RETURN_IF_ERROR(NeedFaults(c));
  const uint64_t id = a.Get("id").get<uint64_t>();
  if (!c.faults->RemoveFault(id)) return Status::NotFound("no fault " + std::to_string(id));
  return EmptyReturn(c);
}

Status QueryFaults(const CommandCall& c) {
  THINSIM_RETURN_IF_ERROR(CommandArgs(c.args, {}).status());  // no arguments
  THINSIM_RETURN_IF_ERROR(NeedFaults(c));
  nlohmann::json list = nlohmann::json::array();
  for (const FaultInfo& f : c.faults->Faults()) {
    list.push_back({{"id", f.id},
                    {"layer", FaultLayerName(f.rule.layer)},
                    {"op", FaultOpName(f.rule.op)},
                    {"errno", ErrnoText(f.rule.error)},
                    {"offset", f.rule.offset},
                    {"length", f.rule.length},
                    {"probability", f.rule.probability},
                    {"count", f.rule.count},
                    {"fired", f.fired}});
  }
  *c.result = std::move(list);
  return Status::OK();
}

// Drops what no FLUSH made durable, then fails the pool: its in-core state
// is now ahead of its files, so it must serve nothing until a restart
// reopens the durable state. Every request gets EIO from then on.
Status PowerCut(const CommandCall& c) {
  THINSIM_RETURN_IF_ERROR(CommandArgs(c.args, {}).status());  // no arguments
  if (c.faults == nullptr || !c.faults->volatile_cache()) {
    return Status::Unsupported("power-cut needs a pool=DIR pool started with volatile-cache=on");
  }
  THINSIM_RETURN_IF_ERROR(c.faults->PowerCut());
  c.pool->Fail("power cut: restart to reopen the durable state");
  return EmptyReturn(c);
}

}  // namespace

void RegisterFaultCommands(CommandTable* table) {
  using Effect = CommandTable::Effect;
  // None changes the pool's metadata: the control layer must not commit
  // after them (after power-cut a commit is exactly what must fail).
  table->Add("fault-add", FaultAdd, Effect::kReadOnly);
  table->Add("fault-remove", FaultRemove, Effect::kReadOnly);
  table->Add("query-faults", QueryFaults, Effect::kReadOnly);
  table->Add("power-cut", PowerCut, Effect::kReadOnly);
}

}  // namespace thinsim
