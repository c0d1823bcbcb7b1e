// Small helpers shared by the C ABI tests.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "capi/berth.h"

namespace berth::testing {

// berth_last_error as a string, checking its length out-parameter.
inline std::string LastError() {
  size_t len = 0;
  const char* msg = berth_last_error(&len);
  EXPECT_EQ(std::strlen(msg), len);
  return std::string(msg, len);
}

// The bytes of a buffer, which is then freed.
inline std::string TakeBytes(berth_buffer* buf) {
  const uint8_t* data = nullptr;
  size_t len = 0;
  EXPECT_EQ(berth_buffer_data(&data, &len, buf), BERTH_OK);
  std::string out(reinterpret_cast<const char*>(data), len);
  berth_buffer_free(buf);
  return out;
}

}  // namespace berth::testing
