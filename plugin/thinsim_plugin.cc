// nbdkit-thinsim-plugin: a thin adapter from nbdkit's callbacks to the
// engine (pool/pool.h) and the control socket (plugin/control_server.h).
//
// Every callback is a few lines: it calls the engine and maps a failed
// Status to nbdkit_error + nbdkit_set_error. No C++ exception crosses into
// nbdkit (Guard catches them).
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <new>
#include <string>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "env/fault_env.h"
#include "plugin/config.h"
#include "plugin/control_server.h"
#include "pool/pool.h"

namespace {

using thinsim::Status;

// Configuration, filled by .config and checked by .config_complete.
thinsim::PluginConfig config;
// The engine, created in .get_ready. Plain pointers, released in .unload:
// static destructors also run in the parent that nbdkit leaves behind when
// it daemonises, and must not tear down what the child serves.
thinsim::Pool* pool = nullptr;
// Under a pool=DIR pool's files, for the fault-* and power-cut commands
// (SPEC section 15); null for an in-memory pool. Outlives the pool.
thinsim::FaultEnv* fault_env = nullptr;
// The control socket: bound in .get_ready, served from .after_fork.
thinsim::ControlServer* control = nullptr;
// Whether the control path is ours to rename after nbdkit forks.
bool control_path_is_default = false;

// One NBD connection: the volume it opened, and whether it may write.
struct Handle {
  std::shared_ptr<thinsim::Volume> volume;
  bool writable;
  std::string name;  // the volume's, never "" (the default export resolved)
};

int Fail(const Status& s) {
  nbdkit_error("%s", s.message().c_str());
  nbdkit_set_error(thinsim::ErrnoValue(s.code()));
  return -1;
}

// Runs `fn` (returning int) and turns any exception into an error reply.
template <typename Fn>
int Guard(Fn fn) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    nbdkit_error("out of memory");
    nbdkit_set_error(ENOMEM);
  } catch (const std::exception& e) {
    nbdkit_error("internal error: %s", e.what());
    nbdkit_set_error(EIO);
  } catch (...) {
    nbdkit_error("internal error");
    nbdkit_set_error(EIO);
  }
  return -1;
}

Handle* H(void* handle) { return static_cast<Handle*>(handle); }

// Pool events go to control-socket subscribers. Called under the pool's
// lock: Publish only queues; each subscriber's thread formats and sends.
void PublishEvent(const thinsim::PoolEvent& e) { control->Publish(e); }

// ---- Configuration ----------------------------------------------------------

int thinsim_config(const char* key, const char* value) {
  return Guard([&] {
    std::string v = value;
    // Paths must survive nbdkit's chdir("/").
    if (std::string(key) == "pool" || std::string(key) == "control") {
      char* abs = nbdkit_absolute_path(value);
      if (abs == nullptr) return -1;
      v = abs;
      free(abs);
    }
    Status s = config.Set(key, v);
    return s.ok() ? 0 : Fail(s);
  });
}

int thinsim_config_complete() {
  return Guard([] {
    Status s = config.Complete();
    return s.ok() ? 0 : Fail(s);
  });
}

// Creates the pool and the volumes named on the command line, and binds the
// control socket: the last point where errors reach the user's terminal.
int thinsim_get_ready() {
  return Guard([] {
    std::unique_ptr<thinsim::Pool> opened;
    // nbdkit_nanosleep fails when the server is shutting down or the client
    // has gone: a queued write then gives up instead of holding shutdown.
    config.pool.abandon_queued_write = [] { return nbdkit_nanosleep(0, 1) == -1; };
    if (!config.pool.dir.empty()) {
      // With no rules and no volatile cache a FaultEnv only passes calls on.
      thinsim::FaultEnv::Options fo;
      fo.volatile_cache = config.volatile_cache;
      fault_env = new thinsim::FaultEnv(thinsim::Env::Default(), std::move(fo));
      config.pool.env = fault_env;
    }
    Status s = thinsim::Pool::Open(config.pool, &opened);
    if (!s.ok()) return Fail(s);
    pool = opened.release();
    for (const thinsim::VolumeSpec& v : config.volumes) {
      thinsim::VolumeInfo existing;
      if (pool->QueryVolume(v.name, &existing).ok()) continue;  // a reopened pool has it
      s = pool->CreateVolume(v.name, v.size, v.strategy);
      if (!s.ok()) return Fail(Status::Invalid("volume " + v.name + ": " + s.message()));
    }
    s = pool->Commit();
    if (!s.ok()) return Fail(s);
    std::string damaged = pool->read_only_reason();
    if (!damaged.empty()) nbdkit_error("serving read-only: %s", damaged.c_str());
    control_path_is_default = config.control_path.empty();
    std::string path = control_path_is_default ? thinsim::DefaultControlPath(config, getpid())
                                               : config.control_path;
    control = new thinsim::ControlServer(pool, thinsim::ControlServer::kDefaultMaxQueuedEvents, fault_env);
    s = control->LoadBitmaps();  // persistent bitmaps record from the first request on
    if (!s.ok()) return Fail(s);
    s = control->Listen(path);
    if (!s.ok()) return Fail(s);
    pool->SetEventHandler(PublishEvent);
    return 0;
  });
}

// Starts the control thread; a daemonised nbdkit has a new PID by now.
int thinsim_after_fork() {
  return Guard([] {
    if (control_path_is_default && config.pool.dir.empty()) {
      std::string path = thinsim::DefaultControlPath(config, getpid());
      if (path != control->path()) {
        Status s = control->Rename(path);
        if (!s.ok()) return Fail(s);
      }
    }
    nbdkit_debug("thinsim: control socket %s", control->path().c_str());
    control->Start();
    pool->StartCommitter(config.commit_interval_seconds);
    return 0;
  });
}

// Stops the background threads and commits what is pending.
void thinsim_cleanup() {
  if (control) control->Stop();
  if (pool) {
    pool->StopCommitter();
    Status s = pool->Commit();
    if (!s.ok()) nbdkit_error("final commit: %s", s.message().c_str());
  }
}

void thinsim_unload() {
  if (pool) pool->SetEventHandler(nullptr);  // no event may reach a deleted server
  delete control;
  control = nullptr;
  delete pool;
  pool = nullptr;
  delete fault_env;
  fault_env = nullptr;
}

// ---- Exports and connections ------------------------------------------------

// What an export is, and which running pool serves it: the pool's
// instance_id lets a mirror job tell that a target URI leads back to its own
// source volume (MirrorJob::Create), whatever the URI's spelling.
std::string ExportDescription(const thinsim::VolumeInfo& v) {
  std::string kind = v.origin ? std::string(v.read_only ? "read-only snapshot of " : "snapshot of ") + *v.origin
                              : std::string(v.read_only ? "read-only volume" : "volume");
  return kind + "; thinsim pool " + pool->instance_id();
}

int thinsim_list_exports(int /*readonly*/, int /*is_tls*/, struct nbdkit_exports* exports) {
  return Guard([&] {
    for (const thinsim::VolumeInfo& v : pool->QueryVolumes()) {
      if (nbdkit_add_export(exports, v.name.c_str(), ExportDescription(v).c_str()) == -1) return -1;
    }
    return 0;
  });
}

// Sent to a client that asks (NBD_INFO_DESCRIPTION).
const char* thinsim_export_description(void* handle) {
  const char* out = nullptr;
  Guard([&] {
    thinsim::VolumeInfo info;
    Status s = pool->QueryVolume(H(handle)->name, &info);
    if (!s.ok()) return Fail(s);
    out = nbdkit_strdup_intern(ExportDescription(info).c_str());
    return out == nullptr ? -1 : 0;
  });
  return out;
}

// The default export "" is the oldest volume.
const char* thinsim_default_export(int /*readonly*/, int /*is_tls*/) {
  std::string name = pool->DefaultVolumeName();
  if (name.empty()) return nullptr;
  return nbdkit_strdup_intern(name.c_str());
}

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

void* thinsim_open(int readonly) {
  Handle* h = nullptr;
  Guard([&] {
    std::string name = nbdkit_export_name();
    if (name.empty()) name = pool->DefaultVolumeName();
    // Damaged metadata is served read-only until repaired.
    bool writable = !readonly && pool->read_only_reason().empty();
    std::shared_ptr<thinsim::Volume> volume;
    Status s = pool->OpenVolume(name, writable, &volume);
    if (s.code() == thinsim::ErrorCode::kReadOnly) {
      // A read-only snapshot: served as a read-only export.
      writable = false;
      s = pool->OpenVolume(name, writable, &volume);
    }
    if (!s.ok()) return Fail(s);
    h = new Handle{std::move(volume), writable, name};
    return 0;
  });
  return h;
}

void thinsim_close(void* handle) {
  Guard([&] {
    pool->CloseVolume(H(handle)->volume, H(handle)->writable);
    delete H(handle);
    return 0;
  });
}

int64_t thinsim_get_size(void* handle) {
  return static_cast<int64_t>(pool->VolumeSize(*H(handle)->volume));
}

// Read-only snapshots are read-only exports: nbdkit refuses writes (EPERM).
int thinsim_can_write(void* handle) { return H(handle)->writable; }
// Flush makes data durable.
int thinsim_can_flush(void*) { return 1; }
// FUA is a flush after the request, done here.
int thinsim_can_fua(void*) { return NBDKIT_FUA_NATIVE; }
// Trim unmaps whole blocks and gives space back.
int thinsim_can_trim(void*) { return 1; }
// Zero unmaps (MAY_TRIM) or provisions (NO_HOLE); never emulated by writes.
int thinsim_can_zero(void*) { return 1; }
// Fast zero is decided before changing anything.
int thinsim_can_fast_zero(void*) { return 1; }
// Block status reports holes and data; with extents=space, also the shared
// blocks that a write could fail on for lack of space.
int thinsim_can_extents(void*) { return 1; }
// Every connection sees one pool; a flush covers all of them.
int thinsim_can_multi_conn(void*) { return 1; }

// The largest READ or WRITE payload served (SPEC section 4). nbdkit itself
// accepts up to 64M, so the plugin enforces what it advertises, as a strict
// server does. TRIM and WRITE_ZEROES carry no payload and may be larger
// (the NBD spec allows it, and QEMU sends them so).
constexpr uint32_t kMaxPayload = 32u << 20;

// Any alignment works (read-modify-write inside the engine); whole blocks
// avoid it.
int thinsim_block_size(void*, uint32_t* minimum, uint32_t* preferred, uint32_t* maximum) {
  *minimum = 1;
  *preferred = std::min<uint32_t>(pool->block_size(), 2u << 20);
  *maximum = kMaxPayload;
  return 0;
}

// EINVAL, logged, for a payload above the advertised maximum.
Status CheckPayload(const char* what, uint32_t count) {
  if (count <= kMaxPayload) return Status::OK();
  return Status::Invalid(std::string(what) + " of " + std::to_string(count) +
                         " bytes is above the advertised maximum of " + std::to_string(kMaxPayload));
}

// ---- Data -------------------------------------------------------------------

int AfterWrite(const Status& s, uint32_t flags) {
  if (!s.ok()) return Fail(s);
  if (flags & NBDKIT_FLAG_FUA) {
    Status f = pool->Flush();
    if (!f.ok()) return Fail(f);
  }
  return 0;
}

int thinsim_pread(void* handle, void* buf, uint32_t count, uint64_t offset, uint32_t /*flags*/) {
  return Guard([&] {
    Status s = CheckPayload("read", count);
    if (s.ok()) s = pool->Read(*H(handle)->volume, buf, count, offset);
    return s.ok() ? 0 : Fail(s);
  });
}

int thinsim_pwrite(void* handle, const void* buf, uint32_t count, uint64_t offset, uint32_t flags) {
  return Guard([&] {
    Status s = CheckPayload("write", count);
    if (!s.ok()) return Fail(s);
    return AfterWrite(pool->Write(*H(handle)->volume, buf, count, offset), flags);
  });
}

int thinsim_trim(void* handle, uint32_t count, uint64_t offset, uint32_t flags) {
  return Guard([&] { return AfterWrite(pool->Trim(*H(handle)->volume, count, offset), flags); });
}

int thinsim_zero(void* handle, uint32_t count, uint64_t offset, uint32_t flags) {
  return Guard([&] {
    unsigned zero_flags = 0;
    if (flags & NBDKIT_FLAG_MAY_TRIM) zero_flags |= thinsim::Pool::kMayTrim;
    if (flags & NBDKIT_FLAG_FAST_ZERO) zero_flags |= thinsim::Pool::kFastZero;
    return AfterWrite(pool->Zero(*H(handle)->volume, count, offset, zero_flags), flags);
  });
}

int thinsim_flush(void* /*handle*/, uint32_t /*flags*/) {
  return Guard([] {
    Status s = pool->Flush();
    return s.ok() ? 0 : Fail(s);
  });
}

int thinsim_extents(void* handle, uint32_t count, uint64_t offset, uint32_t /*flags*/,
                    struct nbdkit_extents* extents) {
  return Guard([&] {
    std::vector<thinsim::Extent> list;
    Status s = pool->Extents(*H(handle)->volume, count, offset, &list, config.extents);
    if (!s.ok()) return Fail(s);
    for (const thinsim::Extent& e : list) {
      if (nbdkit_add_extent(extents, e.offset, e.length, e.type) == -1) return -1;
    }
    return 0;
  });
}

nbdkit_plugin CreatePlugin() {
  nbdkit_plugin p = nbdkit_plugin();
  p.name = "thinsim";
  p.longname = "thinsim thin-provisioning pool simulator";
  p.version = "0.1.0";
  p.description = "A thin pool of refcounted blocks; every volume and snapshot is an export.";
  p.config = thinsim_config;
  p.config_complete = thinsim_config_complete;
  p.config_help = thinsim::kConfigHelp;
  p.get_ready = thinsim_get_ready;
  p.after_fork = thinsim_after_fork;
  p.cleanup = thinsim_cleanup;
  p.unload = thinsim_unload;
  p.list_exports = thinsim_list_exports;
  p.default_export = thinsim_default_export;
  p.export_description = thinsim_export_description;
  p.open = thinsim_open;
  p.close = thinsim_close;
  p.get_size = thinsim_get_size;
  p.can_write = thinsim_can_write;
  p.can_flush = thinsim_can_flush;
  p.can_fua = thinsim_can_fua;
  p.can_trim = thinsim_can_trim;
  p.can_zero = thinsim_can_zero;
  p.can_fast_zero = thinsim_can_fast_zero;
  p.can_extents = thinsim_can_extents;
  p.can_multi_conn = thinsim_can_multi_conn;
  p.block_size = thinsim_block_size;
  p.pread = thinsim_pread;
  p.pwrite = thinsim_pwrite;
  p.trim = thinsim_trim;
  p.zero = thinsim_zero;
  p.flush = thinsim_flush;
  p.extents = thinsim_extents;
  return p;
}

}  // namespace

static struct nbdkit_plugin plugin = CreatePlugin();
NBDKIT_REGISTER_PLUGIN(plugin)
