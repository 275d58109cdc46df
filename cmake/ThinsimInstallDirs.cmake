# Where `cmake --install` puts things, as paths relative to
# CMAKE_INSTALL_PREFIX so that --prefix, DESTDIR and CPack's /usr all work:
#
#   bin/thinsim                                 the CLI
#   <plugindir>/nbdkit-thinsim-plugin.so        the plugin
#   share/thinsim/fs_test/                      the fs-test harness
#   share/man/man1/{thinsim,nbdkit-thinsim-plugin}.1
#   share/bash-completion/completions/thinsim
#
# <plugindir> is nbdkit's own plugin directory (pkg-config's `plugindir`)
# with nbdkit's prefix taken off, e.g. lib/x86_64-linux-gnu/nbdkit/plugins:
# installed under prefix /usr (the .deb), `nbdkit thinsim` finds the plugin;
# under another prefix it sits at the same relative place.

include(GNUInstallDirs)

pkg_get_variable(THINSIM_NBDKIT_PLUGINDIR nbdkit plugindir)
pkg_get_variable(THINSIM_NBDKIT_PREFIX nbdkit prefix)
set(_thinsim_plugindir "${CMAKE_INSTALL_LIBDIR}/nbdkit/plugins")
if(THINSIM_NBDKIT_PLUGINDIR AND THINSIM_NBDKIT_PREFIX)
  file(RELATIVE_PATH _rel "${THINSIM_NBDKIT_PREFIX}" "${THINSIM_NBDKIT_PLUGINDIR}")
  # A plugindir outside nbdkit's prefix cannot be moved under ours.
  if(NOT _rel MATCHES "^\\.\\.")
    set(_thinsim_plugindir "${_rel}")
  endif()
endif()
set(THINSIM_PLUGINDIR "${_thinsim_plugindir}" CACHE STRING
    "Plugin directory, relative to CMAKE_INSTALL_PREFIX (or absolute)")
set(THINSIM_FS_TEST_INSTALL_DIR "${CMAKE_INSTALL_DATADIR}/thinsim" CACHE STRING
    "Directory that holds the fs_test harness package, relative to CMAKE_INSTALL_PREFIX")
set(THINSIM_BASH_COMPLETION_DIR "${CMAKE_INSTALL_DATADIR}/bash-completion/completions" CACHE STRING
    "bash-completion directory, relative to CMAKE_INSTALL_PREFIX (Debian's layout)")

# An installed thinsim finds its harness and plugin relative to its own
# path (/proc/self/exe), so the install can be relocated (DESTDIR staging,
# a .deb); these are the paths from the bin directory.
function(thinsim_install_relpath out dir)
  if(IS_ABSOLUTE "${dir}")
    set(full "${dir}")
  else()
    set(full "${CMAKE_INSTALL_PREFIX}/${dir}")
  endif()
  file(RELATIVE_PATH rel "${CMAKE_INSTALL_FULL_BINDIR}" "${full}")
  set(${out} "${rel}" PARENT_SCOPE)
endfunction()
thinsim_install_relpath(THINSIM_BIN_TO_FS_TEST "${THINSIM_FS_TEST_INSTALL_DIR}")
thinsim_install_relpath(THINSIM_BIN_TO_PLUGINDIR "${THINSIM_PLUGINDIR}")
