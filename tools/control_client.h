// A client for the thinsim control socket (docs/control-protocol.md): one
// JSON object per line, in the style of QMP. This library only speaks the
// socket protocol; it knows nothing about pools or volumes.

#ifndef THINSIM_TOOLS_CONTROL_CLIENT_H_
#define THINSIM_TOOLS_CONTROL_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace thinsim {

// A control request: the command to execute and its arguments. Arguments are
// a JSON object; when it is empty the "arguments" key is left out of the
// request line.
//
// Thread safety: a plain value type.
struct Request {
  std::string execute;
  nlohmann::json arguments = nlohmann::json::object();

  // The request as a JSON object carrying `id`.
  nlohmann::json ToJson(const nlohmann::json& id) const;
};

// The server's answer to one request: either a `return` value or an `error`
// object ({"class", "errno", "desc"}).
//
// Thread safety: a plain value type.
struct Reply {
  bool ok = false;        // true: `value` is the "return" value
  nlohmann::json value;   // the return value, or the error object

  // The error's "class" and "desc" (empty strings when absent or when ok).
  std::string ErrorClass() const;
  std::string ErrorDesc() const;
};

// A client operation's outcome is a Status (base/status.h): Unavailable
// (socket missing, refused, path too long, or closed by the server), IO
// (send or receive failed), TimedOut (no reply within the timeout) or
// Protocol (the server sent something that is not protocol). The message is
// complete and human readable: it names the socket and the command concerned.

// One event line received from the server, as received and as parsed.
struct Event {
  std::string line;     // the raw line, without its newline
  nlohmann::json json;  // {"event", "data", "timestamp"}
};

// ControlClient is one connection to a control socket. Call() sends one
// request and waits for the reply carrying the same id; event lines that
// arrive while waiting are kept and handed out later by ReadEvent().
//
// Thread safety: not thread-safe. Use one client from one thread at a time.
class ControlClient {
 public:
  ControlClient() = default;
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // How long Call() waits for its reply. Zero means forever. Default 60s.
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

  // Connects to the Unix stream socket at `path`.
  Status Connect(const std::string& path);

  // Sends `request` with a fresh id and stores the matching reply in *reply.
  // A server error is a successful call with reply->ok == false.
  Status Call(const Request& request, Reply* reply);

  // Waits, without a time limit, for the next event line. Returns kClosed
  // when the server closes the connection.
  Status ReadEvent(Event* event);

  // Closes the connection (also done by the destructor).
  void Close();

 private:
  using Clock = std::chrono::steady_clock;

  // The point in time a wait must give up; time_point::max() for none.
  Clock::time_point DeadlineFromNow() const;
  Status SendAll(const std::string& data, Clock::time_point deadline,
                       const std::string& what);
  Status ReadLine(std::string* line, Clock::time_point deadline,
                        const std::string& what);
  // Waits until fd_ is ready for `events` (POLLIN/POLLOUT) or the deadline.
  Status WaitReady(short events, Clock::time_point deadline,
                         const std::string& what);
  // Parses one received line as a JSON object.
  Status ParseLine(const std::string& line, nlohmann::json* out) const;
  // Whether `message` is the reply to request `id`.
  static bool IsReplyTo(const nlohmann::json& message, std::int64_t id);

  int fd_ = -1;
  std::string path_;
  std::string buffer_;  // bytes received but not yet returned as lines
  std::deque<Event> pending_events_;
  std::int64_t next_id_ = 1;
  std::chrono::milliseconds timeout_{60000};
};

}  // namespace thinsim

#endif  // THINSIM_TOOLS_CONTROL_CLIENT_H_
