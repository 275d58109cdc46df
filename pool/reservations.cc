// Reservations: see reservations.h.
#include "pool/reservations.h"

namespace thinsim {

Reservations::Guarantee Reservations::GuaranteeFor(Strategy s, bool read_only, bool active) {
  Guarantee g;
  if (read_only) return g;  // cannot be written, so guarantees nothing
  g.all = s == Strategy::kFull || (s == Strategy::kVolume && active);
  g.provisioned = s == Strategy::kProvision;
  return g;
}

void Reservations::Reset(uint64_t nr_blocks) {
  guarantors_.assign(nr_blocks, 0);
  reserved_ = 0;
}

Status Reservations::Admit(int64_t delta, uint64_t free_blocks, const std::string& what) const {
  const int64_t free = static_cast<int64_t>(free_blocks);
  if (delta <= 0 || reserved_ + delta <= free) return Status::OK();
  return Status::NoSpace(what + " needs " + std::to_string(delta) +
                         " more reserved block(s), but only " + std::to_string(free - reserved_) +
                         " are free and unreserved (" + std::to_string(free) + " free, " +
                         std::to_string(reserved_) + " reserved)");
}

int64_t Reservations::ChangeGuarantor(dblock_t b, uint32_t owners, bool from, bool to, bool apply) {
  const uint32_t g = guarantors_[b];
  const uint32_t g2 = g - from + to;
  const int64_t delta = Need(owners, g2) - Need(owners, g);
  if (apply) {
    guarantors_[b] = g2;
    reserved_ += delta;
  }
  return delta;
}

int64_t Reservations::OwnerDelta(dblock_t b, uint32_t owners, bool covers, bool leave) const {
  const uint32_t g = guarantors_[b];
  const uint32_t o2 = leave ? owners - 1 : owners + 1;
  const uint32_t g2 = leave ? g - covers : g + covers;
  return Need(o2, g2) - Need(owners, g);
}

int64_t Reservations::ChangeOwner(dblock_t b, uint32_t owners, bool covers, bool leave, bool apply) {
  const int64_t delta = OwnerDelta(b, owners, covers, leave);
  if (apply) {
    guarantors_[b] = leave ? guarantors_[b] - covers : guarantors_[b] + covers;
    reserved_ += delta;
  }
  return delta;
}

}  // namespace thinsim
