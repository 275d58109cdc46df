// Fuzz target: control-protocol request lines into ControlCommands::Execute
// over a real in-memory Pool.
//
// Input: request lines separated by '\n', executed in order on one pool, so
// that bugs needing state (a volume created, then snapshotted, then
// deleted) are reachable. Every input starts from the same pool: 128
// blocks of 4K holding "vol0" (256K, its first 8 blocks written) and its
// writable snapshot "snap0", so that provision, resize and delete meet
// mapped and shared blocks.
//
// Properties, any violation abort()s:
//   - Execute never throws and never crashes; nothing leaks (ASan);
//   - every reply is one JSON object with exactly one of "return" and
//     "error" (and maybe "id");
//   - after an error reply the pool is exactly as before the request:
//     query-pool and query-volumes output and every byte of each volume
//     (the pool mode aside: a refused allocation may legitimately switch
//     the pool to out-of-data-space, as pool_model_test allows);
//   - the engine's counters pass TEST_CheckCounters after every request.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz/fuzz_util.h"
#include "plugin/control_commands.h"
#include "pool/pool.h"
#include "pool/volume.h"

namespace thinsim::fuzz {
namespace {

using nlohmann::json;

constexpr uint32_t kBlockSize = 4096;
constexpr uint64_t kPoolBlocks = 128;
constexpr size_t kMaxLines = 64;
// Volumes up to this size are read whole for the content digest; larger
// ones (thin: a client may create a 1P volume) are compared by counters.
constexpr uint64_t kMaxDigestBytes = 256 << 10;
// Mapping tables are proportional to virtual size (8 bytes per 64 vblocks),
// which is how the engine is built; past this the input stops, so that a
// few huge volumes do not turn into libFuzzer out-of-memory reports.
constexpr size_t kMaxMetadataBytes = 64 << 20;

std::unique_ptr<Pool> NewPool() {
  PoolOptions o;
  o.block_size = kBlockSize;
  o.size = kPoolBlocks * kBlockSize;
  std::unique_ptr<Pool> pool;
  Status s = Pool::Open(o, &pool);
  if (s.ok()) s = pool->CreateVolume("vol0", 64 * kBlockSize, std::nullopt);
  std::shared_ptr<Volume> v;
  if (s.ok()) s = pool->OpenVolume("vol0", true, &v);
  if (s.ok()) {
    std::string bytes(8 * kBlockSize, '\0');
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7 + i / kBlockSize);
    s = pool->Write(*v, bytes.data(), bytes.size(), 0);
    pool->CloseVolume(v, true);
  }
  if (s.ok()) s = pool->CreateSnapshots({{"vol0", "snap0"}}, false);
  if (!s.ok()) Fail("setting up the pool failed: " + s.ToString());
  return pool;
}

// A hash of a volume's bytes (std::hash: the library's code is not
// instrumented, so it costs no coverage callbacks per byte).
uint64_t Digest(Pool* pool, const VolumeInfo& info) {
  std::shared_ptr<Volume> v;
  Status s = pool->OpenVolume(info.name, false, &v);
  if (!s.ok()) Fail("cannot open volume '" + info.name + "' to read it: " + s.ToString());
  std::string bytes(info.size, '\0');
  s = pool->Read(*v, bytes.data(), bytes.size(), 0);
  pool->CloseVolume(v, false);
  if (!s.ok()) Fail("reading volume '" + info.name + "' failed: " + s.ToString());
  return std::hash<std::string>{}(bytes);
}

// What a client can observe: query-pool, query-volumes and the bytes.
std::string Observe(Pool* pool) {
  json p = ControlCommands::PoolJson(pool->QueryPool());
  p.erase("mode");
  std::string out = p.dump() + "\n";
  for (const VolumeInfo& info : pool->QueryVolumes()) {
    out += ControlCommands::VolumeJson(info).dump();
    if (info.size <= kMaxDigestBytes) out += " digest=" + std::to_string(Digest(pool, info));
    out += "\n";
  }
  return out;
}

void CheckReplyShape(std::string_view request, const std::string& line, bool* error) {
  json reply;
  try {
    reply = json::parse(line);
  } catch (const json::exception& e) {
    Fail("reply is not JSON (" + std::string(e.what()) + ")\nrequest: " + std::string(request) +
         "\nreply: " + line);
  }
  bool ret = reply.is_object() && reply.contains("return");
  *error = reply.is_object() && reply.contains("error");
  size_t want_keys = 1 + (reply.is_object() && reply.contains("id") ? 1 : 0);
  if (ret == *error || reply.size() != want_keys) {
    Fail("reply must hold one of return and error (and maybe id)\nrequest: " + std::string(request) +
         "\nreply: " + line);
  }
}

}  // namespace
}  // namespace thinsim::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace thinsim;
  using namespace thinsim::fuzz;
  std::unique_ptr<Pool> pool = NewPool();
  ControlCommands commands(pool.get());
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> lines = SplitLines(input);
  if (lines.size() > kMaxLines) lines.resize(kMaxLines);
  for (std::string_view line : lines) {
    std::string before = Observe(pool.get());
    ControlCommands::Reply reply = commands.Execute(line);
    bool error = false;
    CheckReplyShape(line, reply.line, &error);
    if (error) {
      std::string after = Observe(pool.get());
      if (after != before) {
        Fail("an error reply changed the pool\nrequest: " + std::string(line) + "\nreply: " + reply.line +
             "\nbefore:\n" + before + "after:\n" + after);
      }
    }
    Status s = pool->TEST_CheckCounters();
    if (!s.ok()) Fail("counters wrong after request: " + std::string(line) + "\n" + s.ToString());
    if (pool->MetadataMemoryUsage() > kMaxMetadataBytes) break;
  }
  return 0;
}
