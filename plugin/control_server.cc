#include "plugin/control_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace thinsim {

namespace {

// A request line longer than this closes the connection.
constexpr size_t kMaxLine = 1 << 20;

Status SocketAddress(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof addr->sun_path) {
    return Status::Invalid("control: socket path is too long (" + std::to_string(path.size()) +
                           " bytes, at most " + std::to_string(sizeof addr->sun_path - 1) + ")");
  }
  std::memcpy(addr->sun_path, path.c_str(), path.size());
  return Status::OK();
}

// True when a server answers on `path`.
bool SomeoneListens(const sockaddr_un& addr) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool ok = connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

bool WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

ControlServer::~ControlServer() {
  Stop();
  if (listen_fd_ >= 0) close(listen_fd_);
  // Only the process that served the socket removes it: the parent nbdkit
  // leaves behind when it daemonises must not take it from its child.
  if (listen_fd_ >= 0 && server_pid_ == getpid()) unlink(path_.c_str());
}

Status ControlServer::Listen(const std::string& path) {
  sockaddr_un addr;
  THINSIM_RETURN_IF_ERROR(SocketAddress(path, &addr));
  if (SomeoneListens(addr)) {
    return Status::Busy("control: another server is listening on " + path);
  }
  unlink(path.c_str());  // a stale socket from a crashed server
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IOError(std::string("control: socket: ") + std::strerror(errno));
  mode_t old_mask = umask(0177);  // sockets are created 0777 & ~umask: 0600
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  umask(old_mask);
  if (rc != 0 || listen(fd, 16) != 0) {
    Status s = Status::IOError("control: cannot listen on " + path + ": " + std::strerror(errno));
    close(fd);
    return s;
  }
  listen_fd_ = fd;
  path_ = path;
  return Status::OK();
}

Status ControlServer::Rename(const std::string& new_path) {
  sockaddr_un addr;
  THINSIM_RETURN_IF_ERROR(SocketAddress(new_path, &addr));
  if (rename(path_.c_str(), new_path.c_str()) != 0) {
    return Status::IOError("control: cannot rename " + path_ + " to " + new_path + ": " +
                           std::strerror(errno));
  }
  path_ = new_path;
  return Status::OK();
}

void ControlServer::Start() {
  if (listen_fd_ < 0 || acceptor_.joinable()) return;
  if (pipe2(wake_pipe_, O_CLOEXEC) != 0) return;
  server_pid_ = getpid();
  stopping_ = false;
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

void ControlServer::Stop() {
  if (!acceptor_.joinable()) return;
  stopping_ = true;
  if (write(wake_pipe_[1], "x", 1) < 0) { /* the acceptor polls with a timeout too */ }
  acceptor_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Client& c : clients_) shutdown(c.fd, SHUT_RDWR);
  }
  for (Client& c : clients_) {
    if (c.thread.joinable()) c.thread.join();
    close(c.fd);
  }
  clients_.clear();
  subscribers_.clear();
  close(wake_pipe_[0]);
  close(wake_pipe_[1]);
}

void ControlServer::AcceptLoop() {
  while (!stopping_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    int n = poll(fds, 2, 1000);
    ReapFinished();
    if (n <= 0 || !(fds[0].revents & POLLIN)) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard<std::mutex> lock(mu_);
    Client& c = clients_.emplace_back();
    c.fd = fd;
    c.thread = std::thread([this, &c] { Serve(&c); });
  }
}

void ControlServer::ReapFinished() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = clients_.begin(); it != clients_.end();) {
    if (!it->done) {
      ++it;
      continue;
    }
    it->thread.join();
    close(it->fd);
    it = clients_.erase(it);
  }
}

void ControlServer::Serve(Client* client) {
  std::string buffer;
  char chunk[4096];
  bool open = true;
  while (open && !stopping_) {
    ssize_t n = recv(client->fd, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
    size_t newline;
    while (open && (newline = buffer.find('\n')) != std::string::npos) {
      std::string line = buffer.substr(0, newline);
      buffer.erase(0, newline + 1);
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
      ControlCommands::Reply reply = commands_.Execute(line);
      // Subscribe before replying, so that no event after the reply is lost
      // (one may arrive before it; clients skip event lines while waiting).
      if (reply.subscribe) {
        std::lock_guard<std::mutex> lock(mu_);
        if (std::find(subscribers_.begin(), subscribers_.end(), client) == subscribers_.end()) {
          subscribers_.push_back(client);
        }
      }
      std::lock_guard<std::mutex> lock(client->write_mu);
      open = WriteAll(client->fd, reply.line + "\n");
    }
    if (buffer.size() > kMaxLine) {
      std::lock_guard<std::mutex> lock(client->write_mu);
      WriteAll(client->fd,
               "{\"error\":{\"class\":\"Invalid\",\"errno\":\"EINVAL\",\"desc\":"
               "\"request line longer than 1 MiB; closing\"}}\n");
      break;
    }
  }
  Unsubscribe(client);
  client->done = true;
}

void ControlServer::Unsubscribe(Client* client) {
  std::lock_guard<std::mutex> lock(mu_);
  subscribers_.erase(std::remove(subscribers_.begin(), subscribers_.end(), client), subscribers_.end());
}

void ControlServer::Publish(const std::string& event_line) {
  std::string line = event_line + "\n";
  std::lock_guard<std::mutex> lock(mu_);
  for (Client* c : subscribers_) {
    // Never block the publisher: a client busy with a reply, or whose socket
    // buffer is full, misses the event. A line cut short would corrupt the
    // stream, so such a client is disconnected.
    std::unique_lock<std::mutex> write_lock(c->write_mu, std::try_to_lock);
    if (!write_lock.owns_lock()) continue;
    ssize_t n = send(c->fd, line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0 && static_cast<size_t>(n) < line.size()) shutdown(c->fd, SHUT_RDWR);
  }
}

}  // namespace thinsim
