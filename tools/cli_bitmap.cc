#include "tools/cli_bitmap.h"

#include <CLI/CLI.hpp>

#include "tools/format.h"

namespace thinsim::cli {

using nlohmann::json;

namespace {

// VOLUME NAME, the arguments of most bitmap subcommands.
CLI::App* AddVolumeAndName(CLI::App* bitmap, const std::string& verb, const std::string& help, BitmapArguments& a) {
  CLI::App* sub = bitmap->add_subcommand(verb, help);
  sub->add_option("VOLUME", a.volume, "Volume name")->required();
  sub->add_option("NAME", a.name, "Bitmap name")->required();
  return sub;
}

}  // namespace

void AddBitmapCommands(CLI::App& app, BitmapArguments& a) {
  CLI::App* bitmap = app.add_subcommand("bitmap", "Dirty bitmaps: what changed in a volume (SPEC section 12)");
  bitmap->require_subcommand(1);
  CLI::App* add = AddVolumeAndName(bitmap, "add", "Start a bitmap recording the volume's changes (bitmap-add)", a);
  add->add_option("--granularity", a.granularity, "Bytes per bit, a power of two 512..64M (default: block size)");
  add->add_flag("--disabled", a.disabled, "Create it not recording");
  add->add_flag("--persistent", a.persistent, "Keep it in the pool's metadata across restarts and crashes (pool=DIR)");
  AddVolumeAndName(bitmap, "remove", "Remove a bitmap (bitmap-remove)", a);
  AddVolumeAndName(bitmap, "clear", "Forget what a bitmap holds (bitmap-clear)", a);
  AddVolumeAndName(bitmap, "enable", "Make a bitmap record (bitmap-enable)", a);
  AddVolumeAndName(bitmap, "disable", "Stop a bitmap recording (bitmap-disable)", a);
  CLI::App* merge = AddVolumeAndName(bitmap, "merge", "OR bitmaps into NAME, all or nothing (bitmap-merge)", a);
  merge->add_option("SOURCES", a.sources, "Bitmaps to merge in")->required();
  bitmap->add_subcommand("ls", "List bitmaps (query-bitmaps)")->add_option("VOLUME", a.volume, "Only this volume");
  CLI::App* extents = AddVolumeAndName(bitmap, "extents", "Dirty and clean ranges of a bitmap (bitmap-extents)", a);
  extents->add_option("--offset", a.offset, "Start of the range, e.g. 1M");
  extents->add_option("--length", a.length, "Length of the range (default: to the end)");
  CLI::App* cut = AddVolumeAndName(bitmap, "cut", "Freeze NAME into INTO and clear NAME (bitmap-cut)", a);
  cut->add_option("INTO", a.into, "Name of the new, frozen bitmap")->required();
}

bool BuildBitmapRequest(const std::string& command, const BitmapArguments& a, Request* request, std::string* error) {
  const json target = {{"volume", a.volume}, {"name", a.name}};
  if (command == "bitmap add") {
    json args = target;
    if (!a.granularity.empty()) args["granularity"] = a.granularity;
    if (a.disabled) args["disabled"] = true;
    if (a.persistent) args["persistent"] = true;
    *request = Request{"bitmap-add", std::move(args)};
  } else if (command == "bitmap remove" || command == "bitmap clear" || command == "bitmap enable" ||
             command == "bitmap disable") {
    *request = Request{"bitmap-" + command.substr(7), target};
  } else if (command == "bitmap merge") {
    *request = Request{"bitmap-merge", {{"volume", a.volume}, {"target", a.name}, {"sources", a.sources}}};
  } else if (command == "bitmap ls") {
    *request = Request{"query-bitmaps", a.volume.empty() ? json::object() : json{{"volume", a.volume}}};
  } else if (command == "bitmap extents") {
    json args = target;
    if (!a.offset.empty()) args["offset"] = a.offset;
    if (!a.length.empty()) args["length"] = a.length;
    *request = Request{"bitmap-extents", std::move(args)};
  } else if (command == "bitmap cut") {
    *request = Request{"bitmap-cut", {{"volume", a.volume}, {"name", a.name}, {"into", a.into}}};
  } else {
    *error = "unknown command '" + command + "'";
    return false;
  }
  return true;
}

std::string FormatBitmapReply(const Request& request, const json& result) {
  if (request.execute == "query-bitmaps") {
    std::vector<std::vector<std::string>> rows = {
        {"VOLUME", "NAME", "GRANULARITY", "DIRTY", "RECORDING", "BUSY", "PERSISTENT"}};
    for (const json& b : result) {
      rows.push_back({b.at("volume").get<std::string>(), b.at("name").get<std::string>(),
                      HumanSize(b.at("granularity").get<std::uint64_t>()), HumanSize(b.at("count").get<std::uint64_t>()),
                      b.at("recording").get<bool>() ? "yes" : "no", b.at("busy").get<bool>() ? "yes" : "no",
                      b.at("persistent").get<bool>() ? "yes" : "no"});
    }
    return RenderTable(rows, {false, false, true, true, false, false, false});
  }
  if (request.execute == "bitmap-extents") {
    std::vector<std::vector<std::string>> rows = {{"OFFSET", "LENGTH", "STATE"}};
    for (const json& e : result) {
      rows.push_back({std::to_string(e.at("offset").get<std::uint64_t>()),
                      std::to_string(e.at("length").get<std::uint64_t>()), e.at("dirty").get<bool>() ? "dirty" : "clean"});
    }
    return RenderTable(rows, {true, true, false});
  }
  return "";
}

}  // namespace thinsim::cli
