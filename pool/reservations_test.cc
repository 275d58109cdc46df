#include "pool/reservations.h"

#include <gtest/gtest.h>

namespace thinsim {
namespace {

using Guarantee = Reservations::Guarantee;

TEST(ReservationsTest, NeedOfABlock) {
  EXPECT_EQ(Reservations::Need(1, 0), 0);
  EXPECT_EQ(Reservations::Need(3, 0), 0);
  EXPECT_EQ(Reservations::Need(1, 1), 0);  // the one owner writes in place
  EXPECT_EQ(Reservations::Need(2, 1), 1);  // the guarantor may have to copy
  EXPECT_EQ(Reservations::Need(2, 2), 1);  // every owner but the last copies
  EXPECT_EQ(Reservations::Need(3, 2), 2);
  EXPECT_EQ(Reservations::Need(3, 3), 2);
}

TEST(ReservationsTest, GuaranteeOfEachStrategy) {
  Guarantee none = Reservations::GuaranteeFor(Strategy::kNone, false, true);
  EXPECT_FALSE(none.all);
  EXPECT_FALSE(none.provisioned);
  EXPECT_TRUE(Reservations::GuaranteeFor(Strategy::kFull, false, false).all);
  EXPECT_FALSE(Reservations::GuaranteeFor(Strategy::kVolume, false, false).all);
  EXPECT_TRUE(Reservations::GuaranteeFor(Strategy::kVolume, false, true).all);
  Guarantee prov = Reservations::GuaranteeFor(Strategy::kProvision, false, false);
  EXPECT_FALSE(prov.all);
  EXPECT_TRUE(prov.Covers(true));
  EXPECT_FALSE(prov.Covers(false));
  // A read-only snapshot cannot be written, so guarantees nothing.
  EXPECT_FALSE(Reservations::GuaranteeFor(Strategy::kFull, true, true).Covers(true));
}

TEST(ReservationsTest, AdmitsWhatFitsAndNamesWhatDoesNot) {
  Reservations r(8);
  r.Add(3);
  EXPECT_TRUE(r.Admit(2, 5, "x").ok());
  EXPECT_TRUE(r.Admit(0, 0, "x").ok());   // nothing more: always fits
  EXPECT_TRUE(r.Admit(-4, 0, "x").ok());  // fewer: always fits
  Status s = r.Admit(3, 5, "volume 'v' (strategy full)");
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace);
  EXPECT_EQ(s.message(),
            "volume 'v' (strategy full) needs 3 more reserved block(s), but only 2 are free and "
            "unreserved (5 free, 3 reserved)");
}

TEST(ReservationsTest, FreshBlockNeedsNothing) {
  Reservations r(4);
  r.SetFresh(1, true);
  EXPECT_EQ(r.guarantors(1), 1u);
  EXPECT_EQ(r.reserved(), 0);
  r.SetFresh(2, false);
  EXPECT_EQ(r.guarantors(2), 0u);
}

TEST(ReservationsTest, OwnerJoiningAndLeavingIsExactAndReversible) {
  Reservations r(4);
  r.SetFresh(0, true);  // one guaranteeing owner
  // A snapshot that guarantees nothing joins: the guarantor may copy.
  EXPECT_EQ(r.ChangeOwner(0, 1, /*covers=*/false, /*leave=*/false, /*apply=*/false), 1);
  EXPECT_EQ(r.reserved(), 0);  // not applied
  EXPECT_EQ(r.ChangeOwner(0, 1, false, false, true), 1);
  EXPECT_EQ(r.reserved(), 1);
  EXPECT_EQ(r.guarantors(0), 1u);
  // A guaranteeing owner joins too: 3 owners, 2 guarantors, need 2.
  EXPECT_EQ(r.ChangeOwner(0, 2, true, false, true), 1);
  EXPECT_EQ(r.guarantors(0), 2u);
  EXPECT_EQ(r.reserved(), 2);
  // Both leave again, in the other order.
  EXPECT_EQ(r.ChangeOwner(0, 3, false, true, true), -1);  // 2 owners, both guarantee: need 1
  EXPECT_EQ(r.ChangeOwner(0, 2, true, true, true), -1);
  EXPECT_EQ(r.reserved(), 0);
  EXPECT_EQ(r.guarantors(0), 1u);
}

TEST(ReservationsTest, GuarantorChanges) {
  Reservations r(2);
  r.SetFresh(0, false);
  r.ChangeOwner(0, 1, false, false, true);  // two owners, no guarantor
  EXPECT_EQ(r.reserved(), 0);
  EXPECT_EQ(r.ChangeGuarantor(0, 2, false, true, /*apply=*/false), 1);
  EXPECT_EQ(r.guarantors(0), 0u);
  EXPECT_EQ(r.ChangeGuarantor(0, 2, false, true, true), 1);
  EXPECT_EQ(r.ChangeGuarantor(0, 2, false, true, true), 0);  // need(2 owners, 2) = 1 still
  EXPECT_EQ(r.reserved(), 1);
  EXPECT_EQ(r.ChangeGuarantor(0, 2, true, true, true), 0);  // no change
  EXPECT_EQ(r.ChangeGuarantor(0, 2, true, false, true), 0);
  EXPECT_EQ(r.ChangeGuarantor(0, 2, true, false, true), -1);
  EXPECT_EQ(r.reserved(), 0);
}

TEST(ReservationsTest, RebuildAndGrow) {
  Reservations r(2);
  r.Add(5);
  r.SetFresh(1, true);
  r.Reset(3);
  EXPECT_EQ(r.reserved(), 0);
  EXPECT_EQ(r.guarantors(1), 0u);
  r.CountGuarantor(2, true);
  r.CountGuarantor(2, true);
  r.CountGuarantor(2, false);
  EXPECT_EQ(r.guarantors(2), 2u);
  EXPECT_EQ(r.reserved(), 0);  // the caller adds need(b)
  r.Grow(5);
  EXPECT_EQ(r.guarantors(4), 0u);
  EXPECT_EQ(r.guarantors(2), 2u);
  EXPECT_GE(r.MemoryUsage(), 5 * sizeof(uint32_t));
}

}  // namespace
}  // namespace thinsim
