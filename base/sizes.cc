#include "base/sizes.h"

#include <cctype>
#include <cstdio>
#include <limits>

#include "base/types.h"

namespace thinsim {

namespace {

int SuffixShift(char c) {
  switch (std::tolower(static_cast<unsigned char>(c))) {
    case 'b': return 0;
    case 's': return 9;
    case 'k': return 10;
    case 'm': return 20;
    case 'g': return 30;
    case 't': return 40;
    case 'p': return 50;
    case 'e': return 60;
    default: return -1;
  }
}

}  // namespace

Status ParseSize(std::string_view text, std::string_view what, uint64_t* out) {
  auto bad = [&](const char* why) {
    return Status::Invalid(std::string(what) + ": cannot parse '" + std::string(text) +
                           "': " + why);
  };
  if (text.empty()) return bad("empty");
  size_t i = 0;
  uint64_t value = 0;
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
    uint64_t digit = text[i] - '0';
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return bad("too large");
    value = value * 10 + digit;
  }
  if (i == 0) return bad("expected a number with an optional suffix (K, M, G, T)");
  int shift = 0;
  if (i < text.size()) {
    shift = SuffixShift(text[i]);
    if (shift < 0 || i + 1 != text.size()) return bad("unknown suffix (use b, s, K, M, G, T, P, E)");
  }
  if (shift > 0 && value > (std::numeric_limits<uint64_t>::max() >> shift)) return bad("too large");
  value <<= shift;
  if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return bad("too large");
  *out = value;
  return Status::OK();
}

std::string FormatSize(uint64_t bytes) {
  static const char kUnits[] = "KMGTPE";
  if (bytes < 1024) return std::to_string(bytes);
  int unit = -1;
  double v = static_cast<double>(bytes);
  while (v >= 1024 && unit < 5) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  if (v == static_cast<double>(static_cast<uint64_t>(v))) {
    std::snprintf(buf, sizeof buf, "%llu%c", static_cast<unsigned long long>(v), kUnits[unit]);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f%c", v, kUnits[unit]);
  }
  return buf;
}

Status ValidateName(std::string_view name, std::string_view what) {
  const std::string kind(what);
  if (name.empty() || name.size() > 64) {
    return Status::Invalid(kind + " name must be 1-64 characters of [A-Za-z0-9._-], got '" +
                           std::string(name) + "'");
  }
  if (name[0] == '.' || name[0] == '-') {
    return Status::Invalid(kind + " name '" + std::string(name) + "' must not start with '" +
                           std::string(1, name[0]) + "'");
  }
  for (char c : name) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    if (!ok) {
      return Status::Invalid(kind + " name '" + std::string(name) +
                             "' has a character outside [A-Za-z0-9._-]");
    }
  }
  return Status::OK();
}

Status ValidateVolumeName(std::string_view name) { return ValidateName(name, "volume"); }

Status ValidateBitmapGranularity(uint64_t granularity) {
  if (granularity < kMinBitmapGranularity || granularity > kMaxBitmapGranularity ||
      (granularity & (granularity - 1)) != 0) {
    return Status::Invalid("bitmap granularity must be a power of two from " + FormatSize(kMinBitmapGranularity) +
                           " to " + FormatSize(kMaxBitmapGranularity) + ", got " + std::to_string(granularity));
  }
  return Status::OK();
}

std::string_view StrategyName(Strategy s) {
  switch (s) {
    case Strategy::kNone: return "none";
    case Strategy::kProvision: return "provision";
    case Strategy::kVolume: return "volume";
    case Strategy::kFull: return "full";
  }
  return "none";
}

bool ParseStrategy(std::string_view name, Strategy* out) {
  for (Strategy s : {Strategy::kNone, Strategy::kProvision, Strategy::kVolume, Strategy::kFull}) {
    if (name == StrategyName(s)) {
      *out = s;
      return true;
    }
  }
  return false;
}

std::string_view PoolModeName(PoolMode m) {
  switch (m) {
    case PoolMode::kWrite: return "write";
    case PoolMode::kOutOfDataSpace: return "out-of-data-space";
    case PoolMode::kReadOnly: return "read-only";
    case PoolMode::kFail: return "fail";
  }
  return "fail";
}

}  // namespace thinsim
