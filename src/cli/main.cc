// Entry point of the `awq` command: subcommand dispatch and the error policy (user errors print
// one line naming the file/field/value and exit 1; nothing is half-written; `validate` exits 2
// when a threshold fails).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <map>
#include <string>

#include "awq/error.h"
#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"awq.cpp: activation-aware 4-bit weight quantization and fast inference of LLMs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "awq.cpp 0.1.0");
  std::map<std::string, awq::cli::Runner> runners;
  runners["quantize"] = awq::cli::AddQuantizeCommand(app);
  runners["eval"] = awq::cli::AddEvalCommand(app);
  runners["generate"] = awq::cli::AddGenerateCommand(app);
  runners["data"] = awq::cli::AddDataCommand(app);
  runners["bench"] = awq::cli::AddBenchCommand(app);
  runners["compare"] = awq::cli::AddCompareCommand(app);
  runners["inspect"] = awq::cli::AddInspectCommand(app);
  runners["validate"] = awq::cli::AddValidateCommand(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints the problem (naming the option) and returns its own codes (106, 109, ...);
    // every usage error exits 1 like the other user errors, so that 2 stays `validate`'s
    // "threshold failed". --help and --version exit 0.
    return app.exit(e) == 0 ? 0 : 1;
  }
  try {
    for (auto* sub : app.get_subcommands()) return runners.at(sub->get_name())();
  } catch (const awq::Error& e) {
    std::fprintf(stderr, "awq: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "awq: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
