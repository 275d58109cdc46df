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

// Rebuilds what can be derived (refcounts from mappings), drops mappings to
// blocks outside the pool and snapshot relations that dangle or loop. Each
// line of *lost says what could not be saved.
void RepairImage(Image* image, std::vector<std::string>* fixed, std::vector<std::string>* lost);

}  // namespace thinsim::metadata

#endif  // THINSIM_METADATA_CHECK_H_
