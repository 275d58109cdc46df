#include "metadata/journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
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

Status Errno(const std::string& what) { return Status::IOError(what + ": " + std::strerror(errno)); }

std::string FileHeader(uint64_t magic, uint64_t gen) {
  std::string h;
  PutU64(&h, magic);
  PutU32(&h, kVersion);
  PutU32(&h, 0);
  PutU64(&h, gen);
  return h;
}

Status WriteAll(int fd, const std::string& data, off_t pos, const std::string& what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = pwrite(fd, data.data() + done, data.size() - done, pos + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("write " + what);
    done += static_cast<size_t>(n);
  }
  return Status::OK();
}

Status ReadFile(const std::string& path, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open " + path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return Errno("stat " + path);
  }
  out->resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out->size()) {
    ssize_t n = pread(fd, out->data() + done, out->size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return Errno("read " + path);
    }
    done += static_cast<size_t>(n);
  }
  close(fd);
  return Status::OK();
}

// Writes a whole new file and syncs it.
Status WriteNewFile(const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("create " + path);
  Status s = WriteAll(fd, data, 0, path);
  if (s.ok() && fdatasync(fd) != 0) s = Errno("sync " + path);
  close(fd);
  return s;
}

Status SyncDir(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("open " + dir);
  Status s = fsync(fd) == 0 ? Status::OK() : Errno("sync " + dir);
  close(fd);
  return s;
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

Journal::~Journal() {
  if (log_fd_ >= 0) close(log_fd_);
  if (sb_fd_ >= 0) close(sb_fd_);
}

bool Journal::Exists(const std::string& dir) {
  struct stat st;
  return stat(SuperblockPath(dir).c_str(), &st) == 0;
}

Status Journal::Create(const std::string& dir, const std::string& checkpoint,
                       std::unique_ptr<Journal>* out) {
  std::unique_ptr<Journal> j(new Journal(dir));
  j->generation_ = 1;
  std::string ckpt = FileHeader(kCkptMagic, 1) + checkpoint;
  AppendCommit(&ckpt, 0);
  THINSIM_RETURN_IF_ERROR(WriteNewFile(CheckpointPath(dir, 1), ckpt));
  THINSIM_RETURN_IF_ERROR(WriteNewFile(LogPath(dir, 1), FileHeader(kLogMagic, 1)));
  THINSIM_RETURN_IF_ERROR(SyncDir(dir));
  j->log_length_ = kFileHeader;
  THINSIM_RETURN_IF_ERROR(j->OpenLog());
  THINSIM_RETURN_IF_ERROR(j->WriteSuperblock());
  THINSIM_RETURN_IF_ERROR(SyncDir(dir));
  *out = std::move(j);
  return Status::OK();
}

Status Journal::OpenLog() {
  if (log_fd_ >= 0) close(log_fd_);
  log_fd_ = open(LogPath(dir_, generation_).c_str(), O_RDWR | O_CLOEXEC);
  if (log_fd_ < 0) return Errno("open " + LogPath(dir_, generation_));
  // Drop an interrupted commit's bytes so that new ones follow the last
  // complete transaction.
  if (ftruncate(log_fd_, static_cast<off_t>(log_length_)) != 0) return Errno("truncate log");
  if (sb_fd_ < 0) {
    sb_fd_ = open(SuperblockPath(dir_).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (sb_fd_ < 0) return Errno("open " + SuperblockPath(dir_));
  }
  return Status::OK();
}

Status Journal::WriteSuperblock() {
  Superblock sb{generation_, log_length_, commit_seq_};
  THINSIM_RETURN_IF_ERROR(WriteAll(sb_fd_, EncodeSuperblock(sb), 0, "superblock"));
  if (fdatasync(sb_fd_) != 0) return Errno("sync superblock");
  return Status::OK();
}

Status Journal::OpenForAppend(const std::string& dir, std::unique_ptr<Journal>* out) {
  std::string data;
  THINSIM_RETURN_IF_ERROR(ReadFile(SuperblockPath(dir), &data));
  Superblock sb;
  THINSIM_RETURN_IF_ERROR(DecodeSuperblock(data, &sb));
  std::unique_ptr<Journal> j(new Journal(dir));
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
  THINSIM_RETURN_IF_ERROR(WriteAll(log_fd_, txn, static_cast<off_t>(log_length_), "log"));
  if (fdatasync(log_fd_) != 0) return Errno("sync log");
  log_length_ += txn.size();
  ++commit_seq_;
  return WriteSuperblock();
}

Status Journal::Checkpoint(const std::string& checkpoint) {
  uint64_t old_gen = generation_;
  uint64_t gen = old_gen + 1;
  std::string ckpt = FileHeader(kCkptMagic, gen) + checkpoint;
  AppendCommit(&ckpt, commit_seq_);
  THINSIM_RETURN_IF_ERROR(WriteNewFile(CheckpointPath(dir_, gen), ckpt));
  THINSIM_RETURN_IF_ERROR(WriteNewFile(LogPath(dir_, gen), FileHeader(kLogMagic, gen)));
  THINSIM_RETURN_IF_ERROR(SyncDir(dir_));
  generation_ = gen;
  log_length_ = kFileHeader;
  THINSIM_RETURN_IF_ERROR(OpenLog());
  THINSIM_RETURN_IF_ERROR(WriteSuperblock());
  unlink(CheckpointPath(dir_, old_gen).c_str());
  unlink(LogPath(dir_, old_gen).c_str());
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
std::set<uint64_t> FileGenerations(const std::string& dir) {
  std::set<uint64_t> gens;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return gens;
  while (struct dirent* e = readdir(d)) {
    std::string name = e->d_name;
    for (const char* prefix : {"metadata.ckpt.", "metadata.log."}) {
      std::string p = prefix;
      if (name.size() <= p.size() || name.compare(0, p.size(), p) != 0) continue;
      std::string digits = name.substr(p.size());
      if (digits.size() > 19 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
      gens.insert(std::stoull(digits));
    }
  }
  closedir(d);
  return gens;
}

}  // namespace

Status Journal::Load(const std::string& dir, Image* image, LoadReport* report) {
  std::string data;
  THINSIM_RETURN_IF_ERROR(ReadFile(SuperblockPath(dir), &data));
  Superblock sb;
  Status s = DecodeSuperblock(data, &sb);
  if (!s.ok()) {
    report->fatal.push_back(s.message());
    return s;
  }
  report->generation = sb.generation;
  report->commit_seq = sb.commit_seq;
  std::string ckpt;
  s = ReadFile(CheckpointPath(dir, sb.generation), &ckpt);
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
  s = ReadFile(LogPath(dir, sb.generation), &log);
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

Status Journal::Salvage(const std::string& dir, Image* image, LoadReport* report) {
  std::set<uint64_t> gens = FileGenerations(dir);
  // Newest first: the first generation whose checkpoint loads cleanly wins;
  // failing that, the newest one with a readable header.
  uint64_t fallback = 0;
  for (auto it = gens.rbegin(); it != gens.rend(); ++it) {
    std::string ckpt;
    if (!ReadFile(CheckpointPath(dir, *it), &ckpt).ok() || !HeaderOk(ckpt, kCkptMagic, *it)) continue;
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
  THINSIM_RETURN_IF_ERROR(ReadFile(CheckpointPath(dir, gen), &ckpt));
  report->checkpoint_bytes = ckpt.size();
  LoadCheckpoint(ckpt, image, report);
  std::string log;
  if (!ReadFile(LogPath(dir, gen), &log).ok()) {
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
                        uint64_t* generation) {
  std::set<uint64_t> old = FileGenerations(dir);
  uint64_t newest = old.empty() ? 0 : *old.rbegin();
  std::string sb_data;
  Superblock sb;
  if (ReadFile(SuperblockPath(dir), &sb_data).ok() && DecodeSuperblock(sb_data, &sb).ok()) {
    newest = std::max(newest, sb.generation);
  }
  std::unique_ptr<Journal> j(new Journal(dir));
  j->generation_ = newest + 1;
  j->log_length_ = kFileHeader;
  j->commit_seq_ = commit_seq;
  std::string ckpt = FileHeader(kCkptMagic, j->generation_) + checkpoint;
  AppendCommit(&ckpt, commit_seq);
  THINSIM_RETURN_IF_ERROR(WriteNewFile(CheckpointPath(dir, j->generation_), ckpt));
  THINSIM_RETURN_IF_ERROR(WriteNewFile(LogPath(dir, j->generation_), FileHeader(kLogMagic, j->generation_)));
  THINSIM_RETURN_IF_ERROR(SyncDir(dir));
  // The switch: until the superblock names the new generation, the old
  // metadata stands.
  THINSIM_RETURN_IF_ERROR(j->OpenLog());
  THINSIM_RETURN_IF_ERROR(j->WriteSuperblock());
  THINSIM_RETURN_IF_ERROR(SyncDir(dir));
  for (uint64_t gen : old) {
    if (gen == j->generation_) continue;
    unlink(CheckpointPath(dir, gen).c_str());
    unlink(LogPath(dir, gen).c_str());
  }
  if (generation != nullptr) *generation = j->generation_;
  return SyncDir(dir);
}

}  // namespace thinsim::metadata
