// BitmapModelDriver: pool/testing/model_driver.h's random operation
// sequences with dirty bitmaps (SPEC section 12) added, for
// bitmap/bitmap_model_test.cc. Test-only code.
//
// It holds a BitmapRegistry on the driver's pool, as the control commands
// do (plugin/commands_bitmap.cc), and a reference model (bitmap_model.h):
// for each volume and bitmap name its granularity, enabled, persistent and
// busy flags and the bytes it must hold dirty.
//
// Operations (a share of the steps, besides the driver's own): bitmap add
// (granularities 512 B .. 64 MiB, mostly up to 256K; persistent ones on
// pools in a directory; some disabled), remove, clear, enable, disable,
// merge (sources into a target of the same volume), cut (into a new name),
// busy on and off (VolumeBitmaps::SetBusy, as a job does), and data
// requests aimed at volumes with bitmaps; each also with the errors the
// model predicts exactly (NotFound for a volume or bitmap, Exists, Invalid
// name or granularity, Unsupported persistence, Busy), code and message.
// The engine's side:
//   - every request that reached the volume's observers
//     (ModelDriver::OnObserved; failed ones too) marks its range in every
//     enabled bitmap of the volume, busy ones included;
//   - a resize is followed with BitmapRegistry::Resized (as
//     plugin/commands_volume.cc does): a grow marks the new bytes in every
//     bitmap (so the old partial last granule too), a shrink drops the
//     granules past the end;
//   - a delete takes the volume's bitmaps; a snapshot has none;
//   - a reopen (clean close, then open): a new registry on the new pool,
//     LoadPersistent; non-persistent bitmaps are gone; a persistent one may
//     come back dirtier than its live bits were, but only within its intent
//     chunks: model (rounded to granules) <= engine <= model rounded out to
//     intent chunks; then the model takes the engine's bits.
// After every step, for every volume: the registry has a set exactly for
// the volumes with bitmaps, of the volume's size; Query() lists exactly the
// model's bitmaps with their granularity, flags, dirty granules and bytes;
// DirtyRanges equals the model's bytes rounded out to granules and clipped
// to the volume (live bits are exact), and Extents of a random range
// matches.
//
// Thread safety: one thread, as ModelDriver.
#ifndef THINSIM_BITMAP_TESTING_BITMAP_MODEL_DRIVER_H_
#define THINSIM_BITMAP_TESTING_BITMAP_MODEL_DRIVER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bitmap/bitmap_registry.h"
#include "bitmap/testing/bitmap_model.h"
#include "pool/testing/model_driver.h"

namespace thinsim::model {

// Bitmaps per volume the generator makes at most.
constexpr size_t kMaxBitmapsPerVolume = 4;

class BitmapModelDriver : public ModelDriver {
 public:
  // The driver's summary, then the bitmap operations' outcomes and what the
  // bitmaps went through (marks, failed requests marking, resizes, reopens).
  std::string Summary() const override;

 protected:
  // ---- ModelDriver's extension points --------------------------------------------

  void OnObserved(const Observed& request) override;
  void OnPoolOpened(bool reopened) override;
  void OnPoolClosing() override;
  void OnSnapshotCreated(const std::string& origin, const std::string& name) override;
  void OnVolumeDeleted(const std::string& name) override;
  void OnVolumeResized(const std::string& name, uint64_t old_size, uint64_t new_size) override;
  int ExtraStepPercent() const override { return 30; }
  void ExtraStep() override;
  void CompareExtra() override;

 private:
  using Bitmaps = std::map<std::string, MBitmap>;  // one volume's, by name

  // ---- Operations ------------------------------------------------------------------

  void Add();
  void Remove();
  // Clear, Enable, Disable: one call on one bitmap.
  enum class Verb { kClear, kEnable, kDisable };
  void OnOne(Verb verb);
  void Merge();
  void Cut();
  void ToggleBusy();
  // A data request to a writable volume with enabled bitmaps.
  void MarkingRequest();

  // ---- Choices ---------------------------------------------------------------------

  // What a bitmap-add asks for, and which refusal it was drawn to meet.
  struct AddChoice {
    std::string volume, name;
    uint64_t granularity = 0;
    bool persistent = false, disabled = false;
    bool exists = false, bad_name = false, bad_granularity = false;
  };
  // False when the volume has its fill of bitmaps (the step removes one
  // instead).
  bool PickAdd(AddChoice* a);
  // The outcome of the add, and the parts of its message.
  ErrorCode AddOutcome(const AddChoice& a, std::vector<std::string>* parts) const;

  // A volume, mostly one with bitmaps; with `missing_percent` chance one
  // that does not exist.
  std::string PickBitmapVolume(int missing_percent);
  // With `existing_percent` chance (if it has any) a bitmap of `volume`,
  // else a new name.
  std::string PickBitmapName(const std::string& volume, int existing_percent);
  // A name for a new bitmap of `volume`: with `exists_percent` chance one it
  // has (if any; *exists), with `bad_percent` chance more one ValidateName
  // refuses (*bad_name), else a fresh one. False if a fresh one would give
  // the volume more than kMaxBitmapsPerVolume.
  bool PickNewName(const std::string& volume, int exists_percent, int bad_percent, std::string* name,
                   bool* exists, bool* bad_name);
  // A bitmap name ValidateName refuses.
  std::string PickInvalidName();
  // A request [offset, +length) inside a volume of `size` bytes (which has
  // bitmaps) whose ends lie at a granule boundary of one of its bitmaps, or
  // one byte either side.
  std::pair<uint64_t, uint64_t> PickGranuleEdges(const std::string& volume, uint64_t size);
  // A valid granularity: mostly 512 B .. 256K, sometimes up to 64M.
  uint64_t PickGranularity();

  // ---- Helpers ---------------------------------------------------------------------

  // The model's bitmaps of `volume`: null if it has none.
  const Bitmaps* ModelOf(const std::string& volume) const;
  // The volume's set as the commands look it up (Get without create).
  // Returns false, the outcome recorded, when the op ends here: the volume
  // is missing (NotFound, checked) or has no bitmaps (a null set, checked).
  bool FindSet(const std::string& volume, std::shared_ptr<VolumeBitmaps>* set);
  // The outcome VolumeBitmaps::Find predicts for `name` (NotFound, or Busy
  // with `change`), and its message parts.
  ErrorCode FindOutcome(const std::string& volume, const std::string& name, bool change,
                        std::vector<std::string>* parts) const;
  // ExpectStatus, counted in the bitmap summary under kind_.
  void Expect(const Status& s, ErrorCode want, const std::vector<std::string>& parts = {});
  void Count(const std::string& what) { ++counts_[what]; }

  // ---- Comparison ------------------------------------------------------------------

  void CompareVolume(const std::string& volume, uint64_t size);
  void CompareBitmap(const std::string& volume, uint64_t size, VolumeBitmaps& set, const BitmapInfo& info,
                     const MBitmap& m);
  // After a reopen: drops the non-persistent bitmaps, checks each
  // persistent one against the intent rule and takes the engine's bits.
  void AdoptReopened();

  std::unique_ptr<BitmapRegistry> registry_;
  std::map<std::string, Bitmaps> bitmaps_;  // by volume; no empty entries
  uint64_t next_bitmap_ = 0;
  std::map<std::string, int> counts_;  // for Summary
};

}  // namespace thinsim::model

#endif  // THINSIM_BITMAP_TESTING_BITMAP_MODEL_DRIVER_H_
