// BitmapModelDriver: the bitmap operations, the engine's side and the
// comparison (bitmap_model_driver.h).
#include "bitmap/testing/bitmap_model_driver.h"

#include <algorithm>
#include <iterator>
#include <tuple>
#include <utility>

namespace thinsim::model {
namespace {

// No volume has this name (the driver names them v<N> and s<N>).
const std::string kMissingVolume = "missing";

std::string NotFoundMessage(const std::string& volume, const std::string& name) {
  return "no bitmap named '" + name + "' on volume '" + volume + "'";
}

std::string ExistsMessage(const std::string& volume, const std::string& name) {
  return "volume '" + volume + "' already has a bitmap named '" + name + "'";
}

template <typename Map>
std::string Keys(const Map& m) {
  std::string out;
  for (const auto& kv : m) out += (out.empty() ? "" : " ") + kv.first;
  return out;
}

}  // namespace

std::string BitmapModelDriver::Summary() const {
  std::string out = ModelDriver::Summary() + "\n  bitmaps:";
  int n = 0;
  for (const auto& [what, count] : counts_) {
    out += (n++ % 5 == 0 ? "\n    " : "; ") + what + "=" + std::to_string(count);
  }
  return out;
}

// ---- ModelDriver's extension points ------------------------------------------------

void BitmapModelDriver::OnObserved(const Observed& r) {
  auto it = bitmaps_.find(r.volume);
  if (it == bitmaps_.end()) return;
  bool marked = false;
  for (auto& [name, m] : it->second) {
    if (!m.enabled) continue;  // busy ones record all the same
    m.dirty.add(ByteRange::right_open(r.offset, r.offset + r.length));
    marked = true;
  }
  if (!marked) return;
  static const char* kKinds[] = {"write", "zero", "trim", "provision"};
  Count(std::string("marks by ") + kKinds[static_cast<int>(r.kind)]);
  if (r.result != ErrorCode::kOk) Count("marks by failed requests (" + std::string(ErrorClassName(r.result)) + ")");
}

void BitmapModelDriver::OnPoolOpened(bool reopened) {
  registry_ = std::make_unique<BitmapRegistry>(pool_.get());
  Status s = registry_->LoadPersistent();
  MODEL_ASSERT_TRUE(s.ok()) << s.ToString();
  if (reopened) AdoptReopened();
}

void BitmapModelDriver::OnPoolClosing() { registry_.reset(); }

void BitmapModelDriver::OnSnapshotCreated(const std::string& origin, const std::string& name) {
  (void)name;  // CompareExtra checks that it has no bitmaps
  if (ModelOf(origin) != nullptr) Count("snapshots of volumes with bitmaps");
}

void BitmapModelDriver::OnVolumeDeleted(const std::string& name) {
  if (bitmaps_.erase(name) != 0) Count("deletes of volumes with bitmaps");
}

void BitmapModelDriver::OnVolumeResized(const std::string& name, uint64_t old_size, uint64_t new_size) {
  // The pool has told the volume's bitmaps (RequestObserver::VolumeSize).
  auto it = bitmaps_.find(name);
  if (it == bitmaps_.end()) return;
  Count(new_size > old_size ? "grows with bitmaps" : new_size < old_size ? "shrinks with bitmaps"
                                                                         : "same-size resizes with bitmaps");
  for (auto& [bitmap, m] : it->second) {
    if (new_size > old_size) {
      // The new bytes are dirty to whoever copied the old size; rounding
      // out takes the old partial last granule with them.
      m.dirty.add(ByteRange::right_open(old_size, new_size));
    } else {
      // Granules past the end go; the one across it keeps its bit.
      m.dirty = Clip(RoundOut(m.dirty, m.granularity), new_size);
    }
  }
}

void BitmapModelDriver::ExtraStep() {
  const uint64_t r = R(100);
  if (r < 22) return Add();
  if (r < 30) return Remove();
  if (r < 38) return OnOne(Verb::kClear);
  if (r < 45) return OnOne(Verb::kEnable);
  if (r < 52) return OnOne(Verb::kDisable);
  if (r < 64) return Merge();
  if (r < 76) return Cut();
  if (r < 80) return ToggleBusy();
  // The driver reopens rarely; persistent bitmaps want it more often.
  if (r < 84 && !options_.dir.empty()) return Reopen();
  return MarkingRequest();
}

// ---- Operations ------------------------------------------------------------------

void BitmapModelDriver::Add() {
  AddChoice a;
  if (!PickAdd(&a)) return Remove();
  desc_ = "bitmap-add " + a.volume + "/'" + a.name + "' granularity=" + std::to_string(a.granularity) +
          (a.persistent ? " persistent" : "") + (a.disabled ? " disabled" : "");
  kind_ = a.persistent ? "bitmap-add-persistent" : "bitmap-add";
  std::vector<std::string> parts;
  const ErrorCode want = AddOutcome(a, &parts);
  // As bitmap-add: the set is made (and attached) for the volume's first
  // bitmap, and let go again if that one is refused.
  std::shared_ptr<VolumeBitmaps> set;
  Status s = registry_->Get(a.volume, /*create=*/true, &set);
  if (s.ok()) {
    s = set->Add(a.name, a.granularity, a.persistent, a.disabled);
    if (!s.ok()) registry_->ReleaseIfEmpty(a.volume);
  }
  Expect(s, want, parts);
  if (want != ErrorCode::kOk) return;
  bitmaps_[a.volume][a.name] = MBitmap{
      .granularity = a.granularity, .enabled = !a.disabled, .persistent = a.persistent, .busy = false, .dirty = {}};
}

bool BitmapModelDriver::PickAdd(AddChoice* a) {
  // Mostly a writable volume: requests never reach a read-only snapshot's.
  a->volume = Chance(3) ? kMissingVolume : PickVolumePreferring(85, [](const MVol& v) { return !v.read_only; });
  if (!PickNewName(a->volume, 6, 4, &a->name, &a->exists, &a->bad_name)) return false;
  a->persistent = options_.dir.empty() ? Chance(4) : Chance(50);
  a->disabled = Chance(15);
  a->bad_granularity = Chance(4);
  static const uint64_t kBadGranularities[] = {0, 256, 1000, 3 * 4096, uint64_t{128} << 20};
  a->granularity = a->bad_granularity ? kBadGranularities[R(std::size(kBadGranularities))] : PickGranularity();
  return true;
}

ErrorCode BitmapModelDriver::AddOutcome(const AddChoice& a, std::vector<std::string>* parts) const {
  // The registry looks the volume up; VolumeBitmaps::Add checks the name,
  // then persistence, then the granularity.
  if (model_.vols.count(a.volume) == 0) {
    *parts = {"no volume named '" + a.volume + "'"};
    return ErrorCode::kNotFound;
  }
  if (a.bad_name) {
    *parts = {"bitmap name"};
    return ErrorCode::kInvalid;
  }
  if (a.exists) {
    *parts = {ExistsMessage(a.volume, a.name)};
    return ErrorCode::kExists;
  }
  if (a.persistent && options_.dir.empty()) {
    *parts = {"volume '" + a.volume + "' cannot have persistent bitmaps"};
    return ErrorCode::kUnsupported;
  }
  if (a.bad_granularity) {
    *parts = {"bitmap granularity must be a power of two", "got " + std::to_string(a.granularity)};
    return ErrorCode::kInvalid;
  }
  return ErrorCode::kOk;
}

void BitmapModelDriver::Remove() {
  const std::string volume = PickBitmapVolume(2);
  const std::string name = PickBitmapName(volume, 90);
  desc_ = "bitmap-remove " + volume + "/" + name;
  kind_ = "bitmap-remove";
  std::shared_ptr<VolumeBitmaps> set;
  if (!FindSet(volume, &set)) return;
  std::vector<std::string> parts;
  const ErrorCode want = FindOutcome(volume, name, /*change=*/true, &parts);
  Status s = set->Remove(name);
  if (s.ok()) registry_->ReleaseIfEmpty(volume);  // as bitmap-remove
  Expect(s, want, parts);
  if (want != ErrorCode::kOk) return;
  Bitmaps& bms = bitmaps_.at(volume);
  bms.erase(name);
  if (bms.empty()) bitmaps_.erase(volume);
}

void BitmapModelDriver::OnOne(Verb verb) {
  static const char* kNames[] = {"bitmap-clear", "bitmap-enable", "bitmap-disable"};
  const std::string volume = PickBitmapVolume(2);
  const std::string name = PickBitmapName(volume, 92);
  kind_ = kNames[static_cast<int>(verb)];
  desc_ = kind_ + " " + volume + "/" + name;
  std::shared_ptr<VolumeBitmaps> set;
  if (!FindSet(volume, &set)) return;
  std::vector<std::string> parts;
  const ErrorCode want = FindOutcome(volume, name, /*change=*/true, &parts);
  Status s;
  switch (verb) {
    case Verb::kClear: s = set->Clear(name); break;
    case Verb::kEnable: s = set->Enable(name); break;
    case Verb::kDisable: s = set->Disable(name); break;
  }
  Expect(s, want, parts);
  if (want != ErrorCode::kOk) return;
  MBitmap& m = bitmaps_.at(volume).at(name);
  if (verb == Verb::kClear) {
    m.dirty.clear();
    return;
  }
  const bool enabled = verb == Verb::kEnable;
  if (m.enabled == enabled) Count(kind_ + " of one already so");
  m.enabled = enabled;
}

void BitmapModelDriver::Merge() {
  const std::string volume = PickBitmapVolume(2);
  const std::string target = PickBitmapName(volume, 92);
  std::vector<std::string> sources;
  for (uint64_t i = 0, n = 1 + R(3); i < n; ++i) sources.push_back(PickBitmapName(volume, 92));
  desc_ = "bitmap-merge " + volume + " into " + target + " from";
  for (const std::string& src : sources) desc_ += " " + src;
  kind_ = "bitmap-merge";
  std::shared_ptr<VolumeBitmaps> set;
  if (!FindSet(volume, &set)) return;
  // The target first (missing or busy), then every source (missing).
  std::vector<std::string> parts;
  ErrorCode want = FindOutcome(volume, target, /*change=*/true, &parts);
  for (const std::string& src : sources) {
    if (want != ErrorCode::kOk) break;
    want = FindOutcome(volume, src, /*change=*/false, &parts);
  }
  Expect(set->Merge(sources, target), want, parts);
  if (want != ErrorCode::kOk) return;
  // Each source's dirty granules, clipped to the volume, mark the target's
  // granules they overlap.
  Bitmaps& bms = bitmaps_.at(volume);
  const uint64_t size = model_.vols.at(volume).size;
  ByteSet merged;
  for (const std::string& src : sources) {
    merged += bms.at(src).Expected(size);
    if (bms.at(src).granularity != bms.at(target).granularity) Count("bitmap-merge across granularities");
  }
  bms.at(target).dirty += merged;
}

void BitmapModelDriver::Cut() {
  const std::string volume = PickBitmapVolume(2);
  const std::string name = PickBitmapName(volume, 92);
  std::string into;
  bool exists = false, bad_name = false;
  if (!PickNewName(volume, 8, 4, &into, &exists, &bad_name)) return Remove();
  desc_ = "bitmap-cut " + volume + "/" + name + " into '" + into + "'";
  kind_ = "bitmap-cut";
  std::shared_ptr<VolumeBitmaps> set;
  if (!FindSet(volume, &set)) return;
  std::vector<std::string> parts;
  ErrorCode want = FindOutcome(volume, name, /*change=*/true, &parts);
  if (want == ErrorCode::kOk && bad_name) {
    want = ErrorCode::kInvalid;
    parts = {"bitmap name"};
  } else if (want == ErrorCode::kOk && exists) {
    want = ErrorCode::kExists;
    parts = {ExistsMessage(volume, into)};
  }
  Expect(set->Cut(name, into), want, parts);
  if (want != ErrorCode::kOk) return;
  // `into` takes what `name` held, disabled, with its granularity and
  // persistence; `name` starts again empty and keeps recording if it was.
  Bitmaps& all = bitmaps_.at(volume);
  MBitmap frozen = all.at(name);
  frozen.enabled = false;
  all.at(name).dirty.clear();
  all[into] = std::move(frozen);
}

void BitmapModelDriver::ToggleBusy() {
  std::vector<std::pair<std::string, std::string>> busy;
  for (const auto& [volume, bms] : bitmaps_) {
    for (const auto& [name, m] : bms) {
      if (m.busy) busy.push_back({volume, name});
    }
  }
  const bool release = !busy.empty() && Chance(60);
  std::string volume, name;
  if (release) {
    std::tie(volume, name) = busy[R(busy.size())];
  } else {
    volume = PickBitmapVolume(0);
    name = PickBitmapName(volume, 95);
  }
  desc_ = std::string(release ? "job releases " : "job takes ") + volume + "/" + name;
  kind_ = release ? "bitmap-busy-off" : "bitmap-busy-on";
  std::shared_ptr<VolumeBitmaps> set;
  if (!FindSet(volume, &set)) return;
  std::vector<std::string> parts;
  const ErrorCode want = FindOutcome(volume, name, /*change=*/false, &parts);
  Expect(set->SetBusy(name, !release), want, parts);
  if (want == ErrorCode::kOk) bitmaps_.at(volume).at(name).busy = !release;
}

void BitmapModelDriver::MarkingRequest() {
  std::vector<std::string> c;
  for (const auto& [volume, bms] : bitmaps_) {
    if (!model_.vols.at(volume).read_only &&
        std::any_of(bms.begin(), bms.end(), [](const auto& kv) { return kv.second.enabled; })) {
      c.push_back(volume);
    }
  }
  if (c.empty()) return DataOp(Op::kWrite);
  static constexpr Op kOps[] = {Op::kWrite,      Op::kWrite,     Op::kTrim,            Op::kZeroMayTrim,
                                Op::kZeroNoHole, Op::kProvision, Op::kFastZeroMayTrim, Op::kFastZeroNoHole};
  const std::string volume = c[R(c.size())];
  const Op op = kOps[R(std::size(kOps))];
  const uint64_t size = model_.vols.at(volume).size;
  auto [off, len] = Chance(50) ? PickGranuleEdges(volume, size) : PickRange(size);
  DataOpAt(op, volume, off, len, /*probe=*/false);
}

// Both ends one byte either side of, or on, a granule boundary of one of the
// volume's bitmaps: where rounding to granules goes wrong first.
std::pair<uint64_t, uint64_t> BitmapModelDriver::PickGranuleEdges(const std::string& volume, uint64_t size) {
  const Bitmaps& bms = bitmaps_.at(volume);
  auto it = bms.begin();
  std::advance(it, static_cast<long>(R(bms.size())));
  const uint64_t g = std::min(it->second.granularity, size);
  const uint64_t granules = (size + g - 1) / g;
  auto edge = [&](uint64_t boundary) {
    const uint64_t at = boundary * g + R(3);  // one byte before, on, or after
    return std::clamp<uint64_t>(at, 1, size + 1) - 1;
  };
  uint64_t a = edge(R(granules + 1)), b = edge(R(granules + 1));
  if (a > b) std::swap(a, b);
  if (a >= size) a = size - 1;
  return {a, std::max<uint64_t>(1, std::min(b, size) - a)};
}

// ---- Choices ---------------------------------------------------------------------

std::string BitmapModelDriver::PickBitmapVolume(int missing_percent) {
  if (Chance(missing_percent)) return kMissingVolume;
  if (!bitmaps_.empty() && Chance(90)) {
    auto it = bitmaps_.begin();
    std::advance(it, static_cast<long>(R(bitmaps_.size())));
    return it->first;
  }
  return PickVolume();
}

std::string BitmapModelDriver::PickBitmapName(const std::string& volume, int existing_percent) {
  const Bitmaps* bms = ModelOf(volume);
  if (bms != nullptr && Chance(existing_percent)) {
    auto it = bms->begin();
    std::advance(it, static_cast<long>(R(bms->size())));
    return it->first;
  }
  return "b" + std::to_string(next_bitmap_++);
}

bool BitmapModelDriver::PickNewName(const std::string& volume, int exists_percent, int bad_percent,
                                    std::string* name, bool* exists, bool* bad_name) {
  const Bitmaps* bms = ModelOf(volume);
  const uint64_t r = R(100);
  *exists = r < static_cast<uint64_t>(exists_percent) && bms != nullptr;
  *bad_name = !*exists && r < static_cast<uint64_t>(exists_percent + bad_percent);
  *name = *exists ? PickBitmapName(volume, 100) : *bad_name ? PickInvalidName() : PickBitmapName(volume, 0);
  return *exists || *bad_name || bms == nullptr || bms->size() < kMaxBitmapsPerVolume;
}

std::string BitmapModelDriver::PickInvalidName() {
  static const std::string kNames[] = {"", ".b", "-b", "b c", "b/c", std::string(65, 'b')};
  return kNames[R(std::size(kNames))];
}

uint64_t BitmapModelDriver::PickGranularity() {
  // 512 << 9 = 256K; 512 << 17 = 64M.
  return DirtyBitmap::kMinGranularity << (Chance(85) ? R(10) : R(18));
}

// ---- Helpers ---------------------------------------------------------------------

const BitmapModelDriver::Bitmaps* BitmapModelDriver::ModelOf(const std::string& volume) const {
  auto it = bitmaps_.find(volume);
  return it == bitmaps_.end() ? nullptr : &it->second;
}

bool BitmapModelDriver::FindSet(const std::string& volume, std::shared_ptr<VolumeBitmaps>* set) {
  Status s = registry_->Get(volume, /*create=*/false, set);
  if (model_.vols.count(volume) == 0) {
    Expect(s, ErrorCode::kNotFound, {"no volume named '" + volume + "'"});
    return false;
  }
  MODEL_ASSERT_TRUE(s.ok()) << s.ToString();
  MODEL_ASSERT_EQ(*set == nullptr, ModelOf(volume) == nullptr) << "whether " << volume << " has a bitmap set";
  if (*set != nullptr) return true;
  Count(kind_ + " on a volume without bitmaps");  // the commands answer NotFound themselves
  return false;
}

ErrorCode BitmapModelDriver::FindOutcome(const std::string& volume, const std::string& name, bool change,
                                         std::vector<std::string>* parts) const {
  const Bitmaps& bms = bitmaps_.at(volume);
  auto it = bms.find(name);
  if (it == bms.end()) {
    *parts = {NotFoundMessage(volume, name)};
    return ErrorCode::kNotFound;
  }
  if (change && it->second.busy) {
    *parts = {"bitmap '" + name + "' on volume '" + volume + "' is busy"};
    return ErrorCode::kBusy;
  }
  return ErrorCode::kOk;
}

void BitmapModelDriver::Expect(const Status& s, ErrorCode want, const std::vector<std::string>& parts) {
  ExpectStatus(s, want, parts);
  Count(kind_ + " " + std::string(ErrorClassName(want)));
}

// ---- Comparison ------------------------------------------------------------------

void BitmapModelDriver::CompareExtra() {
  std::map<std::string, bool> engine;
  for (const auto& [volume, set] : registry_->All()) engine[volume] = true;
  MODEL_ASSERT_EQ(Keys(engine), Keys(bitmaps_)) << "the volumes with bitmap sets";
  for (const auto& [volume, mv] : model_.vols) CompareVolume(volume, mv.size);
}

void BitmapModelDriver::CompareVolume(const std::string& volume, uint64_t size) {
  MODEL_SCOPED_TRACE("bitmaps of volume " + volume + ", " + std::to_string(size) + " bytes");
  std::shared_ptr<VolumeBitmaps> set;
  Status s = registry_->Get(volume, /*create=*/false, &set);
  MODEL_ASSERT_TRUE(s.ok()) << s.ToString();
  const Bitmaps* bms = ModelOf(volume);
  MODEL_ASSERT_EQ(set != nullptr, bms != nullptr) << "whether the volume has a bitmap set";
  if (set == nullptr) return;
  MODEL_ASSERT_EQ(set->size(), size);
  const std::vector<BitmapInfo> infos = set->Query();
  std::string names;
  for (const BitmapInfo& info : infos) names += (names.empty() ? "" : " ") + info.name;
  MODEL_ASSERT_EQ(names, Keys(*bms)) << "the volume's bitmaps";
  for (const BitmapInfo& info : infos) CompareBitmap(volume, size, *set, info, bms->at(info.name));
}

void BitmapModelDriver::CompareBitmap(const std::string& volume, uint64_t size, VolumeBitmaps& set,
                                      const BitmapInfo& info, const MBitmap& m) {
  MODEL_SCOPED_TRACE("bitmap " + volume + "/" + info.name + " granularity " + std::to_string(m.granularity));
  MODEL_ASSERT_EQ(info.granularity, m.granularity);
  MODEL_ASSERT_EQ(info.enabled, m.enabled);
  MODEL_ASSERT_EQ(info.busy, m.busy);
  MODEL_ASSERT_EQ(info.persistent, m.persistent);
  MODEL_ASSERT_FALSE(info.inconsistent);
  const ByteSet want = m.Expected(size);
  ByteSet got;
  Status s = set.DirtyRanges(info.name, &got);
  MODEL_ASSERT_TRUE(s.ok()) << s.ToString();
  MODEL_ASSERT_EQ(ByteSetString(got), ByteSetString(want)) << "dirty ranges; the model's bytes: " << ByteSetString(m.dirty);
  MODEL_ASSERT_EQ(info.dirty_bytes, boost::icl::cardinality(want));
  MODEL_ASSERT_EQ(info.dirty_granules, m.DirtyGranules(size));
  // bitmap-extents of a random range (sometimes to the end, as its default
  // length asks).
  auto [off, len] = PickRange(size);
  if (Chance(15)) len = UINT64_MAX;
  std::vector<DirtyBitmap::Extent> ext;
  s = set.Extents(info.name, off, len, &ext);
  MODEL_ASSERT_TRUE(s.ok()) << s.ToString();
  MODEL_ASSERT_EQ(BitmapExtentsString(ext), BitmapExtentsString(ExpectedExtents(want, size, off, len)))
      << "extents of [" << off << ", +" << len << ")";
}

void BitmapModelDriver::AdoptReopened() {
  for (auto vit = bitmaps_.begin(); vit != bitmaps_.end();) {
    const std::string& volume = vit->first;
    Bitmaps& bms = vit->second;
    std::erase_if(bms, [](const auto& kv) { return !kv.second.persistent; });  // gone with the server
    if (bms.empty()) {
      vit = bitmaps_.erase(vit);
      continue;
    }
    const uint64_t size = model_.vols.at(volume).size;
    std::shared_ptr<VolumeBitmaps> set;
    Status s = registry_->Get(volume, /*create=*/false, &set);
    MODEL_ASSERT_TRUE(s.ok() && set != nullptr) << "the persistent bitmaps of " << volume << " did not come back "
                                                << s.ToString();
    for (auto& [name, m] : bms) {
      m.busy = false;  // jobs end with the server
      ByteSet got;
      s = set->DirtyRanges(name, &got);
      MODEL_ASSERT_TRUE(s.ok()) << "persistent bitmap " << volume << "/" << name << ": " << s.ToString();
      const ByteSet exact = m.Expected(size), bound = m.IntentBound(size);
      MODEL_ASSERT_TRUE(boost::icl::contains(got, exact))
          << "persistent bitmap " << volume << "/" << name << " came back cleaner than its live bits: engine "
          << ByteSetString(got) << ", model " << ByteSetString(exact);
      MODEL_ASSERT_TRUE(boost::icl::contains(bound, got))
          << "persistent bitmap " << volume << "/" << name << " came back dirtier than its intent chunks: engine "
          << ByteSetString(got) << ", bound " << ByteSetString(bound);
      Count(got == exact ? "reopens of persistent bitmaps, exact" : "reopens of persistent bitmaps, dirtier");
      m.dirty = std::move(got);
    }
    ++vit;
  }
}

}  // namespace thinsim::model
