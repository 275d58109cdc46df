// ControlServer: the control socket. Accepts clients on a Unix stream
// socket, reads one JSON request per line, answers through ControlCommands,
// and sends events to clients that subscribed.
//
// Each client has one thread, and it alone writes to the client's socket:
// replies, and the events queued for it, whole lines in order, so a reply
// and an event never interleave mid-line. Publish() only queues: the event
// is formatted and written by each subscriber's thread, with no engine lock
// held. A subscriber's queue holds at most `max_queued_events`; an event
// that finds it full is counted instead, and the subscriber gets
// {"event":"EVENTS_LOST","data":{"count":N}} in its place once the events
// queued before have been written (docs/control-protocol.md).
//
// Nothing a client sends ends a server thread or the server: every request
// and every connection is served inside a catch-all.
//
// Life cycle follows nbdkit's: Listen() in .get_ready (errors still reach the
// user), Start() in .after_fork (threads do not survive fork), Stop() in
// .cleanup.
//
// Thread safety: Publish() may be called from any thread, also with pool
// locks held (it allocates and takes only the server's own short-lived
// locks; it never waits for a client). The other methods are called from
// one thread.
#ifndef THINSIM_PLUGIN_CONTROL_SERVER_H_
#define THINSIM_PLUGIN_CONTROL_SERVER_H_

#include <sys/time.h>

#include <atomic>
#include <deque>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/mutex.h"
#include "plugin/control_commands.h"
#include "pool/pool.h"
#include "base/status.h"

namespace thinsim {

class ControlServer {
 public:
  static constexpr size_t kDefaultMaxQueuedEvents = 1024;

  // REQUIRES: max_queued_events >= 1. `faults`: see ControlCommands.
  explicit ControlServer(Pool* pool, size_t max_queued_events = kDefaultMaxQueuedEvents,
                         FaultEnv* faults = nullptr)
      : commands_(pool, faults), max_queued_events_(max_queued_events) {
    commands_.SetJobEventSink(
        [this](const std::string& name, const nlohmann::json& data) { Publish(name, data); });
  }
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Binds the socket (mode 0600). Refuses a path where another server
  // answers; replaces a stale socket file.
  Status Listen(const std::string& path);
  // Renames the bound socket (after nbdkit forked, for the PID in its name).
  Status Rename(const std::string& new_path);
  const std::string& path() const { return path_; }

  void Start();
  // Ends the jobs (their events still go out), then the threads.
  void Stop();
  // ControlCommands::LoadBitmaps. REQUIRES: before the pool serves.
  Status LoadBitmaps() { return commands_.LoadBitmaps(); }
  // The server's jobs (ControlCommands::jobs); their events go to Publish.
  JobRegistry* jobs() { return commands_.jobs(); }

  // Queues an event for every current subscriber, stamped now. The first
  // form is the pool's event handler (called under the pool's lock).
  void Publish(const PoolEvent& event) noexcept;
  void Publish(std::string name, nlohmann::json data) noexcept;

 private:
  // An event as published: formatted only when written.
  struct Event {
    std::string name;
    std::variant<PoolEvent, nlohmann::json> data;
    timeval when;
  };
  struct Queued {
    std::shared_ptr<const Event> event;  // null: only a count (no memory for the event)
    uint64_t lost_after = 0;             // events dropped right after this one
  };
  struct Client {
    int fd = -1;
    int wake_fd = -1;  // eventfd: readable when `events` has something
    std::thread thread;
    std::atomic<bool> done{false};
    Mutex events_mu;  // taken after subscribers_mu_
    std::deque<Queued> events GUARDED_BY(events_mu);
  };

  void Enqueue(std::shared_ptr<const Event> event) noexcept;
  void AcceptLoop();
  bool AcceptOne();
  void Serve(Client* client);
  void ServeLoop(Client* client);
  bool HandleLines(Client* client, std::string* buffer);
  bool WriteEvents(Client* client);
  void Subscribe(Client* client);
  void Unsubscribe(Client* client);
  void ReapFinished();

  ControlCommands commands_;
  const size_t max_queued_events_;
  std::string path_;
  int listen_fd_ = -1;
  int server_pid_ = -1;  // the process that called Start()
  int wake_pipe_[2] = {-1, -1};
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};

  Mutex mu_;
  std::list<Client> clients_ GUARDED_BY(mu_);

  // Its own lock, so that Publish() (under pool locks) never waits for the
  // acceptor or a reaper. Lock order: subscribers_mu_ -> Client::events_mu.
  Mutex subscribers_mu_;
  std::vector<Client*> subscribers_ GUARDED_BY(subscribers_mu_);
};

}  // namespace thinsim

#endif  // THINSIM_PLUGIN_CONTROL_SERVER_H_
