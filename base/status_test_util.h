// Test helpers: assertions on a Status that print its message on failure.
// For the pool's GoogleTest files only.
#ifndef THINSIM_BASE_STATUS_TEST_UTIL_H_
#define THINSIM_BASE_STATUS_TEST_UTIL_H_

#include <gtest/gtest.h>

#include "base/status.h"

#define EXPECT_CODE(expr, code_)                                                    \
  do {                                                                              \
    ::thinsim::Status _s = (expr);                                                  \
    EXPECT_EQ(_s.code(), ::thinsim::ErrorCode::code_) << #expr << " gave " << _s.ToString(); \
  } while (0)
#define EXPECT_OK(expr)                                         \
  do {                                                          \
    ::thinsim::Status _s = (expr);                              \
    EXPECT_TRUE(_s.ok()) << #expr << " gave " << _s.ToString(); \
  } while (0)
#define ASSERT_OK(expr)                                         \
  do {                                                          \
    ::thinsim::Status _s = (expr);                              \
    ASSERT_TRUE(_s.ok()) << #expr << " gave " << _s.ToString(); \
  } while (0)

#endif  // THINSIM_BASE_STATUS_TEST_UTIL_H_
