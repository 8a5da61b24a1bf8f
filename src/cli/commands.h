// The `awq` subcommands: each registers its options on the CLI11 app and returns its runner.
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace awq::cli {

// Each Add*Command registers a subcommand and its options; the returned function runs it after
// parsing and returns the process exit status.
using Runner = std::function<int()>;
Runner AddEvalCommand(CLI::App& app);
Runner AddGenerateCommand(CLI::App& app);
Runner AddDataCommand(CLI::App& app);
Runner AddQuantizeCommand(CLI::App& app);
Runner AddBenchCommand(CLI::App& app);
Runner AddCompareCommand(CLI::App& app);
Runner AddInspectCommand(CLI::App& app);
Runner AddValidateCommand(CLI::App& app);

}  // namespace awq::cli
