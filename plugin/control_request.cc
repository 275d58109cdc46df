#include "plugin/control_request.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <stdexcept>
#include <vector>

namespace thinsim {

using nlohmann::json;

namespace {

// Length of the valid UTF-8 sequence starting at text[i], or 0. The ranges
// of the second byte are RFC 3629's table: they exclude overlong forms,
// surrogates (U+D800..U+DFFF) and code points above U+10FFFF.
size_t Utf8SequenceLength(std::string_view text, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;  // a continuation byte, C0, C1 or F5..FF
  }
  if (i + len > text.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < len; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return len;
}

// Thrown from the parser callback to stop at the first strictness error;
// caught in ParseControlRequest.
struct StrictError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Input quoted in a message: at most 64 bytes, always valid UTF-8.
std::string Quote(std::string_view text) {
  constexpr size_t kMax = 64;
  // Appended piecewise: GCC 12 at -O3 flags `"'" + std::string` with a false
  // -Wrestrict.
  std::string quoted = "'";
  quoted += SanitizeUtf8(text.substr(0, kMax));
  quoted += text.size() <= kMax ? "'" : "'...";
  return quoted;
}

// Parses `line` into a DOM, refusing duplicate keys and deep nesting.
Status ParseJson(const std::string& line, json* out) {
  std::vector<std::set<std::string>> keys;  // of each open object, innermost last
  int depth = 0;
  auto strict = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        [[fallthrough]];
      case json::parse_event_t::array_start:
        if (++depth > ControlRequest::kMaxDepth) {
          throw StrictError("nested deeper than " + std::to_string(ControlRequest::kMaxDepth) +
                            " levels");
        }
        break;
      case json::parse_event_t::object_end:
        keys.pop_back();
        [[fallthrough]];
      case json::parse_event_t::array_end:
        --depth;
        break;
      case json::parse_event_t::key:
        if (!keys.back().insert(parsed.get<std::string>()).second) {
          throw StrictError("duplicate key " + Quote(parsed.get<std::string>()));
        }
        break;
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  try {
    *out = json::parse(line.begin(), line.end(), strict);
  } catch (const StrictError& e) {
    return Status::Invalid(std::string("malformed request: ") + e.what());
  } catch (const json::exception& e) {
    // what() is "[json.exception.parse_error.101] parse error at ...; last
    // read: '...'": drop the tag; the quoted input may be cut mid-character.
    std::string_view what = e.what();
    size_t tag_end = what.find("] ");
    if (what.rfind("[json.exception.", 0) == 0 && tag_end != std::string_view::npos) {
      what.remove_prefix(tag_end + 2);
    }
    return Status::Invalid("malformed JSON: " + SanitizeUtf8(what));
  }
  return Status::OK();
}

// ---- Numbers beyond a double ---------------------------------------------
// JSON allows numbers of any size ("1e400", 400 digits), but the parser
// refuses those a double cannot hold. The DOM is only used for values the
// commands read, where such a number is refused anyway (sizes are
// integers), and ids are echoed from the raw text: so the parser gets a copy
// in which each such number is 1e308, still a float.

// True if s is a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
bool IsJsonNumber(std::string_view s) {
  size_t i = 0;
  auto digits = [&] {
    size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i > start;
  };
  if (i < s.size() && s[i] == '-') ++i;
  if (i < s.size() && s[i] == '0') {
    ++i;
  } else if (!digits()) {
    return false;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digits()) return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digits()) return false;
  }
  return i == s.size();
}

bool IsNumberChar(char c) {
  return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

std::string WithFiniteNumbers(std::string_view line) {
  std::string out;
  out.reserve(line.size());
  for (size_t i = 0; i < line.size();) {
    char c = line[i];
    if (c == '"') {  // copy a string as it is, escapes and all
      size_t end = i + 1;
      while (end < line.size() && line[end] != '"') end += line[end] == '\\' ? 2 : 1;
      end = std::min(end + 1, line.size());
      out.append(line.substr(i, end - i));
      i = end;
      continue;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      size_t end = i;
      while (end < line.size() && IsNumberChar(line[end])) ++end;
      std::string_view token = line.substr(i, end - i);
      bool huge = IsJsonNumber(token) && std::isinf(std::strtod(std::string(token).c_str(), nullptr));
      out.append(huge ? std::string_view(token[0] == '-' ? "-1e308" : "1e308") : token);
      i = end;
      continue;
    }
    out.push_back(c);
    ++i;
  }
  return out;
}

// ---- Finding the raw text of a member in JSON already known to be valid ----
// Every function returns the offset just past what it skipped, or npos when
// the text does not have the expected shape (which validated JSON always
// has; the checks only keep a mistake here from reading out of bounds).

constexpr size_t npos = std::string_view::npos;

size_t SkipSpace(std::string_view s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
  return i;
}

size_t SkipString(std::string_view s, size_t i) {
  if (i >= s.size() || s[i] != '"') return npos;
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;  // the escaped character, never the closing quote
    } else if (s[i] == '"') {
      return i + 1;
    }
  }
  return npos;
}

size_t SkipValue(std::string_view s, size_t i) {
  if (i >= s.size()) return npos;
  if (s[i] == '"') return SkipString(s, i);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      char c = s[i];
      if (c == '"') {
        i = SkipString(s, i);
        if (i == npos) return npos;
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') --depth;
      ++i;
      if (depth == 0) return i;
    }
    return npos;
  }
  // A number or a literal: up to the next delimiter.
  size_t start = i;
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' &&
         s[i] != '\r' && s[i] != '\n') {
    ++i;
  }
  return i > start ? i : npos;
}

// The raw text of the top-level member `name` of the JSON object `s`.
std::optional<std::string> RawMember(std::string_view s, std::string_view name) {
  size_t i = 0;
  if (s.substr(0, 3) == "\xEF\xBB\xBF") i = 3;  // the parser skips a BOM too
  i = SkipSpace(s, i);
  if (i >= s.size() || s[i] != '{') return std::nullopt;
  i = SkipSpace(s, i + 1);
  while (i < s.size() && s[i] != '}') {
    size_t key_end = SkipString(s, i);
    if (key_end == npos) return std::nullopt;
    // Keys are compared decoded: "\u0069d" is "id" to the parser as well.
    std::string key = json::parse(s.substr(i, key_end - i)).get<std::string>();
    i = SkipSpace(s, key_end);
    if (i >= s.size() || s[i] != ':') return std::nullopt;
    size_t value = SkipSpace(s, i + 1);
    size_t value_end = SkipValue(s, value);
    if (value_end == npos) return std::nullopt;
    if (key == name) {
      // A newline here is whitespace (strings cannot hold a raw one); the
      // reply must stay one line.
      std::string raw(s.substr(value, value_end - value));
      std::replace(raw.begin(), raw.end(), '\n', ' ');
      return raw;
    }
    i = SkipSpace(s, value_end);
    if (i < s.size() && s[i] == ',') i = SkipSpace(s, i + 1);
  }
  return std::nullopt;
}

}  // namespace

bool IsValidUtf8(std::string_view text, size_t* bad_offset) {
  for (size_t i = 0; i < text.size();) {
    size_t len = Utf8SequenceLength(text, i);
    if (len == 0) {
      *bad_offset = i;
      return false;
    }
    i += len;
  }
  return true;
}

std::string SanitizeUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t len = Utf8SequenceLength(text, i);
    if (len == 0) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02X", static_cast<unsigned char>(text[i]));
      out += hex;
      ++i;
    } else {
      out.append(text.substr(i, len));
      i += len;
    }
  }
  return out;
}

Status ParseControlRequest(std::string_view line, ControlRequest* out) {
  size_t bad;
  if (!IsValidUtf8(line, &bad)) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(line[bad]));
    return Status::Invalid("malformed request: not valid UTF-8 (byte " + std::string(hex) +
                           " at offset " + std::to_string(bad) + ")");
  }
  // The parser takes a raw NUL for the end of the input (so '{...}\0x'
  // would pass); JSON never has one (control characters in strings are
  // escaped).
  size_t nul = line.find('\0');
  if (nul != std::string_view::npos) {
    return Status::Invalid("malformed request: a NUL byte at offset " + std::to_string(nul) +
                           " (write it as \\u0000 inside a string)");
  }
  json request;
  THINSIM_RETURN_IF_ERROR(ParseJson(WithFiniteNumbers(line), &request));
  if (!request.is_object()) return Status::Invalid("a request must be a JSON object");
  // Well-formed from here on: an error reply can carry the id.
  if (request.contains("id")) {
    try {
      out->raw_id = RawMember(line, "id");
    } catch (const json::exception&) {
      // Cannot happen for a line the parser accepted; an error reply then
      // simply goes without the id.
    }
  }
  for (const auto& [key, value] : request.items()) {
    if (key != "execute" && key != "arguments" && key != "id") {
      return Status::Invalid("unknown request key " + Quote(key) + " (use execute, arguments, id)");
    }
  }
  auto execute = request.find("execute");
  if (execute == request.end() || !execute->is_string()) {
    return Status::Invalid("missing \"execute\": the command name (a string)");
  }
  auto arguments = request.find("arguments");
  if (arguments != request.end() && !arguments->is_object()) {
    return Status::Invalid("\"arguments\" must be a JSON object");
  }
  out->execute = execute->get<std::string>();
  if (arguments != request.end()) out->arguments = std::move(*arguments);
  return Status::OK();
}

}  // namespace thinsim
