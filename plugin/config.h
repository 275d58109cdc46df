// PluginConfig: the plugin's key=value parameters (SPEC section 2), parsed
// and checked without nbdkit so that tests can drive them directly.
//
// Thread safety: a value type; used only during nbdkit's config phase.
#ifndef THINSIM_PLUGIN_CONFIG_H_
#define THINSIM_PLUGIN_CONFIG_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pool/pool.h"
#include "base/status.h"

namespace thinsim {

struct VolumeSpec {
  std::string name;
  uint64_t size = 0;
  std::optional<Strategy> strategy;
};

struct PluginConfig {
  PoolOptions pool;
  bool size_given = false;
  std::vector<VolumeSpec> volumes;
  std::string control_path;  // empty: the default (see DefaultControlPath)
  uint32_t commit_interval_seconds = 1;
  ExtentsMode extents = ExtentsMode::kAllocation;
  // volatile-cache=on: a pool=DIR pool keeps unflushed writes droppable by
  // power-cut (SPEC section 15).
  bool volatile_cache = false;

  // Applies one key=value. The error message names the key.
  Status Set(std::string_view key, std::string_view value);
  // Checks what needs all keys (required size, volume names unique).
  Status Complete() const;
};

// `DIR/control.sock` for a pool directory, else `$TMPDIR/thinsim-PID.sock`.
std::string DefaultControlPath(const PluginConfig& config, int pid);

// Text for `nbdkit thinsim --help`.
extern const char kConfigHelp[];

}  // namespace thinsim

#endif  // THINSIM_PLUGIN_CONFIG_H_
