// Event subscription: events-subscribe. The events themselves are sent by
// ControlServer; a handler only marks the client as a subscriber.
#include "plugin/command_args.h"
#include "plugin/command_table.h"

namespace thinsim {

namespace {

Status EventsSubscribe(const CommandCall& c) {
  THINSIM_RETURN_IF_ERROR(CommandArgs(c.args, {}).status());  // no arguments
  *c.subscribe = true;
  return EmptyReturn(c);
}

}  // namespace

void RegisterEventCommands(CommandTable* table) {
  table->Add("events-subscribe", EventsSubscribe, CommandTable::Effect::kReadOnly);
}

}  // namespace thinsim
