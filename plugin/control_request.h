// ControlRequest: one control-socket request line, parsed strictly
// (docs/control-protocol.md, SPEC section 9).
//
// Strict means: the line is valid UTF-8 (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF), exactly one JSON object with nothing
// but whitespace after it, no object at any depth has a key twice (the
// last one must not silently win), nesting is at most kMaxDepth deep, and
// the top level has only "execute" (a string), "arguments" (an object) and
// "id" (any JSON value). The id is kept as the exact bytes the client sent,
// so that a number of any size or precision comes back unchanged.
//
// Parsing changes nothing and throws nothing but std::bad_alloc.
//
// Thread safety: free functions on caller-owned values.
#ifndef THINSIM_PLUGIN_CONTROL_REQUEST_H_
#define THINSIM_PLUGIN_CONTROL_REQUEST_H_

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace thinsim {

struct ControlRequest {
  // Deeper requests are refused; no command needs more than 4.
  static constexpr int kMaxDepth = 32;

  std::string execute;
  nlohmann::json arguments = nlohmann::json::object();  // always an object
  // The id member's JSON text as sent (no surrounding whitespace), or none.
  std::optional<std::string> raw_id;
};

// Parses `line` (without its newline) into *out. On error, out->raw_id is
// set when the line was well-formed JSON with an "id" (so that the error
// reply can carry it) and left empty otherwise.
Status ParseControlRequest(std::string_view line, ControlRequest* out);

// True if `text` is valid UTF-8; otherwise *bad_offset is the offset of the
// first byte that does not start a valid sequence.
bool IsValidUtf8(std::string_view text, size_t* bad_offset);

// `text` with every byte that is not part of a valid UTF-8 sequence written
// as "\xNN": safe to put into a JSON string (error messages quoting input).
std::string SanitizeUtf8(std::string_view text);

}  // namespace thinsim

#endif  // THINSIM_PLUGIN_CONTROL_REQUEST_H_
