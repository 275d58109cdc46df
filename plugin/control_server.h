// ControlServer: the control socket. Accepts clients on a Unix stream
// socket, reads one JSON request per line, answers through ControlCommands,
// and sends events to clients that subscribed.
//
// Life cycle follows nbdkit's: Listen() in .get_ready (errors still reach the
// user), Start() in .after_fork (threads do not survive fork), Stop() in
// .cleanup.
//
// Thread safety: Publish() may be called from any thread, also with pool
// locks held (it never blocks on a client: a subscriber that does not read
// loses events). The other methods are called from one thread.
#ifndef THINSIM_PLUGIN_CONTROL_SERVER_H_
#define THINSIM_PLUGIN_CONTROL_SERVER_H_

#include <atomic>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "plugin/control_commands.h"
#include "pool/status.h"

namespace thinsim {

class ControlServer {
 public:
  explicit ControlServer(Pool* pool) : commands_(pool) {}
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
  void Stop();

  // Sends an event line to every subscriber.
  void Publish(const std::string& event_line);

 private:
  struct Client {
    int fd;
    std::thread thread;
    std::atomic<bool> done{false};
    std::mutex write_mu;  // one line at a time: replies and events never interleave
  };

  void AcceptLoop();
  void Serve(Client* client);
  void Unsubscribe(Client* client);
  void ReapFinished();

  ControlCommands commands_;
  std::string path_;
  int listen_fd_ = -1;
  int server_pid_ = -1;  // the process that called Start()
  int wake_pipe_[2] = {-1, -1};
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};

  std::mutex mu_;
  std::list<Client> clients_;       // guarded by mu_
  std::vector<Client*> subscribers_;  // guarded by mu_
};

}  // namespace thinsim

#endif  // THINSIM_PLUGIN_CONTROL_SERVER_H_
