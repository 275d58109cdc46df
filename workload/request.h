// Request and RequestSource: the vocabulary of workloads (SPEC section 14).
//
// A workload is a stream of Requests against one pool: data requests on a
// volume (what an NBD client sends) and control requests (what `thinsim`
// sends over the control socket: create, snapshot, delete). A synthetic
// generator (workload/generators.h), a recorded trace (trace/trace_reader.h)
// and a live run all speak it, so that the engine runner
// (workload/engine_runner.h) can play any of them under any strategy and
// pool size, and `thinsim compare` can put them side by side.
//
// Sizes and offsets are in bytes. A Request names its volume; a generator
// creates the volumes it uses with kCreateVolume first. Times are
// microseconds since the start of the run: a trace records when each request
// was sent; a generator advances a virtual clock, so that runs are
// deterministic by seed and take no wall-clock time to wait.
//
// Thread safety: a RequestSource is used by one thread at a time.
#ifndef THINSIM_WORKLOAD_REQUEST_H_
#define THINSIM_WORKLOAD_REQUEST_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace thinsim::workload {

enum class Op {
  kRead,
  kWrite,
  kZero,       // NBD WRITE_ZEROES; flags say NO_HOLE / FAST_ZERO
  kTrim,       // NBD TRIM
  kFlush,      // NBD FLUSH
  kProvision,  // WRITE_ZEROES + NO_HOLE with thinsim's provision semantics
  kCreateVolume,  // `length` is the size; `arg` the strategy name, "" for the default
  kSnapshot,      // of `volume`, named `arg`
  kDeleteVolume,
  kResize,        // `length` is the new size
};

// NBD command flags, as the protocol numbers them.
constexpr uint32_t kFlagFua = 1 << 0;
constexpr uint32_t kFlagNoHole = 1 << 1;
constexpr uint32_t kFlagFastZero = 1 << 4;

struct Request {
  uint64_t time_us = 0;
  Op op = Op::kWrite;
  std::string volume;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint32_t flags = 0;
  std::string arg;
  // The errno the request got when it was recorded (0: success); -1 when
  // unknown (a generated request). A replay compares against it.
  int recorded_errno = -1;
};

// "read", "write", "zero", "trim", "flush", "provision", "create",
// "snapshot", "delete", "resize": the names traces and reports use.
std::string_view OpName(Op op);
// Invalid, naming the unknown word, for anything else.
Status ParseOp(std::string_view name, Op* out);

// A stream of Requests in time order.
class RequestSource {
 public:
  virtual ~RequestSource() = default;
  // The next request; false at the end of the stream or on an error
  // (status() then says which).
  virtual bool Next(Request* out) = 0;
  // OK unless the stream ended early because it could not be read.
  virtual Status status() const { return Status::OK(); }
};

}  // namespace thinsim::workload

#endif  // THINSIM_WORKLOAD_REQUEST_H_
