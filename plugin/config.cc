#include "plugin/config.h"

#include <cstdlib>
#include <set>

#include "base/sizes.h"

namespace thinsim {

const char kConfigHelp[] =
    "pool=DIR                 Persistent pool directory (created if absent;\n"
    "                         reopened at its last commit). Absent: an\n"
    "                         in-memory pool.\n"
    "size=SIZE                Data capacity of the pool (required for a new\n"
    "                         pool; larger than an existing pool grows it).\n"
    "block-size=SIZE          Data block size, a power of two 4K..1G (default 64K).\n"
    "volume=NAME:SIZE[:STRAT] Create this volume at start (repeatable).\n"
    "reserve=STRATEGY         Default strategy for new volumes: none (default),\n"
    "                         provision, volume or full (docs/reservation.md).\n"
    "when-full=error|queue    A write that cannot get a block fails at once with\n"
    "                         ENOSPC (error, default) or waits for space (queue).\n"
    "no-space-timeout=SECONDS In queue mode, how long a write waits (0 = forever;\n"
    "                         default 60).\n"
    "low-water=PERCENT        Free-space threshold of the LOW_WATER event\n"
    "                         (default 10).\n"
    "control=PATH             Control socket (default DIR/control.sock, or\n"
    "                         $TMPDIR/thinsim-PID.sock for memory pools).\n"
    "commit-interval=SECONDS  Periodic metadata commit when nothing flushes\n"
    "                         (default 1; 0 = only on flush, FUA and control\n"
    "                         commands).\n"
    "extents=allocation|space What block status reports for mapped blocks:\n"
    "                         data (allocation, default), or a hole where a\n"
    "                         write could still fail for lack of space (space).\n"
    "volatile-cache=on|off    Keep unflushed writes droppable by the power-cut\n"
    "                         control command (default off).";

namespace {

Status ParseUnsigned(std::string_view key, std::string_view value, uint32_t max, uint32_t* out) {
  uint64_t n = 0;
  if (value.empty() || value.size() > 10) {
    return Status::Invalid(std::string(key) + ": expected a number, got '" + std::string(value) + "'");
  }
  for (char c : value) {
    if (c < '0' || c > '9') {
      return Status::Invalid(std::string(key) + ": expected a number, got '" + std::string(value) + "'");
    }
    n = n * 10 + (c - '0');
  }
  if (n > max) {
    return Status::Invalid(std::string(key) + ": " + std::string(value) + " is more than " +
                           std::to_string(max));
  }
  *out = static_cast<uint32_t>(n);
  return Status::OK();
}

Status ParseStrategyArg(std::string_view key, std::string_view value, Strategy* out) {
  if (!ParseStrategy(value, out)) {
    return Status::Invalid(std::string(key) + ": unknown strategy '" + std::string(value) +
                           "' (use none, provision, volume or full)");
  }
  return Status::OK();
}

// NAME:SIZE[:STRATEGY]
Status ParseVolume(std::string_view value, VolumeSpec* out) {
  size_t colon = value.find(':');
  if (colon == std::string_view::npos) {
    return Status::Invalid("volume: expected NAME:SIZE[:STRATEGY], got '" + std::string(value) + "'");
  }
  out->name = std::string(value.substr(0, colon));
  THINSIM_RETURN_IF_ERROR(ValidateVolumeName(out->name));
  std::string_view rest = value.substr(colon + 1);
  size_t colon2 = rest.find(':');
  THINSIM_RETURN_IF_ERROR(ParseSize(rest.substr(0, colon2), "volume " + out->name + " size", &out->size));
  if (colon2 != std::string_view::npos) {
    Strategy s;
    THINSIM_RETURN_IF_ERROR(ParseStrategyArg("volume " + out->name, rest.substr(colon2 + 1), &s));
    out->strategy = s;
  }
  return Status::OK();
}

}  // namespace

Status PluginConfig::Set(std::string_view key, std::string_view value) {
  if (key == "pool") {
    if (value.empty()) return Status::Invalid("pool: empty directory name");
    pool.dir = std::string(value);
  } else if (key == "size") {
    THINSIM_RETURN_IF_ERROR(ParseSize(value, "size", &pool.size));
    size_given = true;
  } else if (key == "block-size") {
    uint64_t bs;
    THINSIM_RETURN_IF_ERROR(ParseSize(value, "block-size", &bs));
    if (bs < kMinBlockSize || bs > kMaxBlockSize || (bs & (bs - 1)) != 0) {
      return Status::Invalid("block-size: must be a power of two from 4K to 1G, got '" +
                             std::string(value) + "'");
    }
    pool.block_size = static_cast<uint32_t>(bs);
  } else if (key == "volume") {
    VolumeSpec spec;
    THINSIM_RETURN_IF_ERROR(ParseVolume(value, &spec));
    volumes.push_back(std::move(spec));
  } else if (key == "reserve") {
    THINSIM_RETURN_IF_ERROR(ParseStrategyArg("reserve", value, &pool.default_strategy));
  } else if (key == "when-full") {
    if (value == "error") {
      pool.when_full = WhenFull::kError;
    } else if (value == "queue") {
      pool.when_full = WhenFull::kQueue;
    } else {
      return Status::Invalid("when-full: expected error or queue, got '" + std::string(value) + "'");
    }
  } else if (key == "no-space-timeout") {
    THINSIM_RETURN_IF_ERROR(ParseUnsigned(key, value, 365 * 24 * 3600, &pool.no_space_timeout_seconds));
  } else if (key == "low-water") {
    std::string_view v = value;
    if (!v.empty() && v.back() == '%') v.remove_suffix(1);
    THINSIM_RETURN_IF_ERROR(ParseUnsigned(key, v, 100, &pool.low_water_percent));
  } else if (key == "control") {
    if (value.empty()) return Status::Invalid("control: empty path");
    control_path = std::string(value);
  } else if (key == "commit-interval") {
    THINSIM_RETURN_IF_ERROR(ParseUnsigned(key, value, 24 * 3600, &commit_interval_seconds));
  } else if (key == "extents") {
    if (value == "allocation") {
      extents = ExtentsMode::kAllocation;
    } else if (value == "space") {
      extents = ExtentsMode::kSpace;
    } else {
      return Status::Invalid("extents: expected allocation or space, got '" + std::string(value) + "'");
    }
  } else if (key == "volatile-cache") {
    if (value == "on") {
      volatile_cache = true;
    } else if (value == "off") {
      volatile_cache = false;
    } else {
      return Status::Invalid("volatile-cache: expected on or off, got '" + std::string(value) + "'");
    }
  } else {
    return Status::Invalid("unknown parameter '" + std::string(key) +
                           "' (see nbdkit thinsim --help)");
  }
  return Status::OK();
}

Status PluginConfig::Complete() const {
  // An existing pool directory knows its size; Pool::Open checks that.
  if (!size_given && pool.dir.empty()) {
    return Status::Invalid("size: you must give size=SIZE, the pool's data capacity");
  }
  if (size_given && pool.size < pool.block_size) {
    return Status::Invalid("size: " + FormatSize(pool.size) + " is smaller than one block (" +
                           FormatSize(pool.block_size) + ")");
  }
  std::set<std::string> names;
  for (const VolumeSpec& v : volumes) {
    if (!names.insert(v.name).second) {
      return Status::Invalid("volume: '" + v.name + "' is given twice");
    }
  }
  return Status::OK();
}

std::string DefaultControlPath(const PluginConfig& config, int pid) {
  if (!config.pool.dir.empty()) return config.pool.dir + "/control.sock";
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  return dir + "/thinsim-" + std::to_string(pid) + ".sock";
}

}  // namespace thinsim
