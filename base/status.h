// Status: the typed result of every engine operation.
//
// The engine never throws across its API: a failure is a Status value whose
// code() says which class of error it is and whose message() says, in words a
// user can act on, what was wrong. The plugin maps the class to an errno; the
// control server maps it to a JSON error class (docs/control-protocol.md).
//
// Thread safety: a Status is a value; distinct objects may be used from
// different threads without synchronisation.
#ifndef THINSIM_BASE_STATUS_H_
#define THINSIM_BASE_STATUS_H_

#include <string>
#include <string_view>
#include <utility>

namespace thinsim {

enum class ErrorCode {
  kOk = 0,
  kNoSpace,      // not enough free data blocks (ENOSPC)
  kNotFound,     // no such volume (ENOENT)
  kExists,       // a volume of that name already exists (EEXIST)
  kReadOnly,     // the volume is a read-only snapshot (EROFS)
  kBusy,         // the volume has open connections (EBUSY)
  kInvalid,      // bad argument: name, size, offset, flag (EINVAL)
  kUnsupported,  // a valid request this build cannot serve (ENOTSUP)
  kIO,           // the data store failed (EIO)
  kCorruption,   // metadata failed its checks (EIO)
  // Control-client outcomes (tools/control_client.h):
  kUnavailable,  // no connection: socket missing or refused, or closed by the server (ECONNREFUSED)
  kTimedOut,     // no reply within the timeout (ETIMEDOUT)
  kProtocol,     // the peer sent something that is not the protocol (EPROTO)
};

class Status {
 public:
  Status() = default;  // OK

  static Status OK() { return Status(); }
  static Status NoSpace(std::string msg) { return {ErrorCode::kNoSpace, std::move(msg)}; }
  static Status NotFound(std::string msg) { return {ErrorCode::kNotFound, std::move(msg)}; }
  static Status Exists(std::string msg) { return {ErrorCode::kExists, std::move(msg)}; }
  static Status ReadOnly(std::string msg) { return {ErrorCode::kReadOnly, std::move(msg)}; }
  static Status Busy(std::string msg) { return {ErrorCode::kBusy, std::move(msg)}; }
  static Status Invalid(std::string msg) { return {ErrorCode::kInvalid, std::move(msg)}; }
  static Status Unsupported(std::string msg) { return {ErrorCode::kUnsupported, std::move(msg)}; }
  static Status IOError(std::string msg) { return {ErrorCode::kIO, std::move(msg)}; }
  static Status Corruption(std::string msg) { return {ErrorCode::kCorruption, std::move(msg)}; }
  static Status Unavailable(std::string msg) { return {ErrorCode::kUnavailable, std::move(msg)}; }
  static Status TimedOut(std::string msg) { return {ErrorCode::kTimedOut, std::move(msg)}; }
  static Status Protocol(std::string msg) { return {ErrorCode::kProtocol, std::move(msg)}; }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "NoSpace: need 3 blocks, 1 free" or "OK".
  std::string ToString() const;

 private:
  Status(ErrorCode code, std::string msg) : code_(code), message_(std::move(msg)) {}

  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

// The class name used on the control socket ("NoSpace", "NotFound", ...).
std::string_view ErrorClassName(ErrorCode code);
// The errno name used on the control socket ("ENOSPC", ...).
std::string_view ErrnoName(ErrorCode code);
// The errno value the plugin reports for this class.
int ErrnoValue(ErrorCode code);

}  // namespace thinsim

// Returns early from the enclosing function when `expr` is not OK.
#define THINSIM_RETURN_IF_ERROR(expr)        \
  do {                                       \
    ::thinsim::Status _thinsim_s = (expr);   \
    if (!_thinsim_s.ok()) return _thinsim_s; \
  } while (0)

#endif  // THINSIM_BASE_STATUS_H_
