// NbdServer: a real NBD server for the mirror layer's tests - nbdkit (its
// memory plugin, or any plugin and parameters) or qemu-nbd, serving on a
// Unix socket in a temporary directory, stopped (SIGTERM, then SIGKILL)
// and its directory removed when the object goes. Test-only code.
//
// Thread safety: one thread.
#ifndef THINSIM_MIRROR_TESTING_NBD_SERVER_H_
#define THINSIM_MIRROR_TESTING_NBD_SERVER_H_

#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace thinsim::testing {

class NbdServer {
 public:
  // nbdkit serving `plugin_args` (e.g. {"memory", "16M"}) on its socket.
  static std::vector<std::string> Nbdkit(const std::vector<std::string>& plugin_args) {
    std::vector<std::string> argv = {"nbdkit", "-f", "--exit-with-parent", "-U", kSocket, "-P", kPidFile};
    argv.insert(argv.end(), plugin_args.begin(), plugin_args.end());
    return argv;
  }

  // Starts `argv` (kSocket and kPidFile stand for the socket's and the
  // pid file's paths) and waits until the pid file holds something: nbdkit
  // and qemu-nbd write it once they listen. ok() says whether it came up.
  explicit NbdServer(std::vector<std::string> argv) {
    char tmpl[] = "/tmp/thinsim-nbd-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return;
    dir_ = tmpl;
    socket_ = dir_ + "/nbd.sock";
    pidfile_ = dir_ + "/pid";
    for (auto& a : argv) {
      if (a == kSocket) a = socket_;
      if (a == kPidFile) a = pidfile_;
    }
    argv_ = std::move(argv);
    Spawn();
  }
  ~NbdServer() {
    Stop();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  NbdServer(const NbdServer&) = delete;
  NbdServer& operator=(const NbdServer&) = delete;

  bool ok() const { return pid_ > 0 && Listening(); }
  const std::string& socket() const { return socket_; }
  // The URI of export `name` ("" for the default export).
  std::string Uri(const std::string& name = "") const { return "nbd+unix:///" + name + "?socket=" + socket_; }

  // Starts the server again on the same socket (a target that comes back).
  bool Restart() {
    Kill();
    std::filesystem::remove(pidfile_);
    std::filesystem::remove(socket_);
    Spawn();
    return ok();
  }

  // Kills the server at once (a target that crashes or goes away).
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // Stops the server (SIGTERM; SIGKILL after 5 s: nbdkit waits for its
  // clients to go).
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 500; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  static constexpr const char* kSocket = "@SOCKET@";
  static constexpr const char* kPidFile = "@PIDFILE@";

 private:
  void Spawn() {
    std::vector<char*> args;
    for (auto& a : argv_) args.push_back(a.data());
    args.push_back(nullptr);
    if (posix_spawnp(&pid_, args[0], nullptr, nullptr, args.data(), environ) != 0) {
      pid_ = -1;
      return;
    }
    for (int i = 0; i < 1000 && !Listening(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  bool Listening() const {
    struct stat st;
    return !pidfile_.empty() && stat(pidfile_.c_str(), &st) == 0 && st.st_size > 0;
  }

  std::vector<std::string> argv_;
  std::string dir_;
  std::string socket_;
  std::string pidfile_;
  pid_t pid_ = -1;
};

}  // namespace thinsim::testing

#endif  // THINSIM_MIRROR_TESTING_NBD_SERVER_H_
