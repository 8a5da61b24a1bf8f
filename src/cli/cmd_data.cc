// `awq data austen`: decodes Jane Austen's novels from Debian's r-cran-janeaustenr data files.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <string>

#include "awq/rdata.h"
#include "cli/commands.h"

namespace awq::cli {

Runner AddDataCommand(CLI::App& app) {
  struct Args {
    std::string rdata, out;
  };
  auto args = std::make_shared<Args>();
  CLI::App* data =
      app.add_subcommand("data", "Prepare text corpora for calibration and evaluation");
  data->require_subcommand(1);
  CLI::App* austen = data->add_subcommand(
      "austen", "Write the six novels of r-cran-janeaustenr as UTF-8 text files");
  austen
      ->add_option("--rdata", args->rdata,
                   "Prefix of the package's lazy-load database (.../janeaustenr/data/Rdata)")
      ->required();
  austen->add_option("--out", args->out, "Output folder (created if missing)")->required();
  return [args] {
    std::filesystem::create_directories(args->out);
    ExtractAustenNovels(args->rdata, args->out);
    std::printf("wrote the six novels to %s\n", args->out.c_str());
    return 0;
  };
}

}  // namespace awq::cli
