#include "tools/format.h"

#include <time.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <vector>

namespace thinsim::cli {
namespace {

using nlohmann::json;

constexpr std::array<char, 7> kUnitSuffixes = {'\0', 'K', 'M', 'G', 'T', 'P', 'E'};

// An argument of `request` as text: strings as they are, anything else as
// JSON, "?" when absent.
std::string ArgText(const Request& request, const char* key) {
  auto it = request.arguments.find(key);
  if (it == request.arguments.end()) return "?";
  return it->is_string() ? it->get<std::string>() : CompactJson(*it);
}

// The size in `result` in human units, else the size the user asked for.
std::string ResultSize(const json& result, const Request& request) {
  if (result.is_object() && result.contains("size") && result["size"].is_number_unsigned()) {
    return HumanSize(result["size"].get<std::uint64_t>());
  }
  return ArgText(request, "size");
}

std::string YesNo(bool value) { return value ? "yes" : "no"; }

// "N blocks (SIZE)" or, with a whole to compare against, "N blocks (SIZE, P%)".
std::string BlocksLine(std::uint64_t blocks, std::uint64_t block_size,
                       const std::uint64_t* whole) {
  std::string text = std::to_string(blocks) + " blocks (" + HumanSize(blocks * block_size);
  if (whole != nullptr) text += ", " + Percent(blocks, *whole);
  return text + ")";
}

// Appends "label:" padded to a common width, the value and a newline.
void AddField(std::string* out, const std::string& label, const std::string& value) {
  constexpr std::size_t kLabelWidth = 12;
  std::string field = label + ":";
  field.resize(std::max(kLabelWidth, field.size() + 1), ' ');
  *out += field + value + "\n";
}

// A JSON scalar as text for the status block.
std::string ScalarText(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_boolean()) return YesNo(value.get<bool>());
  if (value.is_array()) return std::to_string(value.size());
  return CompactJson(value);
}

// One row of the `ls` table for a volume object.
std::vector<std::string> VolumeRow(const json& volume) {
  const json& origin = volume.at("origin");
  return {
      volume.at("name").get<std::string>(),
      HumanSize(volume.at("size").get<std::uint64_t>()),
      volume.at("strategy").get<std::string>(),
      YesNo(volume.at("active").get<bool>()),
      YesNo(volume.at("read_only").get<bool>()),
      std::to_string(volume.at("mapped_blocks").get<std::uint64_t>()),
      std::to_string(volume.at("exclusive_blocks").get<std::uint64_t>()),
      std::to_string(volume.at("shared_blocks").get<std::uint64_t>()),
      std::to_string(volume.at("provisioned_blocks").get<std::uint64_t>()),
      std::to_string(volume.at("reserved_blocks").get<std::uint64_t>()),
      origin.is_null() ? "-" : origin.get<std::string>(),
  };
}


std::string SnapshotPairs(const Request& request) {
  auto pair_text = [](const json& pair) {
    return pair.at("origin").get<std::string>() + " -> " + pair.at("name").get<std::string>();
  };
  if (!request.arguments.contains("snapshots")) return pair_text(request.arguments);
  std::string text;
  for (const json& pair : request.arguments["snapshots"]) {
    if (!text.empty()) text += ", ";
    text += pair_text(pair);
  }
  return text;
}

std::string SnapshotConfirmation(const Request& request) {
  std::string text = "snapshot " + SnapshotPairs(request);
  auto ro = request.arguments.find("read-only");
  if (ro != request.arguments.end() && ro->is_boolean() && ro->get<bool>()) {
    text += " (read-only)";
  }
  return text;
}

std::string DeactivateConfirmation(const Request& request, const json& result) {
  std::string text = "deactivated " + ArgText(request, "name");
  if (result.is_object() && result.value("active", false)) {
    std::uint64_t writers = result.value("writable_connections", std::uint64_t{0});
    text += " (still active: " + std::to_string(writers) + " writable connection" +
            (writers == 1 ? "" : "s") + ")";
  }
  return text;
}

std::string GrowConfirmation(const Request& request, const json& result) {
  if (!result.is_object() || !result.contains("total_blocks")) {
    return "grew pool to " + ArgText(request, "size");
  }
  const auto blocks = result.at("total_blocks").get<std::uint64_t>();
  const auto block_size = result.at("block_size").get<std::uint64_t>();
  return "grew pool to " + HumanSize(blocks * block_size) + " (" + std::to_string(blocks) +
         " blocks)";
}

}  // namespace

std::string RenderTable(const std::vector<std::vector<std::string>>& rows,
                        const std::vector<bool>& right) {
  std::vector<std::size_t> widths(right.size(), 0);
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      const bool last = i + 1 == row.size();
      const std::string pad(widths[i] - row[i].size(), ' ');
      if (right[i]) {
        line += pad + row[i];
      } else {
        line += last ? row[i] : row[i] + pad;
      }
      if (!last) line += "  ";
    }
    out += line + "\n";
  }
  return out;
}

std::string HumanSize(std::uint64_t bytes) {
  std::size_t unit = 0;
  while (unit + 1 < kUnitSuffixes.size() && bytes >> (10 * (unit + 1)) != 0) ++unit;
  if (unit == 0) return std::to_string(bytes);
  const std::uint64_t unit_bytes = std::uint64_t{1} << (10 * unit);
  if (bytes % unit_bytes == 0) return std::to_string(bytes / unit_bytes) + kUnitSuffixes[unit];
  double value = static_cast<double>(bytes) / static_cast<double>(unit_bytes);
  if (value >= 1023.95 && unit + 1 < kUnitSuffixes.size()) {  // would print "1024.0K"
    value /= 1024.0;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f%c", value, kUnitSuffixes[unit]);
  return text;
}

std::string Percent(std::uint64_t part, std::uint64_t whole) {
  const double percent =
      whole == 0 ? 0.0 : 100.0 * static_cast<double>(part) / static_cast<double>(whole);
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f%%", percent);
  return text;
}

std::string FormatStatus(const json& pool) {
  const auto block_size = pool.at("block_size").get<std::uint64_t>();
  const auto total = pool.at("total_blocks").get<std::uint64_t>();
  std::string out;
  AddField(&out, "block size", HumanSize(block_size));
  AddField(&out, "total", BlocksLine(total, block_size, nullptr));
  AddField(&out, "used", BlocksLine(pool.at("used_blocks").get<std::uint64_t>(), block_size, &total));
  AddField(&out, "reserved",
           BlocksLine(pool.at("reserved_blocks").get<std::uint64_t>(), block_size, &total));
  AddField(&out, "free", BlocksLine(pool.at("free_blocks").get<std::uint64_t>(), block_size, &total));
  AddField(&out, "mode", pool.at("mode").get<std::string>());
  if (pool.contains("when_full")) AddField(&out, "when full", ScalarText(pool["when_full"]));
  if (pool.contains("low_water_percent")) {
    AddField(&out, "low water", ScalarText(pool["low_water_percent"]) + "%");
  }
  if (pool.contains("volumes")) AddField(&out, "volumes", ScalarText(pool["volumes"]));
  if (pool.contains("persistent")) AddField(&out, "persistent", ScalarText(pool["persistent"]));
  return out;
}

std::string FormatVolumeTable(const json& volumes) {
  std::vector<std::vector<std::string>> rows = {{"NAME", "SIZE", "STRATEGY", "ACTIVE", "RO",
                                                 "MAPPED", "EXCL", "SHARED", "PROV", "RESERVED",
                                                 "ORIGIN"}};
  const std::vector<bool> right = {false, true, false, false, false, true,
                                   true,  true, true,  true,  false};
  for (const json& volume : volumes) rows.push_back(VolumeRow(volume));
  return RenderTable(rows, right);
}

std::string FormatFaultTable(const json& faults) {
  std::vector<std::vector<std::string>> rows = {
      {"ID", "LAYER", "OP", "ERRNO", "OFFSET", "LENGTH", "PROB", "COUNT", "FIRED"}};
  const std::vector<bool> right = {true, false, false, false, true, true, true, true, true};
  for (const json& f : faults) {
    const std::uint64_t length = f.at("length").get<std::uint64_t>();
    const std::uint64_t count = f.at("count").get<std::uint64_t>();
    char probability[32];
    std::snprintf(probability, sizeof(probability), "%g", f.at("probability").get<double>());
    rows.push_back({std::to_string(f.at("id").get<std::uint64_t>()), f.at("layer").get<std::string>(),
                    f.at("op").get<std::string>(), f.at("errno").get<std::string>(),
                    length == 0 ? "-" : HumanSize(f.at("offset").get<std::uint64_t>()),
                    length == 0 ? "all" : HumanSize(length), probability,
                    count == 0 ? "-" : std::to_string(count),
                    std::to_string(f.at("fired").get<std::uint64_t>())});
  }
  return RenderTable(rows, right);
}

std::string FormatTimestamp(const json& timestamp) {
  const time_t seconds = static_cast<time_t>(timestamp.at("seconds").get<std::int64_t>());
  const auto micros = timestamp.value("microseconds", std::int64_t{0});
  tm utc{};
  if (gmtime_r(&seconds, &utc) == nullptr) return "?";
  char date[64];
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &utc);
  char text[96];
  std::snprintf(text, sizeof(text), "%s.%06lldZ", date, static_cast<long long>(micros));
  return text;
}

std::string FormatEvent(const json& event) {
  std::string line;
  if (event.contains("timestamp")) line = FormatTimestamp(event["timestamp"]) + " ";
  line += event.at("event").get<std::string>();
  if (event.contains("data") && !event["data"].is_null()) line += " " + CompactJson(event["data"]);
  return line;
}

std::string FormatConfirmation(const Request& request, const json& result) {
  const std::string& command = request.execute;
  const std::string name = ArgText(request, "name");
  if (command == "volume-create") {
    std::string text = "created " + name + " (" + ResultSize(result, request);
    if (request.arguments.contains("reserve")) text += ", reserve=" + ArgText(request, "reserve");
    return text + ")";
  }
  if (command == "volume-delete") return "deleted " + name;
  if (command == "volume-resize") return "resized " + name + " to " + ResultSize(result, request);
  if (command == "volume-set") return "set " + name + " reserve=" + ArgText(request, "reserve");
  if (command == "volume-activate") return "activated " + name;
  if (command == "volume-deactivate") return DeactivateConfirmation(request, result);
  if (command == "snapshot-create") return SnapshotConfirmation(request);
  if (command == "provision") {
    return "provisioned " + name + " offset " + ArgText(request, "offset") + " length " +
           ArgText(request, "length");
  }
  if (command == "pool-grow") return GrowConfirmation(request, result);
  if (command == "commit") return "committed";
  if (command == "fault-add") return "added fault " + std::to_string(result.at("id").get<std::uint64_t>());
  if (command == "fault-remove") return "removed fault " + ArgText(request, "id");
  if (command == "power-cut") return "power cut: unflushed writes dropped; restart the server";
  return command + ": ok";
}

std::string FormatServerError(const json& error) {
  std::string desc, cls;
  if (error.is_object()) {
    if (error.contains("desc") && error["desc"].is_string()) desc = error["desc"].get<std::string>();
    if (error.contains("class") && error["class"].is_string()) cls = error["class"].get<std::string>();
  }
  if (desc.empty() && cls.empty()) return "server error " + CompactJson(error);
  if (desc.empty()) return cls;
  if (cls.empty()) return desc;
  return desc + " (" + cls + ")";
}

std::string CompactJson(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace thinsim::cli
