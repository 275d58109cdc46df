// Writes the seed corpora of the fuzz targets from real pools:
//   make_seeds OUT_DIR
// writes OUT_DIR/metadata_pool/* and OUT_DIR/metadata_records/* from small
// persistent pools built with the engine (and one rewritten through
// Journal::Rewrite, as restore and repair do, whose checkpoint shares
// chunks), OUT_DIR/engine/* (fixed pseudo-random choice bytes) and
// OUT_DIR/control/* (request sequences). The outputs are committed in
// fuzz/corpus/; rerun this after a format change (fuzz/README.md).
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "base/encoding.h"
#include "metadata/image.h"
#include "metadata/journal.h"
#include "pool/pool.h"
#include "pool/volume.h"

namespace thinsim::fuzz {
namespace {

constexpr uint32_t kBlock = 4096;

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void Write(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  if (!out) Fail("cannot write " + path);
}

void Check(const Status& s, const std::string& what) {
  if (!s.ok()) Fail(what + ": " + s.ToString());
}

// Writes `len` bytes of a pattern at `off` of `name`.
void Fill(Pool* pool, const std::string& name, uint64_t off, uint64_t len, uint8_t seed) {
  std::shared_ptr<Volume> v;
  Check(pool->OpenVolume(name, true, &v), "open " + name);
  std::string bytes(len, '\0');
  for (uint64_t i = 0; i < len; ++i) bytes[i] = static_cast<char>(seed + i * 31);
  Check(pool->Write(*v, bytes.data(), len, off), "write " + name);
  pool->CloseVolume(v, true);
}

// The pool directory as a metadata_pool input (flags 7: fix every
// checksum and the log length, so that mutations get through) and its
// records as a metadata_records input.
void Emit(const std::string& out, const std::string& name, const std::string& dir, const std::string& log_tail = "") {
  std::string sb = Read(dir + "/metadata");
  uint64_t gen = Reader(std::string_view(sb).substr(16, 8)).U64();
  std::string ckpt = Read(dir + "/metadata.ckpt." + std::to_string(gen));
  std::string log = Read(dir + "/metadata.log." + std::to_string(gen)) + log_tail;
  std::string pool_input(1, log_tail.empty() ? '\x07' : '\x03');
  pool_input += sb;
  PutU32(&pool_input, static_cast<uint32_t>(ckpt.size()));
  pool_input += ckpt + log;
  Write(out + "/metadata_pool/" + name, pool_input);
  Write(out + "/metadata_records/" + name, "\x01" + ckpt.substr(24) + log.substr(24));
}

// Builds a persistent pool in `dir` and runs `ops` on it; the pool closes
// (committing) before the files are read.
void Build(const std::string& dir, const std::function<void(Pool*)>& ops) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  PoolOptions o;
  o.dir = dir;
  o.block_size = kBlock;
  o.size = 64 * kBlock;
  std::unique_ptr<Pool> pool;
  Check(Pool::Open(o, &pool), "open pool");
  ops(pool.get());
  Check(pool->Commit(), "commit");
}

void MetadataSeeds(const std::string& out) {
  const std::string dir = ScratchDir() + "/pool";
  Build(dir, [](Pool*) {});
  Emit(out, "empty", dir);

  Build(dir, [](Pool* p) {
    Check(p->CreateVolume("vol0", 32 * kBlock, std::nullopt), "create");
    Fill(p, "vol0", 0, 3 * kBlock + 100, 1);
  });
  Emit(out, "one-volume", dir);

  auto family = [](Pool* p) {
    Check(p->CreateVolume("vol0", 80 * kBlock, Strategy::kProvision), "create");
    Fill(p, "vol0", kBlock, 5 * kBlock, 2);
    Check(p->Commit(), "commit");
    Check(p->CreateSnapshots({{"vol0", "snap0"}}, true), "snapshot");
    Fill(p, "vol0", 2 * kBlock, kBlock, 3);  // copy-on-write
    Check(p->Commit(), "commit");
    Check(p->CreateSnapshots({{"vol0", "snap1"}}, false), "snapshot");
    Check(p->Provision("snap1", 70 * kBlock, 3 * kBlock), "provision");
    Check(p->CreateVolume("other", 8 * kBlock, Strategy::kFull), "create");
    Fill(p, "other", 0, 2 * kBlock, 4);
    Check(p->Commit(), "commit");
  };
  Build(dir, family);
  Emit(out, "snapshots", dir);
  Emit(out, "interrupted-commit", dir, std::string("\x10\x00\x00\x00garbage-of-a-cut-commit", 28));

  Build(dir, [&](Pool* p) {
    family(p);
    std::shared_ptr<Volume> v;
    Check(p->OpenVolume("vol0", true, &v), "open");
    Check(p->Trim(*v, 2 * kBlock, kBlock), "trim");
    Check(p->Zero(*v, kBlock + 10, 4 * kBlock, Pool::kMayTrim), "zero");
    p->CloseVolume(v, true);
    Check(p->Commit(), "commit");
    Check(p->ResizeVolume("snap1", 40 * kBlock), "resize");
    Check(p->DeleteVolume("snap0"), "delete");
    Check(p->SetStrategy("vol0", Strategy::kVolume), "set");
    Check(p->Grow(96 * kBlock), "grow");
  });
  Emit(out, "changes", dir);

  // Rewritten as restore and repair do: a checkpoint with shared chunks.
  metadata::Image image;
  metadata::LoadReport report;
  Check(metadata::Journal::Load(dir, &image, &report), "load");
  std::string records;
  image.Encode(&records);
  Check(metadata::Journal::Rewrite(dir, records, image.commit_seq), "rewrite");
  Emit(out, "rewritten", dir);
}

void EngineSeeds(const std::string& out) {
  std::mt19937_64 rng(10);
  for (int i = 0; i < 16; ++i) {
    std::string bytes(64 + 48 * i, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    bytes[0] = static_cast<char>(i % 4);  // a quarter persistent
    Write(out + "/engine/random-" + std::to_string(i), bytes);
  }
}

void ControlSeeds(const std::string& out) {
  const std::vector<std::pair<std::string, std::string>> seeds = {
      {"query", R"({"execute":"query-pool","id":1})" "\n" R"({"execute":"query-volumes","arguments":{"name":"vol0"}})"},
      {"create", R"({"execute":"volume-create","arguments":{"name":"a","size":"64K","reserve":"full"}})"
                 "\n" R"({"execute":"volume-create","arguments":{"name":"a","size":4096}})"},
      {"snapshot", R"({"execute":"snapshot-create","arguments":{"origin":"vol0","name":"s1","read-only":true}})"
                   "\n" R"({"execute":"snapshot-create","arguments":{"snapshots":[{"origin":"snap0","name":"s2"},{"origin":"vol0","name":"s3"}]}})"},
      {"provision", R"({"execute":"provision","arguments":{"name":"snap0","offset":0,"length":"40K"}})"
                    "\n" R"({"execute":"provision","arguments":{"name":"vol0","offset":"200K","length":"1M"}})"},
      {"resize", R"({"execute":"volume-resize","arguments":{"name":"vol0","size":"10000s"}})"
                 "\n" R"({"execute":"volume-resize","arguments":{"name":"snap0","size":"4K"}})"},
      {"delete", R"({"execute":"volume-delete","arguments":{"name":"vol0"}})"
                 "\n" R"({"execute":"query-volumes"})"},
      {"reserve", R"({"execute":"volume-set","arguments":{"name":"vol0","reserve":"volume"}})"
                  "\n" R"({"execute":"volume-activate","arguments":{"name":"vol0"}})"
                  "\n" R"({"execute":"volume-deactivate","arguments":{"name":"vol0"}})"},
      {"grow", R"({"execute":"pool-grow","arguments":{"size":"1M"}})" "\n" R"({"execute":"commit"})"
               "\n" R"({"execute":"events-subscribe"})"},
      {"errors", R"({"execute":"nope"})" "\n" R"({"execute":"volume-create","arguments":{"name":"x"}})"
                 "\n" R"({"execute":"volume-create","arguments":{"name":"x","size":"64K","bogus":1}})"
                 "\n" R"([1,2])" "\n" R"({"execute":"query-pool","arguments":[]})"},
  };
  for (const auto& [name, text] : seeds) Write(out + "/control/" + name, text + "\n");
}

}  // namespace
}  // namespace thinsim::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds OUT_DIR\n");
    return 2;
  }
  std::string out = argv[1];
  for (const char* d : {"metadata_pool", "metadata_records", "engine", "control"}) {
    std::filesystem::create_directories(out + "/" + d);
  }
  thinsim::fuzz::MetadataSeeds(out);
  thinsim::fuzz::EngineSeeds(out);
  thinsim::fuzz::ControlSeeds(out);
  return 0;
}
