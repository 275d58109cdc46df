// ModelDriver: random sequences of operations run against both the engine
// and the reference model (pool/testing/reference_model.h), shared by
// pool/pool_model_test.cc (choices from a seeded PRNG, failures reported to
// gtest) and fuzz/engine_fuzzer.cc (choices from the fuzz input, failures
// abort()). Test-only code.
//
// Operations: data requests (through a writable connection held open, or
// one opened for the request, which activates the volume), provision by
// name, strategy changes, pins, connections, snapshots (single and
// multi-origin, read-only and writable), deletes, resizes, volume creation
// and pool growth; for a persistent pool also commits, flushes and
// reopens. The model predicts every outcome exactly (NoSpace, ReadOnly,
// Busy, Unsupported, Exists, NotFound):
//   - a data request needs one block per touched hole or shared block (trims
//     never allocate; MAY_TRIM zeroes allocate only for shared partial
//     edges, holes stay holes) and fits iff, with those blocks taken and the
//     mappings changed (before any unmapping the request also does),
//     reserved <= free (AllocateBlocks);
//   - activation (pin or writable open), a strategy change, snapshots
//     (all-or-nothing, checked after each one in order), creating a `full`
//     volume and growing a fully guaranteed one are refused iff afterwards
//     reserved > free.
// After every step every byte, every Extents answer, every counter of every
// volume and of the pool must agree with the model, reserved <= free, and
// TEST_CheckCounters() must pass. A request whose every block-needing vblock
// is guaranteed must never fail with NoSpace. After any step with a failed
// operation the engine's whole state (QueryPool, QueryVolumes, all bytes,
// all extents; the pool mode aside) must equal the state captured before it,
// and the model must be unchanged.
//
// Extension points (bitmap/testing/bitmap_model_driver.h uses them): a
// subclass may follow every request that reached the volume's observers and
// the volumes' lifecycle, veto resizes, take a share of the steps for
// operations of its own and add its own comparison after every step. The
// default hooks do nothing and draw no choice, so a driver that overrides
// none makes exactly the choices, and runs exactly the operations, it made
// before they existed.
//
// Thread safety: one thread.
#ifndef THINSIM_POOL_TESTING_MODEL_DRIVER_H_
#define THINSIM_POOL_TESTING_MODEL_DRIVER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "pool/pool.h"
#include "pool/request_observer.h"
#include "pool/testing/reference_model.h"

namespace thinsim::model {

constexpr size_t kMaxVolumes = 9;
constexpr size_t kMaxHeldPerVolume = 2;
constexpr Strategy kStrategies[] = {Strategy::kNone, Strategy::kProvision, Strategy::kVolume,
                                    Strategy::kFull};

class ModelDriver {
 public:
  // A check failed: `fatal` ends the step (Check throws StepFailed after
  // reporting); a non-fatal one lets it go on, as gtest's EXPECT does.
  struct StepFailed {};

  ModelDriver() = default;
  virtual ~ModelDriver() { Close(); }
  ModelDriver(const ModelDriver&) = delete;
  ModelDriver& operator=(const ModelDriver&) = delete;

  // `persistent`: the pool lives in a directory under $TMPDIR (journal,
  // blocks freed in a transaction reusable only after a commit, reopen).
  // Draws the pool's size and default strategy; then compares.
  void Start(bool persistent);
  // One random operation, checked against the model (and, when it failed,
  // that nothing changed), then every counter, byte and extent compared.
  // Throws StepFailed on a fatal failure. desc() says what it did.
  void Step();
  // Closes every connection and the pool; removes a persistent pool's
  // directory. Also done by the destructor.
  void Close();

  const std::string& desc() const { return desc_; }
  // What the run exercised: outcomes, guaranteed writes, the final pool. A
  // subclass may append its own.
  virtual std::string Summary() const;

  // Reports a failed check. Implementations record it (a test) or abort (a
  // fuzzer); for a fatal one the caller then throws StepFailed.
  virtual void Report(bool fatal, const char* file, int line, const std::string& what) = 0;

  // Outcomes by operation over every run, so that a change of the
  // generator that stops reaching some refusal is noticed.
  static inline std::map<std::string, int> coverage_;
  // Set by MODEL_SCOPED_TRACE: context printed with each failure.
  std::vector<std::string> traces_;

 protected:
  // A number in [0, n): the choices that drive every operation.
  virtual uint64_t Choose(uint64_t n) = 0;

  enum class Op {
    kWrite, kTrim, kZeroMayTrim, kZeroNoHole, kProvision, kFastZeroMayTrim, kFastZeroNoHole,
  };
  struct Held {
    std::shared_ptr<Volume> v;
    bool writable;
  };

  void Init(bool persistent);

  void CloseHeld();

  uint64_t R(uint64_t n) { return n == 0 ? 0 : Choose(n); }
  bool Chance(int percent) { return R(100) < static_cast<uint64_t>(percent); }

  std::string PickVolume();
  // With `percent` chance, a volume satisfying `pred` if there is one.
  template <typename Pred>
  std::string PickVolumePreferring(int percent, Pred pred) {
    std::vector<std::string> c;
    for (const auto& [name, v] : model_.vols) {
      if (pred(v)) c.push_back(name);
    }
    if (!c.empty() && Chance(percent)) return c[R(c.size())];
    return PickVolume();
  }

  // A random in-range request: small, multi-block, block-aligned,
  // sector-aligned or most of the volume.
  std::pair<uint64_t, uint64_t> PickRange(uint64_t size);

  uint64_t PickVolumeSize();

  Strategy PickStrategy() { return kStrategies[R(4)]; }

  std::string NewName(const char* prefix) { return prefix + std::to_string(next_name_++); }

  // Checks an engine status against the expected code and that its message
  // holds each of `parts`.
  void ExpectStatus(const Status& s, ErrorCode want, const std::vector<std::string>& parts = {});

  Held* FindHeldWritable(const std::string& name);

  // ---- Data-plane operations ---------------------------------------------------

  void DataOp(Op op);

  // A write to vblocks the volume guarantees (once the request's connection
  // has activated it): it must not fail with NoSpace.
  void GuaranteedWrite();

  // One data request, checked against the model. Provision goes by name (the
  // control socket: no connection, no activation); the others through a
  // writable connection held open, or one opened for the request (which
  // activates the volume and may be refused with NoSpace), or, for a
  // read-only snapshot, a read-only connection.
  void DataOpAt(Op op, const std::string& name, uint64_t off, uint64_t len, bool probe);

  // Tells OnObserved of a request made, if it reached the observers.
  void ReportObserved(Op op, const std::string& name, const Span& sp, bool read_only, const Status& result);

  // ---- Activation and connections ------------------------------------------------

  void Connect();

  void Disconnect();

  void Activate();

  void Deactivate();

  void SetStrategy();

  // ---- Control-plane operations ------------------------------------------------

  void Snapshot();

  void Delete();

  void Create();

  void Resize();

  void GrowPool();

  void CommitOrFlush();

  // Closes every connection (the server stops), then opens the pool again
  // from its directory: strategies, pins, mappings, data and every
  // reservation must come back.
  void Reopen();

  void BusyCheck();

  // ---- Comparison -----------------------------------------------------------------

  void Capture(EngineState* st);

  // Compares the engine with the model and keeps what it saw as the state
  // before the next step.
  void CompareAll();

  // After a step with a failed operation: the engine is exactly as before it.
  void ExpectUnchanged(const Model& model_before);

  void RandomStep();

  // ---- Extension points (see the header comment) ------------------------------
  //
  // Each hook is called on the driver's thread, from inside a step (or
  // Start, or Close), after the engine call it reports and after the model
  // took its effect. A hook may use the checks (MODEL_ASSERT_*: a fatal one
  // ends the step), desc_, kind_, ExpectStatus and the choices (R, Chance);
  // the default does nothing and draws nothing.

  // A request as the volume's observers saw it (pool/request_observer.h).
  struct Observed {
    std::string volume;
    ChangeRequest::Kind kind;
    uint64_t offset;  // a trim: only its whole blocks
    uint64_t length;
    ErrorCode result;  // what the engine answered
  };
  // A data request that reached the volume's observers: every one but those
  // to a read-only volume, trims without a whole block, and those refused
  // before they were made (their connection's open refused). A request the
  // engine then fails (NoSpace, Unsupported fast zero) has reached them: it
  // is reported with its result. A resize zeroing its old last block's tail
  // is no request (OnVolumeResized).
  virtual void OnObserved(const Observed& request) { (void)request; }
  // After the pool opened: in Start (`reopened` false) and in Reopen, before
  // anything else uses it.
  virtual void OnPoolOpened(bool reopened) { (void)reopened; }
  // Before the pool closes: in Reopen and in Close (not from the
  // destructor, which calls Close after a subclass is gone).
  virtual void OnPoolClosing() {}
  // After a volume was created (`size` bytes), snapshot `name` of `origin`
  // was created (one call per snapshot of a multi-origin call, in request
  // order), a volume was deleted, resized (also to its own size).
  virtual void OnVolumeCreated(const std::string& name, uint64_t size) { (void)name, (void)size; }
  virtual void OnSnapshotCreated(const std::string& origin, const std::string& name) { (void)origin, (void)name; }
  virtual void OnVolumeDeleted(const std::string& name) { (void)name; }
  virtual void OnVolumeResized(const std::string& name, uint64_t old_size, uint64_t new_size) {
    (void)name, (void)old_size, (void)new_size;
  }
  // The percentage of steps (on a pool with a volume) that ExtraStep takes
  // instead of the driver's own operations; 0: none, and no choice drawn.
  virtual int ExtraStepPercent() const { return 0; }
  // One operation of the subclass's. It sets desc_ (and kind_ before
  // ExpectStatus); a failed ExpectStatus makes the step check that the
  // engine's state did not change, as for the driver's own operations.
  virtual void ExtraStep() {}
  // The subclass's own comparison, at the end of every CompareAll (after
  // Start and after every step).
  virtual void CompareExtra() {}

  PoolOptions options_;
  std::string dir_;  // persistent pools: a temporary directory
  std::unique_ptr<Pool> pool_;
  Model model_;
  std::map<std::string, Bytes> data_;  // the model's bytes of each volume
  std::map<std::string, std::vector<Held>> held_;
  uint64_t max_total_ = 0;
  Strategy default_strategy_ = Strategy::kNone;
  uint64_t next_name_ = 0;
  std::string desc_;
  std::string kind_;  // the operation, for coverage_
  std::vector<std::string> history_;  // desc() of every step
  bool failed_ = false;
  EngineState last_state_;
  std::map<ErrorCode, int> outcomes_;
  uint64_t guaranteed_writes_ = 0;
  uint64_t guaranteed_failures_ = 0;
  uint64_t failed_steps_checked_ = 0;
};

// ---- Checks (gtest's ASSERT_* and EXPECT_* without gtest) --------------------

template <typename T>
std::string CheckText(const T& v) {
  if constexpr (std::is_enum_v<T>) {
    return std::to_string(static_cast<long long>(v));
  } else if constexpr (std::is_null_pointer_v<T>) {
    return "nullptr";
  } else {
    std::ostringstream o;
    o << v;
    return o.str();
  }
}

// "a == b" failed: what each side was. Empty when the comparison holds.
template <typename A, typename B, typename Op>
std::string CheckOp(const A& a, const B& b, Op op, const char* text) {
  if (op(a, b)) return "";
  return std::string("expected ") + text + "\n  left: " + CheckText(a) + "\n  right: " + CheckText(b);
}

// Collects a failed check's message; reports it when the statement ends
// and, for a fatal check, throws ModelDriver::StepFailed like ASSERT_*
// returns.
class CheckFailure {
 public:
  CheckFailure(ModelDriver* d, bool fatal, const char* file, int line, std::string what)
      : d_(d), fatal_(fatal), file_(file), line_(line) {
    msg_ << what;
  }
  ~CheckFailure() noexcept(false) {
    std::string what = msg_.str();
    for (const std::string& t : d_->traces_) what += "\n  (" + t + ")";
    d_->Report(fatal_, file_, line_, what);
    if (fatal_) throw ModelDriver::StepFailed{};
  }
  CheckFailure(const CheckFailure&) = delete;
  CheckFailure& operator=(const CheckFailure&) = delete;
  template <typename T>
  CheckFailure& operator<<(const T& v) {
    if (!streamed_) msg_ << ": ";
    streamed_ = true;
    msg_ << v;
    return *this;
  }

 private:
  ModelDriver* d_;
  bool fatal_;
  const char* file_;
  int line_;
  bool streamed_ = false;
  std::ostringstream msg_;
};

// Context for the failures reported while it lives.
class ScopedTrace {
 public:
  ScopedTrace(ModelDriver* d, std::string what) : d_(d) { d_->traces_.push_back(std::move(what)); }
  ~ScopedTrace() { d_->traces_.pop_back(); }
  ScopedTrace(const ScopedTrace&) = delete;
  ScopedTrace& operator=(const ScopedTrace&) = delete;

 private:
  ModelDriver* d_;
};

}  // namespace thinsim::model

#define MODEL_CHECK_OP_(fatal, a, b, op, text)                                                        \
  if (std::string _model_m = ::thinsim::model::CheckOp((a), (b), op{}, text); _model_m.empty()) { \
  } else                                                                                            \
    ::thinsim::model::CheckFailure(this, fatal, __FILE__, __LINE__, _model_m)
#define MODEL_CHECK_(fatal, cond, text) \
  if (cond) {                           \
  } else                                \
    ::thinsim::model::CheckFailure(this, fatal, __FILE__, __LINE__, text)

#define MODEL_ASSERT_TRUE(c) MODEL_CHECK_(true, (c), "expected " #c)
#define MODEL_ASSERT_FALSE(c) MODEL_CHECK_(true, !(c), "expected !(" #c ")")
#define MODEL_ASSERT_EQ(a, b) MODEL_CHECK_OP_(true, a, b, std::equal_to<>, #a " == " #b)
#define MODEL_ASSERT_NE(a, b) MODEL_CHECK_OP_(true, a, b, std::not_equal_to<>, #a " != " #b)
#define MODEL_ASSERT_LE(a, b) MODEL_CHECK_OP_(true, a, b, std::less_equal<>, #a " <= " #b)
#define MODEL_EXPECT_TRUE(c) MODEL_CHECK_(false, (c), "expected " #c)
#define MODEL_EXPECT_FALSE(c) MODEL_CHECK_(false, !(c), "expected !(" #c ")")
#define MODEL_EXPECT_EQ(a, b) MODEL_CHECK_OP_(false, a, b, std::equal_to<>, #a " == " #b)
#define MODEL_EXPECT_NE(a, b) MODEL_CHECK_OP_(false, a, b, std::not_equal_to<>, #a " != " #b)
#define MODEL_FAIL() ::thinsim::model::CheckFailure(this, true, __FILE__, __LINE__, "failed")
#define MODEL_SCOPED_TRACE(what) ::thinsim::model::ScopedTrace _model_trace(this, what)

#endif  // THINSIM_POOL_TESTING_MODEL_DRIVER_H_
