// Helpers for metadata/'s unit tests: temporary pool directories, small
// hand-built images and byte-level file surgery.
#ifndef THINSIM_METADATA_TEST_UTIL_H_
#define THINSIM_METADATA_TEST_UTIL_H_

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "metadata/image.h"
#include "metadata/records.h"

namespace thinsim::metadata::test {

// A fresh directory under /tmp, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    char name[] = "/tmp/thinsim-metadata-test-XXXXXX";
    if (mkdtemp(name) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = name;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void WriteBytes(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

inline void AppendBytes(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::app) << data;
}

// Flips one bit of the byte at `offset`.
inline void FlipBit(const std::string& path, size_t offset, int bit = 0) {
  std::string data = ReadBytes(path);
  data.at(offset) = static_cast<char>(data.at(offset) ^ (1 << bit));
  WriteBytes(path, data);
}

inline void Truncate(const std::string& path, size_t length) {
  if (truncate(path.c_str(), static_cast<off_t>(length)) != 0) throw std::runtime_error("truncate failed");
}

// An image of a pool of `nr_blocks` 64K blocks with no volumes.
inline Image MakePool(uint64_t nr_blocks = 1024) {
  Image image;
  image.block_size = 64 * 1024;
  image.nr_blocks = nr_blocks;
  return image;
}

// Adds a volume of `size` bytes; family defaults to the volume's own id.
inline VolumeImage& AddVolume(Image* image, uint64_t id, const std::string& name, uint64_t size = 64ull << 20,
                              uint64_t origin_id = 0, uint64_t family = 0) {
  VolumeImage& v = image->volumes[id];
  v.attrs.id = id;
  v.attrs.name = name;
  v.attrs.size = size;
  v.attrs.origin_id = origin_id;
  v.attrs.family = family != 0 ? family : id;
  return v;
}

// A chunk mapping entry -> dblock for each pair; `provisioned` entries are
// marked provisioned.
inline std::shared_ptr<const ChunkImage> MakeChunk(std::initializer_list<std::pair<uint32_t, uint32_t>> entries,
                                                   std::initializer_list<uint32_t> provisioned = {}) {
  auto c = std::make_shared<ChunkImage>();
  uint32_t blocks[64] = {};
  for (auto [entry, dblock] : entries) {
    c->mapped |= uint64_t{1} << entry;
    blocks[entry] = dblock;
  }
  for (uint64_t m = c->mapped; m != 0; m &= m - 1) c->dblocks.push_back(blocks[__builtin_ctzll(m)]);
  for (uint32_t entry : provisioned) c->provisioned |= uint64_t{1} << entry;
  return c;
}

// Sets the stored refcounts to what the mappings say.
inline void DeriveRefcounts(Image* image) { image->refcounts = image->DerivedRefcounts(); }

// The checkpoint encoding of an image: equal encodings mean equal images,
// chunk sharing included.
inline std::string Encoded(const Image& image) {
  std::string out;
  image.Encode(&out);
  AppendCommit(&out, image.commit_seq);
  return out;
}

// The checkpoint records (no commit) of a small pool with one volume.
inline std::string InitialCheckpoint() {
  Image image = MakePool(256);
  AddVolume(&image, 1, "vol");
  std::string out;
  image.Encode(&out);
  return out;
}

// A transaction mapping vblock `entry` of vol (id 1) chunk 0 to `dblock`,
// given the chunk's earlier entries 0..entry-1 mapped to 0..entry-1.
inline std::string MapTransaction(uint32_t entry) {
  ChunkRecord c{1, 0, 0, 0, 0, {}};
  std::vector<std::pair<uint32_t, uint32_t>> counts;
  for (uint32_t i = 0; i <= entry; ++i) {
    c.mapped |= uint64_t{1} << i;
    c.dblocks.push_back(i);
  }
  std::string records;
  AppendChunk(&records, c);
  AppendRefcounts(&records, {{entry, 1}});
  return records;
}

}  // namespace thinsim::metadata::test

#endif  // THINSIM_METADATA_TEST_UTIL_H_
