// The `thinsim` command: see tools/cli.h.

#include <iostream>
#include <string>
#include <vector>

#include "tools/cli.h"

int main(int argc, char** argv) {
  try {
    const std::vector<std::string> args(argv + 1, argv + argc);
    return thinsim::cli::RunCli(args, thinsim::cli::Environment::FromProcess(), std::cout,
                                std::cerr);
  } catch (...) {
    std::cerr << "thinsim: internal error\n";
    return thinsim::cli::kExitFailure;
  }
}
