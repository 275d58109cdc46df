// The helpers every Env user shares.
#include <algorithm>
#include <vector>

#include "env/env.h"

namespace thinsim {

Status ReadWholeFile(Env* env, const std::string& path, std::string* out) {
  std::unique_ptr<File> file;
  THINSIM_RETURN_IF_ERROR(env->OpenFile(path, OpenMode::kReadOnly, &file));
  uint64_t size = 0;
  THINSIM_RETURN_IF_ERROR(file->Size(&size));
  out->resize(static_cast<size_t>(size));
  size_t got = 0;
  THINSIM_RETURN_IF_ERROR(file->Read(0, out->size(), out->data(), &got));
  // A file that shrank while read is read up to its end.
  out->resize(got);
  return Status::OK();
}

Status ZeroFileRange(File* file, uint64_t offset, uint64_t len) {
  if (file->PunchHole(offset, len).ok() || file->ZeroRange(offset, len).ok()) return Status::OK();
  std::vector<char> zeroes(std::min<uint64_t>(len, 1 << 20), 0);
  for (uint64_t done = 0; done < len;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(zeroes.size(), len - done));
    THINSIM_RETURN_IF_ERROR(file->Write(offset + done, zeroes.data(), n));
    done += n;
  }
  return Status::OK();
}

}  // namespace thinsim
