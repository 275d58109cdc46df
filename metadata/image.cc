#include "metadata/image.h"

#include <bit>
#include <set>
#include <unordered_map>

#include "base/encoding.h"

namespace thinsim::metadata {

namespace {

Status Bad(const std::string& what) { return Status::Corruption("metadata record: " + what); }

VolumeRecord ReadVolume(Reader* r) {
  VolumeRecord v;
  v.id = r->U64();
  v.name = r->String();
  v.size = r->U64();
  v.strategy = r->U8();
  v.read_only = r->U8() != 0;
  v.origin_id = r->U64();
  v.family = r->U64();
  v.pinned = r->U8() != 0;
  return v;
}

}  // namespace

Status Image::Apply(std::string_view payload) {
  Reader r(payload);
  auto type = static_cast<RecordType>(r.U8());
  switch (type) {
    case RecordType::kPool:
      block_size = r.U32();
      nr_blocks = r.U64();
      mode = r.U8();
      break;
    case RecordType::kVolume: {
      VolumeRecord v = ReadVolume(&r);
      if (r.failed()) return Bad("volume record cut short");
      auto it = volumes.find(v.id);
      if (it == volumes.end()) {
        volumes[v.id].attrs = v;
      } else {
        it->second.attrs = v;
        // A shrink drops the chunks past the end.
        // Rounded up without v.size + block_size, which wraps for a huge size.
        uint64_t vblocks = block_size ? v.size / block_size + (v.size % block_size != 0) : 0;
        uint64_t nr_chunks = (vblocks + 63) / 64;
        it->second.chunks.erase(it->second.chunks.lower_bound(nr_chunks), it->second.chunks.end());
      }
      break;
    }
    case RecordType::kSnapshot: {
      SnapshotRecord s;
      s.id = r.U64();
      s.origin_id = r.U64();
      s.name = r.String();
      s.read_only = r.U8() != 0;
      if (r.failed()) return Bad("snapshot record cut short");
      auto origin = volumes.find(s.origin_id);
      if (origin == volumes.end()) {
        return Bad("snapshot " + s.name + " of unknown volume id " + std::to_string(s.origin_id));
      }
      VolumeImage snap = origin->second;  // shares the chunk objects
      snap.attrs.id = s.id;
      snap.attrs.name = s.name;
      snap.attrs.read_only = s.read_only;
      snap.attrs.origin_id = s.origin_id;
      snap.attrs.pinned = false;
      volumes[s.id] = std::move(snap);
      break;
    }
    case RecordType::kDelete: {
      uint64_t id = r.U64();
      if (r.failed() || volumes.erase(id) == 0) return Bad("delete of unknown volume id " + std::to_string(id));
      // A deleted origin leaves its snapshots without one.
      for (auto& [vid, v] : volumes) {
        if (v.attrs.origin_id == id) v.attrs.origin_id = 0;
      }
      break;
    }
    case RecordType::kChunk: {
      uint64_t vid = r.U64();
      uint64_t index = r.U64();
      uint64_t chunk_id = r.U64();
      auto c = std::make_shared<ChunkImage>();
      c->mapped = r.U64();
      c->provisioned = r.U64();
      int n = std::popcount(c->mapped);
      for (int i = 0; i < n; ++i) c->dblocks.push_back(r.U32());
      if (r.failed() || !r.done()) return Bad("chunk record has a bad length");
      auto it = volumes.find(vid);
      if (it == volumes.end()) return Bad("chunk of unknown volume id " + std::to_string(vid));
      if ((c->provisioned & ~c->mapped) != 0) return Bad("chunk has provisioned vblocks that are not mapped");
      if (chunk_id != 0) checkpoint_chunks[chunk_id] = c;
      if (c->mapped == 0) {
        it->second.chunks.erase(index);
      } else {
        it->second.chunks[index] = std::move(c);
      }
      break;
    }
    case RecordType::kShareChunk: {
      uint64_t vid = r.U64();
      uint64_t index = r.U64();
      uint64_t chunk_id = r.U64();
      auto it = volumes.find(vid);
      auto c = checkpoint_chunks.find(chunk_id);
      if (r.failed() || it == volumes.end() || c == checkpoint_chunks.end()) {
        return Bad("shared chunk refers to an unknown volume or chunk");
      }
      it->second.chunks[index] = c->second;
      break;
    }
    case RecordType::kRefcount: {
      uint32_t n = r.U32();
      if (r.failed() || r.remaining() != static_cast<size_t>(n) * 8) return Bad("refcount record has a bad length");
      for (uint32_t i = 0; i < n; ++i) {
        uint32_t b = r.U32();
        uint32_t count = r.U32();
        if (count == 0) {
          refcounts.erase(b);
        } else {
          refcounts[b] = count;
        }
      }
      break;
    }
    case RecordType::kCommit:
      commit_seq = r.U64();
      break;
    default:
      return Bad("unknown record type " + std::to_string(static_cast<int>(type)));
  }
  if (r.failed()) return Bad("record cut short");
  return Status::OK();
}

void Image::Encode(std::string* out) const {
  AppendPool(out, block_size, nr_blocks, mode);
  std::unordered_map<const ChunkImage*, uint64_t> ids;
  for (const auto& [id, v] : volumes) {
    AppendVolume(out, v.attrs);
    for (const auto& [index, c] : v.chunks) {
      auto known = ids.find(c.get());
      if (known != ids.end()) {
        AppendShareChunk(out, ShareChunkRecord{id, index, known->second});
        continue;
      }
      uint64_t chunk_id = ids.size() + 1;
      ids.emplace(c.get(), chunk_id);
      AppendChunk(out, ChunkRecord{id, index, chunk_id, c->mapped, c->provisioned, c->dblocks});
    }
  }
  AppendRefcounts(out, std::vector<std::pair<uint32_t, uint32_t>>(refcounts.begin(), refcounts.end()));
}

std::map<uint32_t, uint32_t> Image::DerivedRefcounts() const {
  std::map<uint32_t, uint32_t> counts;
  std::set<const ChunkImage*> seen;
  for (const auto& [id, v] : volumes) {
    for (const auto& [index, c] : v.chunks) {
      if (!seen.insert(c.get()).second) continue;
      for (uint32_t b : c->dblocks) ++counts[b];
    }
  }
  return counts;
}

}  // namespace thinsim::metadata
