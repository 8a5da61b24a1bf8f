// Streaming quantization to a checkpoint folder: the model is read block by block from its
// mapped file, each finished block is staged to disk at once, and a run that is killed resumes
// from the last staged block (docs/STREAMING.md).
//
// <out>.partial/ holds the run while it is under way:
//   run.json                 what the run was started with; a run with other options refuses it
//   lock                     flock'ed by the running process
//   head-embed.safetensors   embed_tokens, final norm, lm_head as stored in the output
//   head-norm.safetensors
//   head-lm_head.safetensors (untied models)
//   block-00007.safetensors  block 7's stored tensors, its report in the metadata
//   state.bin                the calibration activations after the last staged block
// Every file is written under a temporary name, flushed to disk and renamed, so a kill or a
// power loss leaves each either complete or absent. At the end the staged tensors are copied into
// the output's shards (AwqCheckpointWriter, its own temporary folder renamed into place) and the
// staging folder is removed.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "awq/awq_checkpoint.h"
#include "awq/model.h"
#include "awq/quantize.h"
#include "awq/safetensors.h"
#include "awq/tokenizer.h"
#include "core/mapped_file.h"
#include "core/output_guard.h"
#include "kernels/cpu/sgemm.h"
#include "model/arch.h"
#include "model/weight_source.h"
#include "quant/quantize_block.h"

namespace awq {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

constexpr char kStateMagic[8] = {'A', 'W', 'Q', 'S', 'T', 'A', 'T', 'E'};
constexpr uint32_t kStateVersion = 1;
constexpr const char* kReportKey = "awqcpp_block_report";

std::string OsError(const std::string& what, const std::string& path) {
  return path + ": " + what + ": " + std::strerror(errno);
}

// Flushes a file (or folder) to disk.
void Fsync(const std::string& path, bool dir) {
  const int fd = ::open(path.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) throw Error(OsError("cannot open to flush", path));
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) throw Error(OsError("cannot flush", path));
}

// Renames a complete, flushed `tmp` to `path` and flushes the folder: afterwards `path` is
// either the old file or the new one after any crash.
void Publish(const std::string& tmp, const std::string& path) {
  Fsync(tmp, false);
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw Error(OsError("cannot rename " + tmp, path));
  Fsync(fs::path(path).parent_path().string(), true);
}

void WriteDurable(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".part";
  WriteFileAtomic(tmp, text.data(), text.size());
  Publish(tmp, path);
}

void WriteStagedTensors(const std::string& path,
                        std::vector<std::pair<std::string, Tensor>> tensors,
                        const std::string& report) {
  SafetensorsWriter w;
  if (!report.empty()) w.SetMetadata(kReportKey, report);
  for (auto& [name, t] : tensors) w.Add(name, std::move(t));
  const std::string tmp = path + ".part";
  w.WriteFile(tmp);
  Publish(tmp, path);
}

std::string BlockFile(const std::string& staging, int64_t l) {
  char name[48];
  std::snprintf(name, sizeof(name), "block-%05lld.safetensors", static_cast<long long>(l));
  return (fs::path(staging) / name).string();
}

json ReportToJson(const BlockReport& r) {
  json groups = json::array(), gptq = json::array();
  for (const BlockReport::Group& g : r.groups) {
    groups.push_back({{"name", g.name},
                      {"best_index", g.best_index},
                      {"best_loss", g.best_loss},
                      {"identity_loss", g.identity_loss}});
  }
  for (const BlockReport::GptqLinear& g : r.gptq)
    gptq.push_back({{"name", g.name}, {"loss", g.loss}});
  return {{"layer", r.layer}, {"groups", groups}, {"gptq", gptq}};
}

BlockReport ReportFromJson(const json& j) {
  BlockReport r;
  r.layer = j.at("layer").get<int64_t>();
  for (const json& g : j.at("groups")) {
    r.groups.push_back({g.at("name").get<std::string>(), g.at("best_index").get<int>(),
                        g.at("best_loss").get<double>(), g.at("identity_loss").get<double>()});
  }
  for (const json& g : j.at("gptq")) {
    r.gptq.push_back({g.at("name").get<std::string>(), g.at("loss").get<double>()});
  }
  return r;
}

// What a run's output depends on: the input files, the options, the calibration tokens.
json Fingerprint(const std::string& model_path, const QuantizeOptions& o,
                 const CalibrationActivations& acts, uint64_t shard_bytes) {
  json files = json::object();
  std::error_code ec;
  const auto add_file = [&](const fs::path& p) {
    const auto t = fs::last_write_time(p, ec).time_since_epoch().count();
    files[p.filename().string()] =
        std::to_string(fs::file_size(p, ec)) + " bytes, mtime " + std::to_string(t);
  };
  if (fs::is_directory(model_path, ec)) {
    for (const auto& e : fs::directory_iterator(model_path, ec)) {
      const std::string ext = e.path().extension().string();
      if (e.is_regular_file() && (ext == ".safetensors" || ext == ".json")) add_file(e.path());
    }
  } else {
    add_file(model_path);
  }
  const QuantConfig& qc = o.config;
  json overrides = json::array();
  for (const LayerOverride& lo : qc.overrides) {
    overrides.push_back({{"pattern", lo.pattern},
                         {"bits", lo.bits ? json(*lo.bits) : json(nullptr)},
                         {"group_size", lo.group_size ? json(*lo.group_size) : json(nullptr)},
                         {"skip", lo.skip}});
  }
  const bool gptq = o.method == QuantMethod::kGptq || o.method == QuantMethod::kAwqGptq;
  char hash[24];
  std::snprintf(hash, sizeof(hash), "%016llx", static_cast<unsigned long long>(acts.token_hash));
  return {
      {"format", 1},
      {"model", fs::absolute(model_path).lexically_normal().string()},
      {"model_files", files},
      {"method", QuantMethodName(o.method)},
      {"w_bit", qc.w_bit},
      {"q_group_size", qc.q_group_size},
      {"zero_point", qc.zero_point},
      {"version", qc.version},
      {"duo_scaling", qc.duo_scaling},
      {"apply_clip", qc.apply_clip},
      {"n_grid", qc.n_grid},
      {"max_shrink", qc.max_shrink},
      {"n_sample_token", qc.n_sample_token},
      {"modules_to_not_convert", qc.modules_to_not_convert},
      {"overrides", overrides},
      {"gptq", gptq ? json{{"damp_percent", o.gptq.damp_percent},
                           {"block_size", o.gptq.block_size},
                           {"act_order", o.gptq.act_order}}
                    : json(nullptr)},
      {"calibration",
       o.method == QuantMethod::kRtn
           ? json(nullptr)
           : json{{"tokens_fnv1a64", hash}, {"blocks", acts.n_seq}, {"seq_len", acts.seq_len}}},
      {"search_samples", o.search_samples},
      {"grid_step", o.grid_step},
      {"min_expert_tokens", o.min_expert_tokens},
      {"activation_budget_bytes", o.activation_budget_bytes},
      {"shard_bytes", shard_bytes},
  };
}

// state.bin's header: magic, version, staged blocks, activation count, token hash.
struct StateHeader {
  int64_t done = -1;
  int64_t n = 0;
  uint64_t hash = 0;
};

// Reads the header from `f`; false when it is not a state file of this version.
bool ReadStateHeader(FILE* f, StateHeader& h) {
  char magic[8];
  uint32_t version = 0;
  return std::fread(magic, 1, 8, f) == 8 && std::fread(&version, 4, 1, f) == 1 &&
         std::fread(&h.done, 8, 1, f) == 1 && std::fread(&h.n, 8, 1, f) == 1 &&
         std::fread(&h.hash, 8, 1, f) == 1 && std::memcmp(magic, kStateMagic, 8) == 0 &&
         version == kStateVersion;
}

// The calibration activations after block `done - 1`, or done = 0 when there is no state.
int64_t ReadState(const std::string& path, CalibrationActivations& acts) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return 0;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) throw Error(OsError("cannot open", path));
  StateHeader h;
  if (!ReadStateHeader(f, h)) {
    std::fclose(f);
    throw Error(path + ": not an awq.cpp resume state (delete the staging folder to start over)");
  }
  if (h.n != static_cast<int64_t>(acts.x.size()) || h.hash != acts.token_hash) {
    std::fclose(f);
    throw Error(path + ": holds " + std::to_string(h.n) +
                " activations of other calibration tokens (delete the staging folder)");
  }
  const bool ok = h.n == 0 || std::fread(acts.x.data(), sizeof(float), static_cast<size_t>(h.n),
                                         f) == static_cast<size_t>(h.n);
  std::fclose(f);
  if (!ok) throw Error(path + ": truncated (delete the staging folder to start over)");
  return h.done;
}

// The staged block count a state file records, -1 when there is none or it is unreadable.
int64_t StagedBlocks(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return -1;
  StateHeader h;
  const bool ok = ReadStateHeader(f, h);
  std::fclose(f);
  return ok ? h.done : -1;
}

void WriteState(const std::string& path, int64_t done, const CalibrationActivations& acts) {
  const std::string tmp = path + ".part";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) throw Error(OsError("cannot create", tmp));
  const int64_t n = static_cast<int64_t>(acts.x.size());
  bool ok = std::fwrite(kStateMagic, 1, 8, f) == 8 && std::fwrite(&kStateVersion, 4, 1, f) == 1 &&
            std::fwrite(&done, 8, 1, f) == 1 && std::fwrite(&n, 8, 1, f) == 1 &&
            std::fwrite(&acts.token_hash, 8, 1, f) == 1 &&
            (n == 0 || std::fwrite(acts.x.data(), sizeof(float), static_cast<size_t>(n), f) ==
                           static_cast<size_t>(n));
  ok = std::fclose(f) == 0 && ok;
  if (!ok) throw Error(OsError("cannot write", tmp));
  Publish(tmp, path);
}

// Holds an exclusive flock on <staging>/lock for the run's lifetime.
class StagingLock {
 public:
  explicit StagingLock(const std::string& staging) {
    const std::string path = (fs::path(staging) / "lock").string();
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error(OsError("cannot open", path));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      throw Error(staging + ": another awq quantize is writing this output");
    }
  }
  ~StagingLock() { ::close(fd_); }
  StagingLock(const StagingLock&) = delete;
  StagingLock& operator=(const StagingLock&) = delete;

 private:
  int fd_ = -1;
};

std::string Differences(const json& was, const json& now) {
  std::string out;
  for (const auto& [key, value] : now.items()) {
    if (was.contains(key) && was.at(key) == value) continue;
    out += (out.empty() ? "" : "; ") + key + ": " +
           (was.contains(key) ? was.at(key).dump() : "absent") + " then, " + value.dump() + " now";
  }
  return out;
}

// Stages one full-precision head tensor (converted as the output stores it) unless present.
void StageHead(const std::string& path, const std::string& name, const Tensor& t,
               const QuantConfig& qc) {
  std::error_code ec;
  if (fs::exists(path, ec)) return;
  AwqCheckpointWriter w;
  w.AddTensor(name, t);
  WriteStagedTensors(path, w.StoredTensors(qc), "");
}

}  // namespace

QuantizeResult QuantizeToFolder(const std::string& model_path, const Tokenizer& tokenizer,
                                const QuantizeOptions& options, const std::string& out_in,
                                uint64_t max_shard_bytes, bool overwrite) {
  ActiveSgemmPath();  // a bad AWQ_SGEMM is an error before any output exists
  const auto t_start = Clock::now();
  const QuantConfig& qc = options.config;
  qc.Validate();
  if (options.method == QuantMethod::kGptq || options.method == QuantMethod::kAwqGptq) {
    options.gptq.Validate();
  }
  std::string out = out_in;
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  CheckOutputIsNotInput(model_path, out);
  const OutputLock output_lock(out);
  Model model = Model::OpenStreaming(model_path);
  const ModelConfig& c = model.config();
  CheckLinearShapes(c, options);
  if (!options.ggml_types.empty()) {
    throw Error("QuantizeToFolder writes awq.cpp checkpoints; ggml types go to QuantizeToGguf");
  }
  if (ArchitectureOf(c).recurrent != nullptr) {
    // Recurrent models (Mamba, RWKV) are read whole by OpenStreaming and quantized in memory,
    // not staged block by block (no resume); the folder holds the same bytes QuantizeModel and
    // SaveQuantizedModel write.
    QuantizeResult r = QuantizeModel(model, tokenizer, options);
    const auto t_write = Clock::now();
    SaveQuantizedModel(model, r, qc, &tokenizer, out, max_shard_bytes, overwrite);
    r.seconds.write = Since(t_write);
    r.seconds.total = Since(t_start);
    r.linears.clear();  // as the streaming result: no codes
    return r;
  }
  const WeightSource& src = *model.source();
  QuantizeResult result;
  result.method = options.method;
  CalibrationActivations acts = StartCalibration(c, tokenizer, options, result);
  const json fingerprint = Fingerprint(model_path, options, acts, max_shard_bytes);
  const std::string staging = out + ".partial";
  const auto stage = [&](const std::string& name) { return (fs::path(staging) / name).string(); };
  const std::string run_path = stage("run.json");
  const std::string state_path = stage("state.bin");

  std::error_code ec;
  if (fs::exists(out, ec) && !overwrite) {
    // A run of this command killed after renaming its output into place, before removing its
    // staging folder: the output is complete.
    if (fs::exists(run_path, ec) && StagedBlocks(state_path) == c.num_hidden_layers &&
        json::parse(ReadFileToString(run_path), nullptr, false) == fingerprint) {
      StagingLock lock(staging);
      fs::remove_all(staging, ec);
      result.resumed_blocks = c.num_hidden_layers;
      result.peak_rss_bytes = PeakRssBytes();
      return result;
    }
    throw Error(out + ": output exists; pass --overwrite to replace it");
  }

  // The staging folder, new or resumed.
  fs::create_directories(staging, ec);
  if (ec) throw Error(staging + ": cannot create folder: " + ec.message());
  StagingLock lock(staging);
  // An earlier run of this output killed while assembling left "<out>.tmp-<pid>" (or, when
  // overwriting, "<out>.old-<pid>") beside it; the lock says no other run owns them.
  const fs::path out_path(out);
  const fs::path parent = out_path.has_parent_path() ? out_path.parent_path() : fs::path(".");
  const std::string base = out_path.filename().string();
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    const std::string name = e.path().filename().string();
    for (const char* tag : {".tmp-", ".old-"}) {
      const std::string prefix = base + tag;
      if (name.size() > prefix.size() && name.rfind(prefix, 0) == 0 &&
          name.find_first_not_of("0123456789", prefix.size()) == std::string::npos) {
        fs::remove_all(e.path(), ec);
      }
    }
  }

  // The head first, while nothing else is held: a 150k-token vocabulary's embedding is the
  // largest single tensor of a 7B model.
  StageHead(stage("head-embed.safetensors"), "model.embed_tokens.weight", model.weights().embed,
            qc);
  src.ReleasePages("model.embed_tokens.weight");
  StageHead(stage("head-norm.safetensors"), "model.norm.weight", model.weights().final_norm, qc);
  if (!c.tie_word_embeddings) {
    if (!fs::exists(stage("head-lm_head.safetensors"), ec)) {
      StageHead(stage("head-lm_head.safetensors"), "lm_head.weight",
                src.GetStored("lm_head.weight"), qc);
      src.ReleasePages("lm_head.weight");
    }
  }

  if (options.method != QuantMethod::kRtn) {
    const auto t0 = Clock::now();
    EmbedCalibration(model, acts);
    src.ReleasePages("model.embed_tokens.weight");
    result.seconds.calibration += Since(t0);
  }
  if (fs::exists(run_path, ec)) {
    json was;
    try {
      was = json::parse(ReadFileToString(run_path));
    } catch (const json::exception& e) {
      throw Error(run_path + ": unreadable (" + e.what() + "); delete " + staging);
    }
    if (was != fingerprint) {
      throw Error(staging + " holds a run started with other inputs or options (" +
                  Differences(was, fingerprint) + "): rerun with the same ones to resume it, " +
                  "or delete " + staging + " to start over");
    }
  } else {
    WriteDurable(run_path, fingerprint.dump(2) + "\n");
  }
  const int64_t done = ReadState(state_path, acts);
  for (int64_t l = 0; l < done; ++l) {
    const SafetensorsFile f = SafetensorsFile::Open(BlockFile(staging, l));
    const auto it = f.metadata().find(kReportKey);
    if (it == f.metadata().end())
      throw Error(f.source() + ": no block report (delete " + staging + ")");
    result.blocks.push_back(ReportFromJson(json::parse(it->second)));
  }
  result.resumed_blocks = done;
  if (done > 0 && options.progress) options.progress(done, c.num_hidden_layers);

  for (int64_t l = done; l < c.num_hidden_layers; ++l) {
    model.LoadBlock(l);
    std::map<std::string, QuantizedLinear> linears;
    QuantizeBlock(model, l, options, acts, linears, result);
    const auto t0 = Clock::now();
    AwqCheckpointWriter w;
    AddBlockTensors(w, model, l, linears);
    linears.clear();
    model.ReleaseBlock(l);
    WriteStagedTensors(BlockFile(staging, l), w.StoredTensors(qc),
                       ReportToJson(result.blocks.back()).dump());
    WriteState(state_path, l + 1, acts);
    result.seconds.write += Since(t0);
    if (options.progress) options.progress(l + 1, c.num_hidden_layers);
  }
  acts.x = {};
  acts.x.shrink_to_fit();
  acts.tokens = {};

  // Assemble the output from the staged files.
  const auto t0 = Clock::now();
  AwqCheckpointWriter w;
  w.method = QuantMethodName(options.method);
  const auto staged = [&](const std::string& name) {
    return std::make_shared<const SafetensorsFile>(SafetensorsFile::Open(stage(name)));
  };
  w.AddStaged("model.embed_tokens.weight", staged("head-embed.safetensors"));
  w.AddStaged("model.norm.weight", staged("head-norm.safetensors"));
  if (!c.tie_word_embeddings) w.AddStaged("lm_head.weight", staged("head-lm_head.safetensors"));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    AddStagedBlock(
        w, c, l, qc,
        std::make_shared<const SafetensorsFile>(SafetensorsFile::Open(BlockFile(staging, l))));
  }
  w.Write(out, HfConfigToJson(c), WithFamilyExclusions(qc, c), &tokenizer, max_shard_bytes,
          overwrite);
  fs::remove_all(staging, ec);
  result.seconds.write += Since(t0);
  result.seconds.total = Since(t_start);
  result.peak_rss_bytes = PeakRssBytes();
  return result;
}

}  // namespace awq
