#include "plugin/control_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
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

// Sent instead of a reply when even an error reply could not be built.
constexpr char kNoReplyLine[] =
    "{\"error\":{\"class\":\"Invalid\",\"errno\":\"EINVAL\",\"desc\":\"internal error\"}}\n";

bool IsBlank(std::string_view line) { return line.find_first_not_of(" \t\r") == std::string_view::npos; }

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
  // Non-blocking, so that the acceptor takes every waiting client per wake.
  if (rc != 0 || listen(fd, SOMAXCONN) != 0 || fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
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
  commands_.ShutdownJobs();  // first: a job's events go through this server
  if (!acceptor_.joinable()) return;
  stopping_ = true;
  if (write(wake_pipe_[1], "x", 1) < 0) { /* the acceptor polls with a timeout too */ }
  acceptor_.join();
  {
    // Wakes every client thread, also one blocked writing to a client that
    // does not read, and joins them. Holding mu_ meanwhile is safe: client
    // threads never take it (only the acceptor, now stopped, does).
    MutexLock lock(&mu_);
    for (Client& c : clients_) shutdown(c.fd, SHUT_RDWR);
    for (Client& c : clients_) {
      if (c.thread.joinable()) c.thread.join();
      close(c.fd);
      close(c.wake_fd);
    }
    clients_.clear();
  }
  {
    MutexLock lock(&subscribers_mu_);
    subscribers_.clear();  // already empty: each thread unsubscribed
  }
  close(wake_pipe_[0]);
  close(wake_pipe_[1]);
}

void ControlServer::AcceptLoop() {
  while (!stopping_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    int n = poll(fds, 2, 1000);
    ReapFinished();
    if (n <= 0 || !(fds[0].revents & POLLIN)) continue;
    while (!stopping_ && AcceptOne()) {
    }
  }
}

// Accepts one waiting client and starts its thread. False when none waits
// (or accept failed: the acceptor polls again).
bool ControlServer::AcceptOne() {
  // Accepted sockets are blocking (accept4 does not pass O_NONBLOCK on).
  int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return errno == EINTR || errno == ECONNABORTED;
  int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) {
    close(fd);
    return true;
  }
  try {
    MutexLock lock(&mu_);
    Client& c = clients_.emplace_back();
    c.fd = fd;
    c.wake_fd = wake_fd;
    try {
      c.thread = std::thread([this, &c] { Serve(&c); });
    } catch (const std::exception&) {
      clients_.pop_back();
      throw;
    }
  } catch (const std::exception&) {
    // No memory or no thread for this client: refuse it, keep serving.
    close(fd);
    close(wake_fd);
  }
  return true;
}

void ControlServer::ReapFinished() {
  MutexLock lock(&mu_);
  for (auto it = clients_.begin(); it != clients_.end();) {
    if (!it->done) {
      ++it;
      continue;
    }
    it->thread.join();
    close(it->fd);
    close(it->wake_fd);
    it = clients_.erase(it);
  }
}

void ControlServer::Serve(Client* client) {
  try {
    ServeLoop(client);
  } catch (...) {
    // ControlCommands::Execute catches everything already; this catch is so
    // that nothing a client causes can end the server: only its connection
    // ends.
  }
  Unsubscribe(client);
  client->done = true;
}

void ControlServer::ServeLoop(Client* client) {
  std::string buffer;
  char chunk[4096];
  while (!stopping_) {
    pollfd fds[2] = {{client->fd, POLLIN, 0}, {client->wake_fd, POLLIN, 0}};
    // No timeout: Stop() shuts the socket down, which wakes the poll.
    int n = poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;
    if (fds[1].revents & POLLIN) {
      uint64_t count;
      if (read(client->wake_fd, &count, sizeof count) < 0) { /* EAGAIN: already drained */ }
      if (!WriteEvents(client)) return;
    }
    if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    ssize_t got = recv(client->fd, chunk, sizeof chunk, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return;
    buffer.append(chunk, static_cast<size_t>(got));
    if (!HandleLines(client, &buffer)) return;
  }
}

// Answers every complete line in *buffer and drops them from it. False when
// the connection is to close.
bool ControlServer::HandleLines(Client* client, std::string* buffer) {
  size_t start = 0;
  size_t newline;
  while ((newline = buffer->find('\n', start)) != std::string::npos) {
    std::string_view line(buffer->data() + start, newline - start);
    start = newline + 1;
    if (IsBlank(line)) continue;
    ControlCommands::Reply reply = commands_.Execute(line);
    // Subscribe before replying: events from now on are queued and written
    // after the reply.
    if (reply.subscribe) Subscribe(client);
    bool sent = reply.line.empty() ? WriteAll(client->fd, kNoReplyLine)
                                   : WriteAll(client->fd, reply.line + "\n");
    if (!sent || !WriteEvents(client)) return false;
  }
  buffer->erase(0, start);
  if (buffer->size() > kMaxLine) {
    WriteAll(client->fd,
             "{\"error\":{\"class\":\"Invalid\",\"errno\":\"EINVAL\",\"desc\":"
             "\"request line longer than 1 MiB; closing\"}}\n");
    return false;
  }
  return true;
}

// Writes the client's queued events, each followed by EVENTS_LOST when
// events were dropped after it. Blocks while the client does not read; new
// events meanwhile wait in the queue or are counted. False when the
// connection is to close.
bool ControlServer::WriteEvents(Client* client) {
  while (true) {
    Queued next;
    {
      MutexLock lock(&client->events_mu);
      if (client->events.empty()) return true;
      next = std::move(client->events.front());
      client->events.pop_front();
    }
    std::string lines;
    if (next.event) {
      const Event& e = *next.event;
      const PoolEvent* pool_event = std::get_if<PoolEvent>(&e.data);
      lines = ControlCommands::EventLine(
                  e.name, pool_event ? ControlCommands::PoolEventJson(*pool_event) : std::get<nlohmann::json>(e.data),
                  e.when) +
              "\n";
    }
    if (next.lost_after > 0) {
      timeval now;
      gettimeofday(&now, nullptr);
      lines += ControlCommands::EventLine("EVENTS_LOST", {{"count", next.lost_after}}, now) + "\n";
    }
    if (!WriteAll(client->fd, lines)) return false;
  }
}

void ControlServer::Subscribe(Client* client) {
  MutexLock lock(&subscribers_mu_);
  if (std::find(subscribers_.begin(), subscribers_.end(), client) == subscribers_.end()) {
    subscribers_.push_back(client);
  }
}

void ControlServer::Unsubscribe(Client* client) {
  MutexLock lock(&subscribers_mu_);
  subscribers_.erase(std::remove(subscribers_.begin(), subscribers_.end(), client), subscribers_.end());
}

void ControlServer::Publish(const PoolEvent& event) noexcept {
  std::shared_ptr<Event> e;
  try {
    e = std::make_shared<Event>(Event{event.name, event, {}});
    gettimeofday(&e->when, nullptr);
  } catch (const std::bad_alloc&) {
    e.reset();  // counted as lost below
  }
  Enqueue(std::move(e));
}

void ControlServer::Publish(std::string name, nlohmann::json data) noexcept {
  std::shared_ptr<Event> e;
  try {
    e = std::make_shared<Event>(Event{std::move(name), std::move(data), {}});
    gettimeofday(&e->when, nullptr);
  } catch (const std::bad_alloc&) {
    e.reset();
  }
  Enqueue(std::move(e));
}

// Called under pool locks: only queues, counts and wakes; never waits for a
// client. A null `event` (no memory to copy it) is counted as lost.
void ControlServer::Enqueue(std::shared_ptr<const Event> event) noexcept {
  MutexLock lock(&subscribers_mu_);
  for (Client* c : subscribers_) {
    {
      MutexLock events_lock(&c->events_mu);
      bool queued = false;
      if (event && c->events.size() < max_queued_events_) {
        try {
          c->events.push_back(Queued{event, 0});
          queued = true;
        } catch (const std::bad_alloc&) {
        }
      }
      if (!queued) {
        if (c->events.empty()) {
          // Only when out of memory: an entry without an event carries the
          // count (it cannot be allocated either; then the loss goes
          // uncounted, the one case that does).
          try {
            c->events.push_back(Queued{nullptr, 1});
          } catch (const std::bad_alloc&) {
          }
        } else {
          ++c->events.back().lost_after;
        }
      }
    }
    uint64_t one = 1;
    // A non-blocking eventfd: never waits; a full counter still reads as
    // readable, which is all the wake needs.
    if (write(c->wake_fd, &one, sizeof one) < 0) { /* EAGAIN: already awake */ }
  }
}

}  // namespace thinsim
