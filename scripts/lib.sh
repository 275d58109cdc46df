# shellcheck shell=bash
# Helpers shared by scripts/test, scripts/demo and .ci/run. Source it:
#     . "$(dirname "$0")/lib.sh"

# Repository root: the parent of the folder this file is in.
THINSIM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export THINSIM_ROOT

# The first python3 on PATH may not be Debian's (pyenv, venvs), and only
# Debian's has the `nbd` module from python3-libnbd. Tests and scripts that
# need `import nbd` use this interpreter.
THINSIM_PYTHON=/usr/bin/python3
export THINSIM_PYTHON

# Debian packages the project builds, tests and demonstrates with.
THINSIM_DEPS=(
  build-essential cmake pkg-config
  nbdkit nbdkit-plugin-dev libnbd-dev libnbd-bin python3-libnbd
  libboost-dev nlohmann-json3-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  fuse3 e2fsprogs xfsprogs btrfs-progs fio qemu-utils qemu-system-common jq socat util-linux
  clang libclang-rt-14-dev
)

thinsim_log() {
  printf '%s\n' "$*" >&2
}

# True if the Debian package named $1 is installed.
thinsim_pkg_installed() {
  local status
  status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" || return 1
  [[ "$status" == "install ok installed" ]]
}

# Install whichever of THINSIM_DEPS are missing. Does nothing (and needs no
# network) when all are present. Exits 1 if something is missing and we are
# not root.
thinsim_install_deps() {
  local missing=() pkg
  if ! command -v dpkg-query >/dev/null 2>&1; then
    thinsim_log "thinsim: dpkg-query not found; this script expects Debian 12."
    exit 1
  fi
  for pkg in "${THINSIM_DEPS[@]}"; do
    thinsim_pkg_installed "$pkg" || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  if [[ "$(id -u)" != 0 ]]; then
    thinsim_log "thinsim: missing Debian packages: ${missing[*]}"
    thinsim_log "thinsim: run as root, or: sudo apt-get install ${missing[*]}"
    exit 1
  fi
  thinsim_log "thinsim: installing missing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -q -o DPkg::Lock::Timeout=300 update
  apt-get -q -y -o DPkg::Lock::Timeout=300 install "${missing[@]}"
}

# The CMake generator: the one DIR was configured with, else Ninja if
# installed, else Unix Makefiles. (CMake refuses to switch generators in an
# existing build tree.)
thinsim_generator() {
  local dir="$1" gen
  if [[ -f "$dir/CMakeCache.txt" ]]; then
    gen="$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$dir/CMakeCache.txt")"
    if [[ -n "$gen" ]]; then
      printf '%s\n' "$gen"
      return
    fi
  fi
  if command -v ninja >/dev/null 2>&1; then
    echo Ninja
  else
    echo "Unix Makefiles"
  fi
}

# thinsim_configure_build DIR [cmake args...]
# Configure the repository into DIR (relative to the repo root unless
# absolute) and build it with one job per core: everything, or only the
# targets named in $THINSIM_TARGETS (space-separated).
thinsim_configure_build() {
  local dir="$1" targets=()
  shift
  [[ "$dir" == /* ]] || dir="$THINSIM_ROOT/$dir"
  cmake -S "$THINSIM_ROOT" -B "$dir" -G "$(thinsim_generator "$dir")" "$@" || return
  read -r -a targets <<<"${THINSIM_TARGETS:-}"
  if ((${#targets[@]})); then
    cmake --build "$dir" -j "$(nproc)" --target "${targets[@]}" || return
  else
    cmake --build "$dir" -j "$(nproc)" || return
  fi
}
