"""thinsim's real-filesystem ENOSPC harness (`thinsim fs-test`).

Process orchestration in Python (stdlib only, plus libnbd's `nbd` module for
one scenario); the engine stays in C++. See docs/fs-testing.md.
"""
