// Pool: a volume's live mappings as the metadata layer's VolumeImage, for
// the tools that read an Image offline and now also work on a running pool
// (thinsim delta through the control socket).
#include "pool/pool.h"
#include "pool/volume.h"

namespace thinsim {

Status Pool::VolumeImagesOf(const std::vector<std::string>& names, std::vector<metadata::VolumeImage>* out) const {
  ReaderLock lock(&meta_mu_);  // one point in time for all of them
  out->assign(names.size(), metadata::VolumeImage{});
  for (size_t i = 0; i < names.size(); ++i) {
    const Volume* v = FindLocked(names[i]);
    if (v == nullptr) return Status::NotFound("no volume named '" + names[i] + "'");
    ImageOfLocked(v, &(*out)[i]);
  }
  return Status::OK();
}

void Pool::ImageOfLocked(const Volume* v, metadata::VolumeImage* out) const {
  out->attrs.id = v->id;
  out->attrs.name = v->name;
  out->attrs.size = v->size;
  out->chunks.clear();
  for (size_t idx = 0; idx < v->map->nr_chunks(); ++idx) {
    const Chunk* c = v->map->chunk(idx);
    if (c == nullptr || c->empty()) continue;
    auto image = std::make_shared<metadata::ChunkImage>();
    c->ForEach([&](uint32_t i, dblock_t b, bool provisioned) {
      image->mapped |= uint64_t{1} << i;
      if (provisioned) image->provisioned |= uint64_t{1} << i;
      image->dblocks.push_back(b);
    });
    out->chunks.emplace(idx, std::move(image));
  }
}

}  // namespace thinsim
