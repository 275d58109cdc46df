# thinsim_concurrency_test(NAME LIBS...): the GoogleTest executable NAME from
# NAME.cc, linked with LIBS, its tests labelled "unit;concurrency" so that
# the TSan stage of scripts/test runs them (list NAME there too: that stage
# builds only the targets it names). The labels are set from a ctest include
# file that runs after the discovered tests are defined: gtest_discover_tests'
# PROPERTIES cannot carry a list value.
function(thinsim_concurrency_test name)
  add_executable(${name} ${name}.cc)
  target_link_libraries(${name} PRIVATE ${ARGN} GTest::gtest_main Threads::Threads)
  gtest_discover_tests(${name})
  set(labels_file ${CMAKE_CURRENT_BINARY_DIR}/${name}_labels.cmake)
  file(WRITE ${labels_file}
    "foreach(t IN LISTS ${name}_TESTS)\n"
    "  set_tests_properties(\"\${t}\" PROPERTIES LABELS \"unit;concurrency\")\n"
    "endforeach()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${labels_file})
endfunction()
