// CRC-32C (Castagnoli), the checksum of every metadata record and of the
// superblock, as in dm-thin's and leveldb's formats.
#ifndef THINSIM_BASE_CRC32C_H_
#define THINSIM_BASE_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace thinsim {

// Extends `crc` (0 to start) over n bytes.
uint32_t Crc32c(uint32_t crc, const void* data, size_t n);

}  // namespace thinsim

#endif  // THINSIM_BASE_CRC32C_H_
