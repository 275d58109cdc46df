// BitmapJournal: where one volume's persistent dirty bitmaps log their
// records (metadata/records.h, types 9 to 12): the pool's metadata
// transactions (BitmapRegistry implements it over Pool::LogBitmapRecords
// and Pool::Flush). An interface so that the bitmap layer can be tested
// against a journal that counts what it is asked to do.
//
// Thread safety: thread-safe; Sync may be called by many threads at once
// (a group commit serves them together).
#ifndef THINSIM_BITMAP_BITMAP_JOURNAL_H_
#define THINSIM_BITMAP_BITMAP_JOURNAL_H_

#include <cstdint>
#include <string>

#include "base/status.h"

namespace thinsim {

class BitmapJournal {
 public:
  virtual ~BitmapJournal() = default;
  // The id the volume's records name.
  virtual uint64_t volume_id() const = 0;
  // Adds framed records to the open transaction; nothing waits. Applied in
  // the order appended. A record that does not fit the durable state is
  // refused (Invalid) and nothing of `records` is added.
  virtual Status Append(const std::string& records) = 0;
  // Returns once every record appended before the call is durable.
  virtual Status Sync() = 0;
};

}  // namespace thinsim

#endif  // THINSIM_BITMAP_BITMAP_JOURNAL_H_
