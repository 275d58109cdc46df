#include "plugin/command_table.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace thinsim {

namespace {

// Every domain, in no particular order: names are looked up, not scanned.
constexpr void (*kDomains[])(CommandTable*) = {
    RegisterPoolCommands,
    RegisterVolumeCommands,
    RegisterEventCommands,
    RegisterFaultCommands,
    RegisterBitmapCommands,
    RegisterTransactionCommands,
    RegisterJobCommands,
    RegisterMirrorCommands,
};

}  // namespace

void CommandTable::Add(std::string name, CommandHandler handler, Effect effect) {
  auto [it, added] = entries_.emplace(std::move(name), Entry{handler, effect});
  if (!added) {
    std::fprintf(stderr, "thinsim: control command '%s' registered twice\n", it->first.c_str());
    std::abort();
  }
}

const CommandTable::Entry* CommandTable::Find(std::string_view name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

const CommandTable& CommandTable::Builtin() {
  static const CommandTable* const table = [] {
    auto* t = new CommandTable;  // never destroyed: in use until exit
    for (auto* register_domain : kDomains) register_domain(t);
    return t;
  }();
  return *table;
}

}  // namespace thinsim
