// Checks of a pool's metadata, for `thinsim check`, `thinsim repair` and the
// plugin's refusal to serve damaged metadata.
//
// Damage is a value with a severity, as thin_check reports it: fatal damage
// means mappings cannot be trusted (the pool must not be served); non-fatal
// damage (refcounts, snapshot relations) leaves every volume's data right,
// so the pool may be served read-only until repaired.
#ifndef THINSIM_METADATA_CHECK_H_
#define THINSIM_METADATA_CHECK_H_

#include <string>
#include <vector>

#include "metadata/image.h"
#include "metadata/journal.h"

namespace thinsim::metadata {

struct Damage {
  bool fatal;
  std::string what;
};

struct CheckResult {
  std::vector<Damage> damage;
  std::vector<std::string> notes;  // not damage (an interrupted commit's tail)
  bool clean() const { return damage.empty(); }
  bool fatal() const;
};

// Checks an image and what loading it found.
CheckResult CheckImage(const Image& image, const LoadReport& report);

// Fixes every kind of damage CheckImage reports that the image itself can
// fix: rebuilds what can be derived (refcounts from mappings, families from
// sharing, a lost pool size from the highest mapped block); renames
// volumes with invalid or duplicate names; fixes bad sizes, unknown
// strategies and modes; clears snapshot relations that dangle or loop;
// drops chunks beyond a volume's size, mappings to blocks outside the pool
// and second uses of a block at another vblock. Each line of *fixed says
// what was changed; each line of *lost what could not be saved (mappings
// dropped, or damage left in place such as an invalid block size).
void RepairImage(Image* image, std::vector<std::string>* fixed, std::vector<std::string>* lost);

}  // namespace thinsim::metadata

#endif  // THINSIM_METADATA_CHECK_H_
