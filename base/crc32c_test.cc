// CRC-32C against published vectors (RFC 3720 appendix B.4, leveldb's
// crc32c_test) and its extension property.
#include "base/crc32c.h"

#include <gtest/gtest.h>

#include <string>

namespace thinsim {
namespace {

TEST(Crc32c, StandardCheckValue) {
  EXPECT_EQ(Crc32c(0, "123456789", 9), 0xe3069283u);
}

TEST(Crc32c, Rfc3720Vectors) {
  char buf[32];
  std::fill(buf, buf + 32, 0);
  EXPECT_EQ(Crc32c(0, buf, sizeof(buf)), 0x8a9136aau);
  std::fill(buf, buf + 32, static_cast<char>(0xff));
  EXPECT_EQ(Crc32c(0, buf, sizeof(buf)), 0x62a8ab43u);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<char>(i);
  EXPECT_EQ(Crc32c(0, buf, sizeof(buf)), 0x46dd794eu);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<char>(31 - i);
  EXPECT_EQ(Crc32c(0, buf, sizeof(buf)), 0x113fdb5cu);
}

TEST(Crc32c, EmptyInputIsZero) { EXPECT_EQ(Crc32c(0, "", 0), 0u); }

TEST(Crc32c, ExtendsAcrossPieces) {
  std::string a = "hello ", b = "world";
  std::string ab = a + b;
  EXPECT_EQ(Crc32c(Crc32c(0, a.data(), a.size()), b.data(), b.size()), Crc32c(0, ab.data(), ab.size()));
}

TEST(Crc32c, DetectsEverySingleBitFlip) {
  std::string data = "thinsim metadata record";
  uint32_t good = Crc32c(0, data.data(), data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = data;
      flipped[i] = static_cast<char>(flipped[i] ^ (1 << bit));
      EXPECT_NE(Crc32c(0, flipped.data(), flipped.size()), good) << "byte " << i << " bit " << bit;
    }
  }
}

}  // namespace
}  // namespace thinsim
