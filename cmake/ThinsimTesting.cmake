# Helpers for the GoogleTest executables beside the code. Each is built by
# the `unit_tests` target, so that a stage of scripts/test that runs only
# `ctest -L unit` builds only what those tests need (not the plugin, the CLI
# or the stress client).
add_custom_target(unit_tests)

# Test code is the driver, not the code under test: it compiles with -O1 in
# optimised builds (GoogleTest's macros make its files the slowest of the
# tree at -O3) and without UBSan's checks, which triple their compile time
# while the libraries they test keep every sanitizer of the build.
function(thinsim_test_flags target)
  if(CMAKE_BUILD_TYPE STREQUAL "Release")
    target_compile_options(${target} PRIVATE -O1)
  endif()
  if(THINSIM_SANITIZE MATCHES "undefined")
    target_compile_options(${target} PRIVATE -fno-sanitize=undefined)
  endif()
endfunction()

# thinsim_unit_test(NAME SOURCE LIBS...): the GoogleTest executable NAME from
# SOURCE, linked with LIBS, its tests labelled "unit".
function(thinsim_unit_test name source)
  add_executable(${name} ${source})
  target_link_libraries(${name} PRIVATE ${ARGN} GTest::gtest_main Threads::Threads)
  thinsim_test_flags(${name})
  gtest_discover_tests(${name} PROPERTIES LABELS unit)
  add_dependencies(unit_tests ${name})
endfunction()

# thinsim_concurrency_test(NAME LIBS...): the GoogleTest executable NAME from
# NAME.cc, linked with LIBS, its tests labelled "unit;concurrency" so that
# the TSan stage of scripts/test runs them (list NAME there too: that stage
# builds only the targets it names). The labels are set from a ctest include
# file that runs after the discovered tests are defined: gtest_discover_tests'
# PROPERTIES cannot carry a list value.
function(thinsim_concurrency_test name)
  add_executable(${name} ${name}.cc)
  target_link_libraries(${name} PRIVATE ${ARGN} GTest::gtest_main Threads::Threads)
  thinsim_test_flags(${name})
  gtest_discover_tests(${name})
  add_dependencies(unit_tests ${name})
  set(labels_file ${CMAKE_CURRENT_BINARY_DIR}/${name}_labels.cmake)
  file(WRITE ${labels_file}
    "foreach(t IN LISTS ${name}_TESTS)\n"
    "  set_tests_properties(\"\${t}\" PROPERTIES LABELS \"unit;concurrency\")\n"
    "endforeach()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${labels_file})
endfunction()
