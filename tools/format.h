// Human-readable formatting of control socket replies for the thinsim CLI.
// Every function here is pure: JSON in, text out. Functions that read server
// objects throw nlohmann::json::exception when a required key is missing or
// has the wrong type.
//
// Thread safety: all functions are thread-safe.

#ifndef THINSIM_TOOLS_FORMAT_H_
#define THINSIM_TOOLS_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/control_client.h"

namespace thinsim::cli {

// A byte count in powers of 1024 with nbdkit's suffixes: "0", "512", "64K",
// "1G"; sizes that are not a whole number of units get one decimal: "1.5G".
std::string HumanSize(std::uint64_t bytes);

// `part` as a percentage of `whole` with one decimal: "6.3%" ("0.0%" when
// whole is 0).
std::string Percent(std::uint64_t part, std::uint64_t whole);

// Renders rows as columns two spaces apart; `right[i]` right-aligns column i.
// The last column is never padded, so lines carry no trailing blanks.
std::string RenderTable(const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right);

// The key/value block printed by `thinsim status` for a pool object.
std::string FormatStatus(const nlohmann::json& pool);

// The aligned table printed by `thinsim ls` for an array of volume objects.
std::string FormatVolumeTable(const nlohmann::json& volumes);

// The aligned table printed by `thinsim fault ls` for an array of fault
// rules (query-faults): id, layer, op, errno, range, probability, count,
// fired.
std::string FormatFaultTable(const nlohmann::json& faults);

// An event's timestamp {"seconds", "microseconds"} as UTC ISO 8601 with
// microseconds: "2024-05-01T12:00:00.000123Z".
std::string FormatTimestamp(const nlohmann::json& timestamp);

// One line for `thinsim events`: "TIMESTAMP EVENT DATA" (DATA as compact JSON,
// left out when the event has none).
std::string FormatEvent(const nlohmann::json& event);

// The one-line confirmation printed after a mutating command succeeded, e.g.
// "created vol1 (1G)". `result` is the server's return value.
std::string FormatConfirmation(const Request& request, const nlohmann::json& result);

// A server error object as "DESC (CLASS)".
std::string FormatServerError(const nlohmann::json& error);

// Compact one-line JSON (invalid UTF-8 replaced rather than thrown on).
std::string CompactJson(const nlohmann::json& value);

}  // namespace thinsim::cli

#endif  // THINSIM_TOOLS_FORMAT_H_
