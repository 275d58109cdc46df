// Macros for Clang's thread-safety analysis (-Wthread-safety).
//
// They declare which lock guards which state (GUARDED_BY), which locks a
// function needs held (REQUIRES, REQUIRES_SHARED) or must not hold
// (EXCLUDES), and what a lock type acquires and releases. Clang checks them
// at compile time in the `-Wthread-safety` stage of scripts/test; GCC, which
// builds everything else, sees empty macros.
//
// The annotations only mean something on capability types: use the
// wrappers in base/mutex.h, not std::mutex (libstdc++'s is not annotated).
#ifndef THINSIM_BASE_THREAD_ANNOTATIONS_H_
#define THINSIM_BASE_THREAD_ANNOTATIONS_H_

#if defined(__clang__)
#define THINSIM_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define THINSIM_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) THINSIM_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY THINSIM_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) THINSIM_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) THINSIM_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) THINSIM_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) THINSIM_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) THINSIM_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) THINSIM_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) THINSIM_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) THINSIM_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) THINSIM_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) THINSIM_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) THINSIM_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) THINSIM_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#define EXCLUDES(...) THINSIM_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) THINSIM_THREAD_ANNOTATION(assert_capability(x))
#define ASSERT_SHARED_CAPABILITY(x) THINSIM_THREAD_ANNOTATION(assert_shared_capability(x))
#define RETURN_CAPABILITY(x) THINSIM_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS THINSIM_THREAD_ANNOTATION(no_thread_safety_analysis)

#endif  // THINSIM_BASE_THREAD_ANNOTATIONS_H_
