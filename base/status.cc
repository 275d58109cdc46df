#include "base/status.h"

#include <cerrno>

namespace thinsim {

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(ErrorClassName(code_)) + ": " + message_;
}

std::string_view ErrorClassName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "OK";
    case ErrorCode::kNoSpace: return "NoSpace";
    case ErrorCode::kNotFound: return "NotFound";
    case ErrorCode::kExists: return "Exists";
    case ErrorCode::kReadOnly: return "ReadOnly";
    case ErrorCode::kBusy: return "Busy";
    case ErrorCode::kInvalid: return "Invalid";
    case ErrorCode::kUnsupported: return "Unsupported";
    case ErrorCode::kIO: return "IO";
    case ErrorCode::kCorruption: return "Corruption";
    case ErrorCode::kUnavailable: return "Unavailable";
    case ErrorCode::kTimedOut: return "TimedOut";
    case ErrorCode::kProtocol: return "Protocol";
  }
  return "Invalid";
}

std::string_view ErrnoName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "0";
    case ErrorCode::kNoSpace: return "ENOSPC";
    case ErrorCode::kNotFound: return "ENOENT";
    case ErrorCode::kExists: return "EEXIST";
    case ErrorCode::kReadOnly: return "EROFS";
    case ErrorCode::kBusy: return "EBUSY";
    case ErrorCode::kInvalid: return "EINVAL";
    case ErrorCode::kUnsupported: return "ENOTSUP";
    case ErrorCode::kIO: return "EIO";
    case ErrorCode::kCorruption: return "EIO";
    case ErrorCode::kUnavailable: return "ECONNREFUSED";
    case ErrorCode::kTimedOut: return "ETIMEDOUT";
    case ErrorCode::kProtocol: return "EPROTO";
  }
  return "EINVAL";
}

int ErrnoValue(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return 0;
    case ErrorCode::kNoSpace: return ENOSPC;
    case ErrorCode::kNotFound: return ENOENT;
    case ErrorCode::kExists: return EEXIST;
    case ErrorCode::kReadOnly: return EROFS;
    case ErrorCode::kBusy: return EBUSY;
    case ErrorCode::kInvalid: return EINVAL;
    case ErrorCode::kUnsupported: return ENOTSUP;
    case ErrorCode::kIO: return EIO;
    case ErrorCode::kCorruption: return EIO;
    case ErrorCode::kUnavailable: return ECONNREFUSED;
    case ErrorCode::kTimedOut: return ETIMEDOUT;
    case ErrorCode::kProtocol: return EPROTO;
  }
  return EINVAL;
}

}  // namespace thinsim
