#include "tools/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace thinsim {
namespace {

// A reply line longer than this is taken as a broken server.
constexpr std::size_t kMaxLineBytes = 64u << 20;

std::string ErrnoText(int err) {
  return std::error_code(err, std::system_category()).message();
}

// "60s", "1.5s", "0.25s".
std::string SecondsText(std::chrono::milliseconds ms) {
  std::string text = std::to_string(ms.count() / 1000);
  int millis = static_cast<int>(ms.count() % 1000);
  if (millis != 0) {
    std::string frac = std::to_string(1000 + millis).substr(1);  // "250"
    frac.erase(frac.find_last_not_of('0') + 1);
    text += "." + frac;
  }
  return text + "s";
}

std::string ConnectError(const std::string& path, const std::string& why) {
  return "cannot connect to control socket " + path + ": " + why +
         " (is nbdkit running with the thinsim plugin?)";
}

}  // namespace

nlohmann::json Request::ToJson(const nlohmann::json& id) const {
  nlohmann::json request = {{"execute", execute}};
  if (!arguments.empty()) request["arguments"] = arguments;
  request["id"] = id;
  return request;
}

std::string Reply::ErrorClass() const {
  if (ok || !value.is_object()) return "";
  auto it = value.find("class");
  return it != value.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string Reply::ErrorDesc() const {
  if (ok || !value.is_object()) return "";
  auto it = value.find("desc");
  return it != value.end() && it->is_string() ? it->get<std::string>() : "";
}

ControlClient::~ControlClient() { Close(); }

void ControlClient::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buffer_.clear();
}

Status ControlClient::Connect(const std::string& path) {
  Close();
  path_ = path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Status::Unavailable(ConnectError(path, "path is empty or longer than " +
                                   std::to_string(sizeof(addr.sun_path) - 1) +
                                   " bytes"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Unavailable(ConnectError(path, ErrnoText(errno)));
  int rc;
  do {
    rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int err = errno;
    ::close(fd);
    return Status::Unavailable(ConnectError(path, ErrnoText(err)));
  }
  fd_ = fd;
  return Status::OK();
}

Status ControlClient::Call(const Request& request, Reply* reply) {
  const std::string what = "reply to " + request.execute;
  if (fd_ < 0) return Status::IOError("not connected to a control socket");
  const std::int64_t id = next_id_++;
  const Clock::time_point deadline = DeadlineFromNow();
  Status status = SendAll(request.ToJson(id).dump() + "\n", deadline, what);
  if (!status.ok()) return status;
  for (;;) {
    std::string line;
    status = ReadLine(&line, deadline, what);
    if (!status.ok()) return status;
    nlohmann::json message;
    status = ParseLine(line, &message);
    if (!status.ok()) return status;
    if (message.contains("event")) {
      pending_events_.push_back(Event{std::move(line), std::move(message)});
      continue;
    }
    if (!IsReplyTo(message, id)) continue;  // not ours: skip it
    reply->ok = message.contains("return");
    reply->value = reply->ok ? message["return"] : message["error"];
    return Status::OK();
  }
}

Status ControlClient::ReadEvent(Event* event) {
  for (;;) {
    if (!pending_events_.empty()) {
      *event = std::move(pending_events_.front());
      pending_events_.pop_front();
      return Status::OK();
    }
    if (fd_ < 0) return Status::IOError("not connected to a control socket");
    std::string line;
    Status status = ReadLine(&line, Clock::time_point::max(), "events");
    if (!status.ok()) return status;
    nlohmann::json message;
    status = ParseLine(line, &message);
    if (!status.ok()) return status;
    if (message.contains("event")) {
      pending_events_.push_back(Event{std::move(line), std::move(message)});
    }
  }
}

ControlClient::Clock::time_point ControlClient::DeadlineFromNow() const {
  if (timeout_.count() <= 0) return Clock::time_point::max();
  return Clock::now() + timeout_;
}

Status ControlClient::SendAll(const std::string& data,
                                    Clock::time_point deadline,
                                    const std::string& what) {
  std::size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return Status::IOError("cannot send to control socket " + path_ + ": " + ErrnoText(errno));
    }
    Status status = WaitReady(POLLOUT, deadline, what);
    if (!status.ok()) return status;
  }
  return Status::OK();
}

Status ControlClient::ReadLine(std::string* line, Clock::time_point deadline,
                                     const std::string& what) {
  for (;;) {
    std::size_t newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      line->assign(buffer_, 0, newline);
      buffer_.erase(0, newline + 1);
      if (line->find_first_not_of(" \t\r") == std::string::npos) continue;
      return Status::OK();
    }
    if (buffer_.size() > kMaxLineBytes) {
      return Status::Protocol("control socket " + path_ + " sent a line longer than " +
                  std::to_string(kMaxLineBytes) + " bytes");
    }
    Status status = WaitReady(POLLIN, deadline, what);
    if (!status.ok()) return status;
    char chunk[65536];
    ssize_t n = ::recv(fd_, chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
    } else if (n == 0 || errno == ECONNRESET) {  // a reset is a close too
      return Status::Unavailable("control socket " + path_ + " closed the connection while waiting for " + what);
    } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
      return Status::IOError("cannot read from control socket " + path_ + ": " + ErrnoText(errno));
    }
  }
}

Status ControlClient::WaitReady(short events, Clock::time_point deadline,
                                      const std::string& what) {
  for (;;) {
    int wait_ms = -1;
    if (deadline != Clock::time_point::max()) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        return Status::TimedOut("timed out after " + SecondsText(timeout_) + " waiting for " + what + " on control socket " + path_);
      }
      wait_ms = static_cast<int>(std::min<std::int64_t>(left.count(), 1 << 30));
    }
    pollfd pfd{fd_, events, 0};
    int rc = ::poll(&pfd, 1, wait_ms);
    if (rc > 0) return Status::OK();  // ready, hung up or failed: let I/O tell
    if (rc < 0 && errno != EINTR) {
      return Status::IOError("cannot wait on control socket " + path_ + ": " + ErrnoText(errno));
    }
  }
}

Status ControlClient::ParseLine(const std::string& line, nlohmann::json* out) const {
  *out = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!out->is_object()) {
    std::string shown = line.size() > 200 ? line.substr(0, 200) + "..." : line;
    return Status::Protocol("control socket " + path_ + " sent a line that is not a JSON object: " + shown);
  }
  return Status::OK();
}

bool ControlClient::IsReplyTo(const nlohmann::json& message, std::int64_t id) {
  if (!message.contains("return") && !message.contains("error")) return false;
  auto it = message.find("id");
  return it != message.end() && it->is_number_integer() && it->get<std::int64_t>() == id;
}

}  // namespace thinsim
