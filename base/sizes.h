// Parsing and printing of sizes and names shared by the plugin, the control
// server and the tests.
#ifndef THINSIM_BASE_SIZES_H_
#define THINSIM_BASE_SIZES_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace thinsim {

// Parses "65536", "64K", "1G", "1.5G" is rejected. Suffixes are powers of
// 1024 as in nbdkit_parse_size: b (1), s (512), K, M, G, T, P, E, in either
// case. `what` names the value in the error message ("size", "block-size").
Status ParseSize(std::string_view text, std::string_view what, uint64_t* out);

// 65536 -> "64K", 1610612736 -> "1.5G", 1000 -> "1000".
std::string FormatSize(uint64_t bytes);

// A volume name is 1-64 characters of [A-Za-z0-9._-], not starting with '.'
// (".", ".." and hidden-file names would be path components in DIR and in
// NBD URIs) or '-' (it would read as an option on a command line).
// SPEC section 3. Every path that creates a name (the volume= parameter,
// volume-create, snapshot-create) checks it here.
Status ValidateVolumeName(std::string_view name);

// The same rule for another kind of name; `what` starts the message
// ("bitmap" -> "bitmap name must be 1-64 characters ..."). Bitmap names
// (SPEC section 12) follow it too.
Status ValidateName(std::string_view name, std::string_view what);

// Dirty bitmap granularities (SPEC section 12): a power of two from 512 B
// to 64 MiB, in the live bitmaps, the metadata records and dumps alike.
constexpr uint64_t kMinBitmapGranularity = 512;
constexpr uint64_t kMaxBitmapGranularity = uint64_t{64} << 20;
// Invalid ("bitmap granularity must be a power of two from 512 to 64M, got
// N") unless `granularity` is one.
Status ValidateBitmapGranularity(uint64_t granularity);
// How many granules cover `size` bytes (the last one may be partial).
// REQUIRES: granularity > 0.
inline uint64_t GranuleCount(uint64_t size, uint64_t granularity) {
  return size / granularity + (size % granularity != 0);
}

}  // namespace thinsim

#endif  // THINSIM_BASE_SIZES_H_
