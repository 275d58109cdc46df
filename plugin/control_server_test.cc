// ControlServer over real Unix sockets: events reach subscribers in order,
// a subscriber that does not read gets EVENTS_LOST with the exact count in
// the exact place, replies and events never interleave, pool events come
// through the pool's handler, job events reach subscribers and jobs end
// with the server, and hostile clients end only their own connection.
#include "plugin/control_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/status_test_util.h"
#include "job/testing/counting_job.h"
#include "pool/volume.h"

namespace thinsim {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// A control-socket client: raw lines both ways.
class Client {
 public:
  explicit Client(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~Client() { close(fd_); }
  bool connected() const { return connected_; }

  void Send(const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  }
  // The next line, or "" after `timeout_ms` or at EOF (eof() tells which).
  std::string ReadLine(int timeout_ms = 10000) {
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    size_t newline;
    while ((newline = buf_.find('\n')) == std::string::npos) {
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      pollfd p{fd_, POLLIN, 0};
      if (left <= 0 || poll(&p, 1, left) <= 0) return "";
      char chunk[65536];
      ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) {
        eof_ = true;
        return "";
      }
      buf_.append(chunk, static_cast<size_t>(n));
    }
    std::string line = buf_.substr(0, newline);
    buf_.erase(0, newline + 1);
    return line;
  }
  json ReadJson(int timeout_ms = 10000) {
    std::string line = ReadLine(timeout_ms);
    EXPECT_FALSE(line.empty()) << (eof_ ? "EOF" : "timeout");
    return line.empty() ? json() : json::parse(line);  // throws on a torn line
  }
  // The reply to `request`, skipping event lines.
  json Request(const std::string& request) {
    Send(request + "\n");
    while (true) {
      json j = ReadJson();
      if (j.is_null() || !j.contains("event")) return j;
    }
  }
  bool eof() const { return eof_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buf_;
};

// Reads events from `c` until the received ones and the EVENTS_LOST counts
// account for `total` events numbered 0..total-1 ("seq" in their data), and
// checks that each EVENTS_LOST stands exactly where its events are missing.
// Returns the number lost.
// `progress`, when given, follows the number of events accounted for.
uint64_t ReadAndCheckEvents(Client* c, uint64_t total, std::atomic<uint64_t>* progress = nullptr) {
  uint64_t next = 0;  // the seq the next event line must carry
  uint64_t lost = 0;
  while (next < total) {
    json e = c->ReadJson();
    if (e.is_null()) {
      ADD_FAILURE() << "stopped at event " << next << " of " << total;
      return lost;
    }
    if (!e.contains("event")) continue;  // a reply
    if (e["event"] == "EVENTS_LOST") {
      uint64_t n = e["data"]["count"];
      EXPECT_GT(n, 0u);
      EXPECT_EQ(e["data"].size(), 1u) << e.dump();
      EXPECT_TRUE(e["timestamp"].contains("seconds"));
      next += n;
      lost += n;
      continue;
    }
    EXPECT_EQ(e["data"]["seq"], next) << e.dump();
    if (e["data"]["seq"] != next) return lost;
    ++next;
    if (progress) *progress = next;
  }
  EXPECT_EQ(next, total);
  return lost;
}

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/thinsim-cst-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    PoolOptions options;
    options.size = 640 << 10;  // 10 blocks
    options.block_size = 64 << 10;
    options.low_water_percent = 100;
    ASSERT_OK(Pool::Open(options, &pool_));
    ASSERT_OK(pool_->CreateVolume("v0", 1 << 20, std::nullopt));
  }
  void TearDown() override {
    if (pool_) pool_->SetEventHandler(nullptr);
    server_.reset();
    std::string cmd = "rm -rf " + dir_;
    if (std::system(cmd.c_str()) != 0) { /* a leftover temp dir */ }
  }

  void StartServer(size_t max_queued) {
    server_ = std::make_unique<ControlServer>(pool_.get(), max_queued);
    ASSERT_OK(server_->Listen(path()));
    server_->Start();
  }
  std::string path() const { return dir_ + "/ctl.sock"; }

  std::unique_ptr<Client> Subscriber() {
    auto c = std::make_unique<Client>(path());
    EXPECT_TRUE(c->connected());
    EXPECT_EQ(c->Request(R"({"execute":"events-subscribe","id":"s"})"), json::parse(R"({"return":{},"id":"s"})"));
    return c;
  }

  void PublishSeq(uint64_t from, uint64_t to, size_t pad = 0) {
    for (uint64_t i = from; i < to; ++i) server_->Publish("TEST", {{"seq", i}, {"pad", std::string(pad, 'p')}});
  }

  std::string dir_;
  std::unique_ptr<Pool> pool_;
  std::unique_ptr<ControlServer> server_;
};

TEST_F(ControlServerTest, SlowSubscriberGetsEventsLostInPlace) {
  StartServer(8);
  auto slow = Subscriber();
  const uint64_t total = 20000;
  PublishSeq(0, total);  // slow reads nothing meanwhile
  uint64_t lost = ReadAndCheckEvents(slow.get(), total);
  EXPECT_GT(lost, 0u) << "a subscriber that read nothing for " << total << " events lost none";
  // Caught up: the next events all arrive.
  PublishSeq(total, total + 5);
  for (uint64_t i = total; i < total + 5; ++i) EXPECT_EQ(slow->ReadJson()["data"]["seq"], i);
  EXPECT_TRUE(slow->Request(R"({"execute":"query-pool","id":1})").contains("return"));
}

TEST_F(ControlServerTest, FastSubscriberSeesEveryEventInOrder) {
  StartServer(8);
  auto fast = Subscriber();
  auto slow = Subscriber();  // another one that never reads must not matter
  const uint64_t total = 3000;
  std::atomic<uint64_t> lost{~0ull};
  std::atomic<uint64_t> received{0};
  std::thread reader([&] { lost = ReadAndCheckEvents(fast.get(), total, &received); });
  // Bursts no larger than the queue, each once the reader has the last one:
  // a subscriber that keeps up, however the threads are scheduled.
  for (uint64_t i = 0; i < total; i += 4) {
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (received < i && Clock::now() < deadline) std::this_thread::yield();
    PublishSeq(i, std::min<uint64_t>(i + 4, total));
  }
  reader.join();
  EXPECT_EQ(lost, 0u);
}

TEST_F(ControlServerTest, RepliesAndEventsNeverInterleave) {
  StartServer(64);
  auto c = Subscriber();
  const int requests = 2000;
  const uint64_t total = 5000;
  std::string burst;
  for (int i = 0; i < requests; ++i) burst += R"({"execute":"query-volumes","id":)" + std::to_string(i) + "}\n";
  std::thread sender([&] { c->Send(burst); });
  std::thread publisher([&] { PublishSeq(0, total, 3000); });  // long lines: partial writes
  int next_id = 0;
  uint64_t next_seq = 0;
  while (next_id < requests || next_seq < total) {
    json j = c->ReadJson();  // a torn or mixed line does not parse
    ASSERT_FALSE(j.is_null()) << "at reply " << next_id << ", event " << next_seq;
    if (j.contains("event")) {
      if (j["event"] == "EVENTS_LOST") {
        next_seq += j["data"]["count"].get<uint64_t>();
      } else {
        ASSERT_EQ(j["data"]["seq"], next_seq);
        ++next_seq;
      }
    } else {
      ASSERT_EQ(j["id"], next_id) << j.dump().substr(0, 200);
      ASSERT_TRUE(j.contains("return"));
      ++next_id;
    }
  }
  sender.join();
  publisher.join();
}

TEST_F(ControlServerTest, JobEventsReachSubscribers) {
  StartServer(64);
  auto sub = Subscriber();
  auto job = std::make_shared<CountingJob>(JobOptions{.id = "m0"}, CountingJobSpec{.chunks = 1});
  ASSERT_OK(server_->jobs()->Start(job));
  ASSERT_TRUE(job->WaitForStatus(JobStatus::kReady));
  sub->Send(R"({"execute":"job-complete","arguments":{"id":"m0"},"id":1})" "\n");
  std::vector<std::string> seen;
  while (seen.empty() || seen.back() != "BLOCK_JOB_COMPLETED") {
    json e = sub->ReadJson();
    ASSERT_FALSE(e.is_null());
    if (!e.contains("event")) {  // the reply, between the events
      EXPECT_TRUE(e.contains("return")) << e.dump();
      continue;
    }
    seen.push_back(e["event"] == "JOB_STATUS_CHANGE" ? e["data"]["status"].get<std::string>()
                                                      : e["event"].get<std::string>());
    EXPECT_TRUE(e.contains("timestamp"));
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"created", "running", "ready", "BLOCK_JOB_READY", "waiting", "pending",
                                            "BLOCK_JOB_PENDING", "BLOCK_JOB_COMPLETED"}));
}

TEST_F(ControlServerTest, StoppingTheServerEndsItsJobs) {
  StartServer(64);
  auto job = std::make_shared<CountingJob>(JobOptions{.id = "m0"}, CountingJobSpec{.gated = true});
  ASSERT_OK(server_->jobs()->Start(job));
  server_->Stop();  // as nbdkit's .cleanup: the job's thread ends here
  EXPECT_TRUE(job->finished());
  EXPECT_EQ(job->ends().aborts, 1);
}

TEST_F(ControlServerTest, PoolEventsComeThroughTheHandler) {
  StartServer(ControlServer::kDefaultMaxQueuedEvents);
  pool_->SetEventHandler([this](const PoolEvent& e) { server_->Publish(e); });
  auto c = Subscriber();
  std::shared_ptr<Volume> v;
  ASSERT_OK(pool_->OpenVolume("v0", true, &v));
  std::string block(64 << 10, 'x');
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(pool_->Write(*v, block.data(), block.size(), 0));  // free 9 < 10: LOW_WATER
    ASSERT_OK(pool_->Trim(*v, block.size(), 0));                 // free 10: re-armed
  }
  pool_->CloseVolume(v, true);
  for (int i = 0; i < 3; ++i) {
    json e = c->ReadJson();
    EXPECT_EQ(e["event"], "LOW_WATER") << e.dump();
    EXPECT_EQ(e["data"], json::parse(R"({"mode":"write","free_blocks":9,"total_blocks":10,"threshold_blocks":10})"));
  }
}

TEST_F(ControlServerTest, HostileClientsEndOnlyTheirOwnConnection) {
  using namespace std::string_literals;
  StartServer(8);
  Client bystander(path());
  for (std::string line : {std::string("{\"execute\":\"query-pool\",\"id\":\"\xff\"}"),
                           "{\"execute\":\"volume-delete\",\"arguments\":{\"name\":\"v0\"}}\0"s,
                           std::string(100000, '['), std::string("\xc0\xaf\n\n\n")}) {
    Client c(path());
    json reply = c.Request(line);
    EXPECT_EQ(reply["error"]["class"], "Invalid") << reply.dump();
    EXPECT_TRUE(c.Request(R"({"execute":"query-pool"})").contains("return"));
    Client gone(path());
    gone.Send(line);  // and hang up mid-line
  }
  Client huge(path());
  huge.Send(std::string(2 << 20, 'x'));
  EXPECT_EQ(huge.ReadJson()["error"]["class"], "Invalid");
  EXPECT_TRUE(bystander.Request(R"({"execute":"query-volumes","id":2})").contains("return"));
  VolumeInfo info;
  EXPECT_TRUE(pool_->QueryVolume("v0", &info).ok());
}

TEST_F(ControlServerTest, StopDoesNotWaitForASubscriberThatDoesNotRead) {
  StartServer(8);
  auto slow = Subscriber();
  PublishSeq(0, 20000, 1000);  // its thread is now blocked writing
  auto start = Clock::now();
  server_->Stop();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  server_->Publish("AFTER", json::object());  // no subscribers left: nothing happens
}

}  // namespace
}  // namespace thinsim
