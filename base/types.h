// Basic vocabulary of the engine.
//
// A *vblock* is a block of a volume's virtual address space; a *dblock* is a
// data block of the pool. Both are `block_size` bytes. A volume maps vblocks
// to dblocks; an unmapped vblock reads as zeroes.
#ifndef THINSIM_BASE_TYPES_H_
#define THINSIM_BASE_TYPES_H_

#include <cstdint>
#include <string_view>

namespace thinsim {

using vblock_t = uint64_t;
// 32 bits keep a mapping entry at 4 bytes; a pool holds at most 2^32-2
// blocks (256 TiB at the default 64K block size).
using dblock_t = uint32_t;
inline constexpr dblock_t kNoDblock = UINT32_MAX;
inline constexpr uint64_t kMaxPoolBlocks = UINT32_MAX - 1ull;

inline constexpr uint32_t kMinBlockSize = 4096;
inline constexpr uint32_t kMaxBlockSize = 1u << 30;
inline constexpr uint32_t kDefaultBlockSize = 64 * 1024;
// Volume sizes are whole 512-byte sectors, as block devices are.
inline constexpr uint64_t kSectorSize = 512;
inline constexpr uint64_t kMaxVolumeSize = 1ull << 62;

// Reservation strategy of a volume (SPEC section 5).
enum class Strategy { kNone, kProvision, kVolume, kFull };

std::string_view StrategyName(Strategy s);
// Returns false when `name` is not one of none|provision|volume|full.
bool ParseStrategy(std::string_view name, Strategy* out);

// What a write that cannot get a block does (SPEC section 6).
enum class WhenFull { kError, kQueue };

enum class PoolMode { kWrite, kOutOfDataSpace, kReadOnly, kFail };
std::string_view PoolModeName(PoolMode m);

}  // namespace thinsim

#endif  // THINSIM_BASE_TYPES_H_
