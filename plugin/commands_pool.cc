// The pool's own commands: query-pool, pool-grow, commit.
#include "plugin/command_args.h"
#include "plugin/command_table.h"
#include "plugin/control_commands.h"

namespace thinsim {

namespace {

Status QueryPool(const CommandCall& c) {
  THINSIM_RETURN_IF_ERROR(CommandArgs(c.args, {}).status());  // no arguments
  *c.result = ControlCommands::PoolJson(c.pool->QueryPool());
  return Status::OK();
}

Status PoolGrow(const CommandCall& c) {
  CommandArgs a(c.args, {"size"});
  THINSIM_RETURN_IF_ERROR(a.status());
  uint64_t size;
  THINSIM_RETURN_IF_ERROR(a.Size("size", &size));
  THINSIM_RETURN_IF_ERROR(c.pool->Grow(size));
  *c.result = ControlCommands::PoolJson(c.pool->QueryPool());
  return Status::OK();
}

Status Commit(const CommandCall& c) {
  THINSIM_RETURN_IF_ERROR(CommandArgs(c.args, {}).status());  // no arguments
  THINSIM_RETURN_IF_ERROR(c.pool->Flush());
  return EmptyReturn(c);
}

}  // namespace

void RegisterPoolCommands(CommandTable* table) {
  using Effect = CommandTable::Effect;
  table->Add("query-pool", QueryPool, Effect::kReadOnly);
  table->Add("pool-grow", PoolGrow, Effect::kChangesPool);
  table->Add("commit", Commit, Effect::kReadOnly);
}

}  // namespace thinsim
