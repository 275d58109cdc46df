#include "job/job_status.h"

#include <array>
#include <cstddef>

namespace thinsim {

namespace {

constexpr size_t kStates = static_cast<size_t>(JobStatus::kNull) + 1;
constexpr size_t kVerbs = static_cast<size_t>(JobVerb::kDismiss) + 1;

constexpr std::array<std::string_view, kStates> kStatusNames = {
    "created", "running", "paused", "ready", "standby", "waiting", "pending", "aborting", "concluded", "null"};
constexpr std::array<std::string_view, kVerbs> kVerbNames = {
    "cancel", "pause", "resume", "set-speed", "change", "complete", "finalize", "dismiss"};

// kTransitions[from][to], rows and columns in JobStatus order
// (C R P Y S W D X E N), as QEMU's JobSTT without its "undefined" state.
constexpr bool kTransitions[kStates][kStates] = {
    //          C  R  P  Y  S  W  D  X  E  N
    /* C */ {0, 1, 0, 0, 0, 0, 0, 1, 0, 1},
    /* R */ {0, 0, 1, 1, 0, 1, 0, 1, 0, 0},
    /* P */ {0, 1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* Y */ {0, 0, 0, 0, 1, 1, 0, 1, 0, 0},
    /* S */ {0, 0, 0, 1, 0, 0, 0, 0, 0, 0},
    /* W */ {0, 0, 0, 0, 0, 0, 1, 1, 0, 0},
    /* D */ {0, 0, 0, 0, 0, 0, 0, 1, 1, 0},
    /* X */ {0, 0, 0, 0, 0, 0, 0, 1, 1, 0},
    /* E */ {0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
    /* N */ {0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
};

// kVerbTable[verb][state], as QEMU's JobVerbTable.
constexpr bool kVerbTable[kVerbs][kStates] = {
    //                C  R  P  Y  S  W  D  X  E  N
    /* cancel    */ {1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
    /* pause     */ {1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    /* resume    */ {1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    /* set-speed */ {1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    /* change    */ {1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    /* complete  */ {0, 0, 0, 1, 1, 0, 0, 0, 0, 0},
    /* finalize  */ {0, 0, 0, 0, 0, 0, 1, 0, 0, 0},
    /* dismiss   */ {0, 0, 0, 0, 0, 0, 0, 0, 1, 0},
};

constexpr size_t Index(JobStatus s) { return static_cast<size_t>(s); }
constexpr size_t Index(JobVerb v) { return static_cast<size_t>(v); }

}  // namespace

std::string_view JobStatusName(JobStatus status) { return kStatusNames[Index(status)]; }
std::string_view JobVerbName(JobVerb verb) { return kVerbNames[Index(verb)]; }

bool JobTransitionAllowed(JobStatus from, JobStatus to) { return kTransitions[Index(from)][Index(to)]; }
bool JobVerbAllowed(JobStatus status, JobVerb verb) { return kVerbTable[Index(verb)][Index(status)]; }

Status CheckJobVerb(std::string_view id, JobStatus status, JobVerb verb) {
  if (JobVerbAllowed(status, verb)) return Status::OK();
  return Status::Invalid("Job '" + std::string(id) + "' in state '" + std::string(JobStatusName(status)) +
                         "' cannot accept command verb '" + std::string(JobVerbName(verb)) + "'");
}

std::string_view JobErrorPolicyName(JobErrorPolicy policy) {
  switch (policy) {
    case JobErrorPolicy::kReport: return "report";
    case JobErrorPolicy::kIgnore: return "ignore";
    case JobErrorPolicy::kStop: return "stop";
    case JobErrorPolicy::kEnospc: return "enospc";
  }
  return "report";
}

bool ParseJobErrorPolicy(std::string_view name, JobErrorPolicy* out) {
  for (JobErrorPolicy p : {JobErrorPolicy::kReport, JobErrorPolicy::kIgnore, JobErrorPolicy::kStop,
                           JobErrorPolicy::kEnospc}) {
    if (name == JobErrorPolicyName(p)) {
      *out = p;
      return true;
    }
  }
  return false;
}

std::string_view JobOperationName(JobOperation op) { return op == JobOperation::kRead ? "read" : "write"; }

std::string_view JobErrorActionName(JobErrorAction action) {
  switch (action) {
    case JobErrorAction::kReport: return "report";
    case JobErrorAction::kIgnore: return "ignore";
    case JobErrorAction::kStop: return "stop";
  }
  return "report";
}

JobErrorAction DecideJobErrorAction(JobErrorPolicy policy, const Status& error) {
  switch (policy) {
    case JobErrorPolicy::kReport: return JobErrorAction::kReport;
    case JobErrorPolicy::kIgnore: return JobErrorAction::kIgnore;
    case JobErrorPolicy::kStop: return JobErrorAction::kStop;
    case JobErrorPolicy::kEnospc:
      return error.code() == ErrorCode::kNoSpace ? JobErrorAction::kStop : JobErrorAction::kReport;
  }
  return JobErrorAction::kReport;
}

}  // namespace thinsim
