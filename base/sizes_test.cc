#include "base/sizes.h"

#include <cerrno>
#include <string>

#include <gtest/gtest.h>

#include "base/status.h"
#include "base/types.h"

namespace thinsim {
namespace {

uint64_t Parse(std::string_view text) {
  uint64_t v = 12345;
  Status s = ParseSize(text, "size", &v);
  EXPECT_TRUE(s.ok()) << text << ": " << s.ToString();
  return v;
}

TEST(ParseSizeTest, PlainNumbers) {
  EXPECT_EQ(Parse("0"), 0u);
  EXPECT_EQ(Parse("1"), 1u);
  EXPECT_EQ(Parse("65536"), 65536u);
  EXPECT_EQ(Parse("007"), 7u);
  EXPECT_EQ(Parse("9223372036854775807"), 9223372036854775807ull);
}

TEST(ParseSizeTest, SuffixesInEitherCase) {
  EXPECT_EQ(Parse("3b"), 3u);
  EXPECT_EQ(Parse("3B"), 3u);
  EXPECT_EQ(Parse("2s"), 1024u);
  EXPECT_EQ(Parse("2S"), 1024u);
  EXPECT_EQ(Parse("64K"), 65536u);
  EXPECT_EQ(Parse("64k"), 65536u);
  EXPECT_EQ(Parse("1M"), 1u << 20);
  EXPECT_EQ(Parse("1m"), 1u << 20);
  EXPECT_EQ(Parse("1G"), 1ull << 30);
  EXPECT_EQ(Parse("5g"), 5ull << 30);
  EXPECT_EQ(Parse("1T"), 1ull << 40);
  EXPECT_EQ(Parse("1P"), 1ull << 50);
  EXPECT_EQ(Parse("7E"), 7ull << 60);
  EXPECT_EQ(Parse("0K"), 0u);
}

TEST(ParseSizeTest, Errors) {
  for (const char* bad : {"", "K", "-1", "+1", " 1", "1 ", "1.5G", "1KB", "1Q", "64KiB", "0x10",
                          "1e3", "abc", "8E", "16E", "9223372036854775808", "99999999999999999999",
                          "18446744073709551616", "10000000T"}) {
    uint64_t v = 42;
    Status s = ParseSize(bad, "block-size", &v);
    EXPECT_EQ(s.code(), ErrorCode::kInvalid) << "'" << bad << "' gave " << s.ToString();
    EXPECT_NE(s.message().find("block-size"), std::string::npos) << s.message();
    EXPECT_EQ(v, 42u) << "output changed on error for '" << bad << "'";
  }
}

TEST(FormatSizeTest, Values) {
  EXPECT_EQ(FormatSize(0), "0");
  EXPECT_EQ(FormatSize(1000), "1000");
  EXPECT_EQ(FormatSize(1023), "1023");
  EXPECT_EQ(FormatSize(1024), "1K");
  EXPECT_EQ(FormatSize(4096), "4K");
  EXPECT_EQ(FormatSize(65536), "64K");
  EXPECT_EQ(FormatSize(1536), "1.5K");
  EXPECT_EQ(FormatSize(1u << 20), "1M");
  EXPECT_EQ(FormatSize(1610612736), "1.5G");
  EXPECT_EQ(FormatSize(1ull << 40), "1T");
  EXPECT_EQ(FormatSize(3ull << 50), "3P");
  EXPECT_EQ(FormatSize(1ull << 60), "1E");
  EXPECT_EQ(FormatSize(8ull << 60), "8E");
}

TEST(FormatSizeTest, RoundTripsWholeUnits) {
  for (uint64_t v : {1ull << 10, 7ull << 20, 64ull << 30, 3ull << 40, 5ull << 60}) {
    uint64_t back = 0;
    ASSERT_TRUE(ParseSize(FormatSize(v), "size", &back).ok()) << FormatSize(v);
    EXPECT_EQ(back, v);
  }
}

TEST(VolumeNameTest, Valid) {
  for (std::string name : {std::string("a"), std::string("vol0"), std::string("A.b_c-9"),
                           std::string(64, 'x'), std::string("a."), std::string("a..b"),
                           std::string("a-"), std::string("_x"), std::string("9"),
                           std::string("x.-_")}) {
    EXPECT_TRUE(ValidateVolumeName(name).ok()) << name;
  }
}

TEST(VolumeNameTest, Invalid) {
  for (std::string name : {std::string(), std::string(65, 'x'), std::string("a b"), std::string("a/b"),
                           std::string("vol:1"), std::string("é"), std::string("a\n"),
                           std::string("a\0b", 3), std::string("x*"), std::string("."),
                           std::string(".."), std::string("..."), std::string(".x"),
                           std::string("-"), std::string("-x"), std::string("--help"),
                           std::string(".") + std::string(63, 'x')}) {
    Status s = ValidateVolumeName(name);
    EXPECT_EQ(s.code(), ErrorCode::kInvalid) << name;
    EXPECT_FALSE(s.message().empty());
  }
}

TEST(VolumeNameTest, MessagesNameTheKind) {
  EXPECT_EQ(ValidateVolumeName("").message(),
            "volume name must be 1-64 characters of [A-Za-z0-9._-], got ''");
  EXPECT_EQ(ValidateName("-b", "bitmap").message(), "bitmap name '-b' must not start with '-'");
  EXPECT_EQ(ValidateName("a b", "bitmap").message(),
            "bitmap name 'a b' has a character outside [A-Za-z0-9._-]");
  EXPECT_TRUE(ValidateName("b0", "bitmap").ok());
}

TEST(StrategyTest, NamesRoundTrip) {
  for (Strategy s : {Strategy::kNone, Strategy::kProvision, Strategy::kVolume, Strategy::kFull}) {
    Strategy back = Strategy::kFull;
    ASSERT_TRUE(ParseStrategy(StrategyName(s), &back)) << StrategyName(s);
    EXPECT_EQ(back, s);
  }
  EXPECT_EQ(StrategyName(Strategy::kNone), "none");
  EXPECT_EQ(StrategyName(Strategy::kProvision), "provision");
  EXPECT_EQ(StrategyName(Strategy::kVolume), "volume");
  EXPECT_EQ(StrategyName(Strategy::kFull), "full");
  Strategy out = Strategy::kVolume;
  EXPECT_FALSE(ParseStrategy("None", &out));
  EXPECT_FALSE(ParseStrategy("", &out));
  EXPECT_FALSE(ParseStrategy("fully", &out));
  EXPECT_EQ(out, Strategy::kVolume);
}

TEST(PoolModeTest, Names) {
  EXPECT_EQ(PoolModeName(PoolMode::kWrite), "write");
  EXPECT_EQ(PoolModeName(PoolMode::kOutOfDataSpace), "out-of-data-space");
  EXPECT_EQ(PoolModeName(PoolMode::kReadOnly), "read-only");
  EXPECT_EQ(PoolModeName(PoolMode::kFail), "fail");
}

TEST(StatusTest, ClassesAndErrnos) {
  EXPECT_TRUE(Status::OK().ok());
  EXPECT_EQ(Status::OK().ToString(), "OK");
  Status s = Status::NoSpace("need 3 blocks, 1 free");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.ToString(), "NoSpace: need 3 blocks, 1 free");
  struct Case {
    Status s;
    const char* cls;
    const char* errname;
    int err;
  } cases[] = {
      {Status::NoSpace("x"), "NoSpace", "ENOSPC", ENOSPC},
      {Status::NotFound("x"), "NotFound", "ENOENT", ENOENT},
      {Status::Exists("x"), "Exists", "EEXIST", EEXIST},
      {Status::ReadOnly("x"), "ReadOnly", "EROFS", EROFS},
      {Status::Busy("x"), "Busy", "EBUSY", EBUSY},
      {Status::Invalid("x"), "Invalid", "EINVAL", EINVAL},
      {Status::Unsupported("x"), "Unsupported", "ENOTSUP", ENOTSUP},
      {Status::IOError("x"), "IO", "EIO", EIO},
      {Status::Corruption("x"), "Corruption", "EIO", EIO},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ErrorClassName(c.s.code()), c.cls);
    EXPECT_EQ(ErrnoName(c.s.code()), c.errname);
    EXPECT_EQ(ErrnoValue(c.s.code()), c.err);
    EXPECT_EQ(c.s.message(), "x");
  }
  EXPECT_EQ(ErrnoValue(ErrorCode::kOk), 0);
}

}  // namespace
}  // namespace thinsim
