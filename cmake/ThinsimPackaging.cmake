# `cpack -G DEB` in the build directory makes thinsim_VERSION_ARCH.deb from
# what `cmake --install` installs, under prefix /usr: there nbdkit finds the
# plugin by name (`nbdkit thinsim`), and /usr/bin/thinsim finds its harness
# and plugin relative to itself (tools/fs_test/launch.cc).

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME thinsim)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "thinsim")
set(CPACK_PACKAGE_CONTACT "thinsim maintainers <maintainers@thinsim.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "thin-provisioning block device simulator (nbdkit plugin)")
set(CPACK_PACKAGE_DESCRIPTION
    "thinsim is an nbdkit plugin that simulates a thin pool of refcounted data
blocks whose volumes and snapshots are NBD exports, with reservation
strategies, persistent crash-consistent metadata, a control socket and the
thinsim command-line tool. Mount real filesystems on it and watch what they
do when the pool runs out of space; thinsim fs-test does that for ext4, XFS
and btrfs.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
# nbdkit loads the plugin; libnbd-bin (nbdinfo, nbdfuse), python3 and
# python3-libnbd run the fs-test harness. The shared libraries (libc,
# libstdc++) come from dpkg-shlibdeps, which build-essential brings; a
# hand-written list stands in without it.
set(_thinsim_depends "nbdkit (>= 1.32), libnbd-bin, python3, python3-libnbd")
find_program(THINSIM_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(THINSIM_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  string(APPEND _thinsim_depends ", libc6, libstdc++6, libgcc-s1")
endif()
set(CPACK_DEBIAN_PACKAGE_DEPENDS "${_thinsim_depends}")
# What the harness mounts and attaches with.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "fuse3, e2fsprogs, mount")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "xfsprogs, btrfs-progs, nbd-client, bash-completion")

include(CPack)
