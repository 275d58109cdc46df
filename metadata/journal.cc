#include "metadata/journal.h"

#include <algorithm>
#include <set>

#include "base/crc32c.h"
#include "metadata/pool_dir.h"
#include "base/encoding.h"

namespace thinsim::metadata {

namespace {

constexpr uint64_t kSuperMagic = 0x3142535f4d495354ull;  // "TSIM_SB1"
constexpr uint64_t kCkptMagic = 0x3143435f4d495354ull;   // "TSIM_CC1"
constexpr uint64_t kLogMagic = 0x31474c5f4d495354ull;    // "TSIM_LG1"
constexpr uint32_t kVersion = 1;
// File header of checkpoint and log: magic, version, pad, generation.
constexpr size_t kFileHeader = 24;
constexpr size_t kSuperblockSize = 64;

std::string FileHeader(uint64_t magic, uint64_t gen) {
  std::string h;
  PutU64(&h, magic);
  PutU32(&h, kVersion);
  PutU32(&h, 0);
  PutU64(&h, gen);
  return h;
}

// Writes a whole new file and syncs it.
Status WriteNewFile(Env* env, const std::string& path, const std::string& data) {
  std::unique_ptr<File> file;
  THINSIM_RETURN_IF_ERROR(env->OpenFile(path, OpenMode::kTruncate, &file));
  THINSIM_RETURN_IF_ERROR(file->Write(0, data.data(), data.size()));
  return file->Sync();
}

struct Superblock {
  uint64_t generation = 0;
  uint64_t log_length = 0;
  uint64_t commit_seq = 0;
};

std::string EncodeSuperblock(const Superblock& sb) {
  std::string out;
  PutU64(&out, kSuperMagic);
  PutU32(&out, kVersion);
  PutU32(&out, 0);
  PutU64(&out, sb.generation);
  PutU64(&out, sb.log_length);
  PutU64(&out, sb.commit_seq);
  PutU32(&out, Crc32c(0, out.data(), out.size()));
  out.resize(kSuperblockSize, '\0');
  return out;
}

Status DecodeSuperblock(const std::string& data, Superblock* sb) {
  if (data.size() < kSuperblockSize) return Status::Corruption("superblock is cut short");
  Reader r(std::string_view(data).substr(0, 44));
  uint64_t magic = r.U64();
  uint32_t version = r.U32();
  r.U32();
  sb->generation = r.U64();
  sb->log_length = r.U64();
  sb->commit_seq = r.U64();
  uint32_t crc = Reader(std::string_view(data).substr(40, 4)).U32();
  if (magic != kSuperMagic) return Status::Corruption("superblock has a bad magic number");
  if (Crc32c(0, data.data(), 40) != crc) return Status::Corruption("bad checksum in superblock");
  // The checksum does not cover the padding; it must be zero so that no
  // flipped bit anywhere in the superblock goes unnoticed.
  if (data.find_first_not_of('\0', 44) < kSuperblockSize) {
    return Status::Corruption("superblock padding is not zero");
  }
  if (version != kVersion) {
    return Status::Corruption("superblock has format version " + std::to_string(version) +
                              ", this build reads " + std::to_string(kVersion));
  }
  return Status::OK();
}

// Checks a checkpoint or log file header (its padding must be zero: the
// header has no checksum of its own).
bool HeaderOk(const std::string& data, uint64_t magic, uint64_t gen) {
  if (data.size() < kFileHeader) return false;
  Reader r(std::string_view(data).substr(0, kFileHeader));
  return r.U64() == magic && r.U32() == kVersion && r.U32() == 0 && r.U64() == gen;
}

}  // namespace

bool Journal::Exists(const std::string& dir, Env* env) { return env->FileExists(SuperblockPath(dir)); }

Status Journal::Create(const std::string& dir, const std::string& checkpoint,
                       std::unique_ptr<Journal>* out, Env* env) {
  std::unique_ptr<Journal> j(new Journal(dir, env));
  j->generation_ = 1;
  std::string ckpt = FileHeader(kCkptMagic, 1) + checkpoint;
  AppendCommit(&ckpt, 0);
  THINSIM_RETURN_IF_ERROR(WriteNewFile(env, CheckpointPath(dir, 1), ckpt));
  THINSIM_RETURN_IF_ERROR(WriteNewFile(env, LogPath(dir, 1), FileHeader(kLogMagic, 1)));
  THINSIM_RETURN_IF_ERROR(env->SyncDir(dir));
  j->log_length_ = kFileHeader;
  THINSIM_RETURN_IF_ERROR(j->OpenLog());
  THINSIM_RETURN_IF_ERROR(j->WriteSuperblock());
  THINSIM_RETURN_IF_ERROR(env->SyncDir(dir));
  *out = std::move(j);
  return Status::OK();
}

Status Journal::OpenLog() {
  log_.reset();
  THINSIM_RETURN_IF_ERROR(env_->OpenFile(LogPath(dir_, generation_), OpenMode::kReadWrite, &log_));
  // Drop an interrupted commit's bytes so that new ones follow the last
  // complete transaction.
  THINSIM_RETURN_IF_ERROR(log_->Truncate(log_length_));
  if (sb_ == nullptr) {
    THINSIM_RETURN_IF_ERROR(env_->OpenFile(SuperblockPath(dir_), OpenMode::kCreate, &sb_));
  }
  return Status::OK();
}

Status Journal::WriteSuperblock() {
  Superblock sb{generation_, log_length_, commit_seq_};
  std::string data = EncodeSuperblock(sb);
  THINSIM_RETURN_IF_ERROR(sb_->Write(0, data.data(), data.size()));
  return sb_->Sync();
}

Status Journal::OpenForAppend(const std::string& dir, std::unique_ptr<Journal>* out, Env* env) {
  std::string data;
  THINSIM_RETURN_IF_ERROR(ReadWholeFile(env, SuperblockPath(dir), &data));
  Superblock sb;
  THINSIM_RETURN_IF_ERROR(DecodeSuperblock(data, &sb));
  std::unique_ptr<Journal> j(new Journal(dir, env));
  j->generation_ = sb.generation;
  j->log_length_ = sb.log_length;
  j->commit_seq_ = sb.commit_seq;
  THINSIM_RETURN_IF_ERROR(j->OpenLog());
  *out = std::move(j);
  return Status::OK();
}

Status Journal::Commit(const std::string& records) {
  std::string txn = records;
  AppendCommit(&txn, commit_seq_ + 1);
  THINSIM_RETURN_IF_ERROR(log_->Write(log_length_, txn.data(), txn.size()));
  THINSIM_RETURN_IF_ERROR(log_->Sync());
  log_length_ += txn.size();
  ++commit_seq_;
  return WriteSuperblock();
}

Status Journal::Checkpoint(const std::string& checkpoint) {
  uint64_t old_gen = generation_;
  uint64_t gen = old_gen + 1;
  std::string ckpt = FileHeader(kCkptMagic, gen) + checkpoint;
  AppendCommit(&ckpt, commit_seq_);
  THINSIM_RETURN_IF_ERROR(WriteNewFile(env_, CheckpointPath(dir_, gen), ckpt));
  THINSIM_RETURN_IF_ERROR(WriteNewFile(env_, LogPath(dir_, gen), FileHeader(kLogMagic, gen)));
  THINSIM_RETURN_IF_ERROR(env_->SyncDir(dir_));
  generation_ = gen;
  log_length_ = kFileHeader;
  THINSIM_RETURN_IF_ERROR(OpenLog());
  THINSIM_RETURN_IF_ERROR(WriteSuperblock());
  // The old generation is garbage now; a file left behind by a failed
  // removal is ignored and removed by the next Rewrite.
  env_->RemoveFile(CheckpointPath(dir_, old_gen));
  env_->RemoveFile(LogPath(dir_, old_gen));
  return Status::OK();
}

namespace {

// Applies every record of a checkpoint; any damage is fatal.
void LoadCheckpoint(const std::string& data, Image* image, LoadReport* report) {
  RecordReader reader(std::string_view(data).substr(kFileHeader));
  std::string_view payload;
  bool committed = false;
  while (reader.Next(&payload)) {
    Status s = image->Apply(payload);
    if (!s.ok()) {
      report->fatal.push_back("checkpoint: " + s.message());
      return;
    }
    committed = static_cast<RecordType>(payload[0]) == RecordType::kCommit;
  }
  if (!reader.error().empty()) report->fatal.push_back("checkpoint: " + reader.error());
  if (!committed && reader.error().empty()) report->fatal.push_back("checkpoint: no closing commit record");
  image->checkpoint_chunks.clear();
}

// Applies the committed transactions of a log. When `salvaging` (no
// superblock says how long the log is), damage ends the replay quietly: it
// is reported as a warning, since it may be an interrupted commit.
void LoadLog(const std::string& data, uint64_t length, Image* image, LoadReport* report,
             bool salvaging = false) {
  RecordReader reader(std::string_view(data).substr(kFileHeader, length - kFileHeader));
  std::string_view payload;
  std::vector<std::string_view> pending;
  while (reader.Next(&payload)) {
    pending.push_back(payload);
    if (static_cast<RecordType>(payload[0]) != RecordType::kCommit) continue;
    for (std::string_view p : pending) {
      Status s = image->Apply(p);
      if (!s.ok()) {
        report->fatal.push_back("log: " + s.message());
        return;
      }
    }
    pending.clear();
    ++report->transactions;
  }
  if (salvaging) {
    if (!reader.error().empty()) {
      report->warnings.push_back("log: " + reader.error() + "; replay stopped there");
    } else if (!pending.empty()) {
      report->warnings.push_back("log: ends inside a transaction (ignored)");
    }
  } else if (!reader.error().empty()) {
    report->fatal.push_back("log: " + reader.error() + " (inside the committed part)");
  } else if (!pending.empty()) {
    report->fatal.push_back("log: committed part ends inside a transaction");
  }
}

// The generations of the metadata files in `dir` (metadata.ckpt.N and
// metadata.log.N), in increasing order.
std::set<uint64_t> FileGenerations(Env* env, const std::string& dir) {
  std::set<uint64_t> gens;
  std::vector<std::string> names;
  if (!env->ListDir(dir, &names).ok()) return gens;
  for (const std::string& name : names) {
    for (const char* prefix : {"metadata.ckpt.", "metadata.log."}) {
      std::string p = prefix;
      if (name.size() <= p.size() || name.compare(0, p.size(), p) != 0) continue;
      std::string digits = name.substr(p.size());
      if (digits.size() > 19 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
      gens.insert(std::stoull(digits));
    }
  }
  return gens;
}

}  // namespace

Status Journal::Load(const std::string& dir, Image* image, LoadReport* report, Env* env) {
  std::string data;
  THINSIM_RETURN_IF_ERROR(ReadWholeFile(env, SuperblockPath(dir), &data));
  Superblock sb;
  Status s = DecodeSuperblock(data, &sb);
  if (!s.ok()) {
    report->fatal.push_back(s.message());
    return s;
  }
  report->generation = sb.generation;
  report->commit_seq = sb.commit_seq;
  std::string ckpt;
  s = ReadWholeFile(env, CheckpointPath(dir, sb.generation), &ckpt);
  if (!s.ok()) {
    report->fatal.push_back("checkpoint of generation " + std::to_string(sb.generation) + " is missing");
    return Status::Corruption(report->fatal.back());
  }
  report->checkpoint_bytes = ckpt.size();
  if (!HeaderOk(ckpt, kCkptMagic, sb.generation)) {
    report->fatal.push_back("checkpoint has a bad header");
    return Status::Corruption(report->fatal.back());
  }
  LoadCheckpoint(ckpt, image, report);
  std::string log;
  s = ReadWholeFile(env, LogPath(dir, sb.generation), &log);
  if (!s.ok()) {
    report->fatal.push_back("log of generation " + std::to_string(sb.generation) + " is missing");
    return Status::OK();
  }
  report->log_bytes = log.size();
  if (!HeaderOk(log, kLogMagic, sb.generation) || sb.log_length < kFileHeader) {
    report->fatal.push_back("log has a bad header");
    return Status::OK();
  }
  uint64_t length = sb.log_length;
  if (log.size() < sb.log_length) {
    report->fatal.push_back("log is truncated: " + std::to_string(log.size()) +
                            " bytes, the superblock says " + std::to_string(sb.log_length) +
                            " were committed");
    // Replay the complete transactions that remain, for repair.
    length = log.size();
  }
  if (log.size() > sb.log_length) {
    report->warnings.push_back(std::to_string(log.size() - sb.log_length) +
                               " bytes of an interrupted commit at the end of the log (ignored)");
  }
  LoadLog(log, length, image, report);
  if (image->commit_seq != sb.commit_seq) {
    report->fatal.push_back("last commit in the log is " + std::to_string(image->commit_seq) +
                            ", the superblock says " + std::to_string(sb.commit_seq));
  }
  return Status::OK();
}

Status Journal::Salvage(const std::string& dir, Image* image, LoadReport* report, Env* env) {
  std::set<uint64_t> gens = FileGenerations(env, dir);
  // Newest first: the first generation whose checkpoint loads cleanly wins;
  // failing that, the newest one with a readable header.
  uint64_t fallback = 0;
  for (auto it = gens.rbegin(); it != gens.rend(); ++it) {
    std::string ckpt;
    if (!ReadWholeFile(env, CheckpointPath(dir, *it), &ckpt).ok() || !HeaderOk(ckpt, kCkptMagic, *it)) continue;
    Image trial;
    LoadReport trial_report;
    LoadCheckpoint(ckpt, &trial, &trial_report);
    if (trial_report.fatal.empty()) {
      fallback = *it;
      break;
    }
    if (fallback == 0) fallback = *it;
  }
  if (fallback == 0) return Status::NotFound("no readable checkpoint in " + dir);
  uint64_t gen = fallback;
  report->generation = gen;
  report->warnings.push_back("salvaging generation " + std::to_string(gen) +
                             " without a superblock: every complete transaction of its log is replayed");
  std::string ckpt;
  THINSIM_RETURN_IF_ERROR(ReadWholeFile(env, CheckpointPath(dir, gen), &ckpt));
  report->checkpoint_bytes = ckpt.size();
  LoadCheckpoint(ckpt, image, report);
  std::string log;
  if (!ReadWholeFile(env, LogPath(dir, gen), &log).ok()) {
    report->fatal.push_back("log of generation " + std::to_string(gen) + " is missing");
    return Status::OK();
  }
  report->log_bytes = log.size();
  if (!HeaderOk(log, kLogMagic, gen)) {
    report->fatal.push_back("log has a bad header");
    return Status::OK();
  }
  LoadLog(log, log.size(), image, report, /*salvaging=*/true);
  return Status::OK();
}

Status Journal::Rewrite(const std::string& dir, const std::string& checkpoint, uint64_t commit_seq,
                        uint64_t* generation, Env* env) {
  std::set<uint64_t> old = FileGenerations(env, dir);
  uint64_t newest = old.empty() ? 0 : *old.rbegin();
  std::string sb_data;
  Superblock sb;
  if (ReadWholeFile(env, SuperblockPath(dir), &sb_data).ok() && DecodeSuperblock(sb_data, &sb).ok()) {
    newest = std::max(newest, sb.generation);
  }
  std::unique_ptr<Journal> j(new Journal(dir, env));
  j->generation_ = newest + 1;
  j->log_length_ = kFileHeader;
  j->commit_seq_ = commit_seq;
  std::string ckpt = FileHeader(kCkptMagic, j->generation_) + checkpoint;
  AppendCommit(&ckpt, commit_seq);
  THINSIM_RETURN_IF_ERROR(WriteNewFile(env, CheckpointPath(dir, j->generation_), ckpt));
  THINSIM_RETURN_IF_ERROR(WriteNewFile(env, LogPath(dir, j->generation_), FileHeader(kLogMagic, j->generation_)));
  THINSIM_RETURN_IF_ERROR(env->SyncDir(dir));
  // The switch: until the superblock names the new generation, the old
  // metadata stands.
  THINSIM_RETURN_IF_ERROR(j->OpenLog());
  THINSIM_RETURN_IF_ERROR(j->WriteSuperblock());
  THINSIM_RETURN_IF_ERROR(env->SyncDir(dir));
  for (uint64_t gen : old) {
    if (gen == j->generation_) continue;
    env->RemoveFile(CheckpointPath(dir, gen));  // absent or not: garbage either way
    env->RemoveFile(LogPath(dir, gen));
  }
  if (generation != nullptr) *generation = j->generation_;
  return env->SyncDir(dir);
}

}  // namespace thinsim::metadata
