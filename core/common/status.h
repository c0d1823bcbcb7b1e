// Status: the result of a core operation that can fail. Codes mirror the
// berth_status values of the C ABI one to one, so the C layer only copies them.
// Thread-compatible value type.
#pragma once

#include <string>
#include <utility>

namespace berth {

enum class Code : int {
  kOk = 0,
  kEmpty = 1,
  kInvalidArgument = 2,
  kInvalidName = 3,
  kNotFound = 4,
  kBadBuffer = 5,
  kNoMemory = 6,
  kInternal = 7,
  kNotSynced = 8,
  kBadSelector = 9,
  kTimeout = 10,
  kBadRegion = 11,
};

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK; costs no allocation.
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

}  // namespace berth
