#include "octavo/engine.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>
#include <sys/stat.h>

#include "backend/backend.h"
#include "core/logging.h"
#include "core/splitmix64.h"
#include "engine/decode_graphs.h"
#include "engine/metrics_recorder.h"
#include "engine/step_inputs.h"
#include "kv_cache/kv_cache_manager.h"
#include "model/decoder.h"
#include "model/model_config.h"
#include "model/weight_source.h"
#include "model/weights.h"
#include "octavo/errors.h"
#include "sampling/sampler.h"
#include "scheduler/scheduler.h"

namespace octavo {

namespace {

// vLLM's offline default token budget per step.
constexpr int32_t kDefaultMaxNumBatchedTokens = 8192;

std::string read_config_text(const EngineConfig& config) {
  if (!config.config_json.empty()) return config.config_json;
  struct stat st {};
  if (stat(config.model_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw NotFound("model directory " + config.model_dir + " does not exist");
  }
  const std::string path = config.model_dir + "/config.json";
  std::ifstream file(path);
  if (!file) throw NotFound("no config.json in the model directory " + config.model_dir);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

PositionLogprobs position_logprobs(const SampleResult& s) {
  PositionLogprobs lp;
  lp.sampled_token = s.token;
  lp.sampled_logprob = s.logprob;
  lp.sampled_rank = s.rank;
  lp.top_tokens = s.top_tokens;
  lp.top_logprobs = s.top_logprobs;
  return lp;
}

std::string gib(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.3g GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return text;
}

#ifdef OCTAVO_WITH_CUDA
// vLLM's "auto": a bf16 checkpoint runs in bf16, fp16 and fp32 checkpoints in fp16.
DType cuda_compute_dtype(const std::string& dtype, const ModelConfig& model) {
  if (dtype == "float32" || dtype == "float") return DType::kFloat32;
  if (dtype == "float16" || dtype == "half") return DType::kFloat16;
  if (dtype == "bfloat16") return DType::kBFloat16;
  if (dtype == "auto") return model.torch_dtype == "bfloat16" ? DType::kBFloat16 : DType::kFloat16;
  throw InvalidArgument("dtype must be auto, float32, float16 or bfloat16, got '" + dtype + "'");
}

#endif

std::unique_ptr<Backend> make_backend(const EngineConfig& config, const ModelConfig& model) {
  if (config.device == "cpu") return make_cpu_backend(config.num_threads);
  if (config.device == "cuda") {
    if (!(config.gpu_memory_utilization > 0.0 && config.gpu_memory_utilization <= 1.0)) {
      throw InvalidArgument("gpu_memory_utilization must be in (0, 1], got " +
                            std::to_string(config.gpu_memory_utilization));
    }
#ifdef OCTAVO_WITH_CUDA
    if (!cuda_device_available()) throw Unsupported("device 'cuda' was asked for but no CUDA device is present");
    return make_cuda_backend(cuda_compute_dtype(config.dtype, model), config.gpu_memory_utilization);
#else
    (void)model;
    throw Unsupported("device 'cuda' is not available: this octavo build has no CUDA backend");
#endif
  }
  throw InvalidArgument("device must be 'cpu' or 'cuda', got '" + config.device + "'");
}

}  // namespace

class Engine::Impl {
 public:
  explicit Impl(const EngineConfig& config);

  void add_request(uint64_t id, std::vector<int32_t> prompt, const SamplingParams& params, int64_t priority);
  std::vector<RequestOutput> step();
  bool abort(uint64_t id);
  std::optional<RequestOutput> finish_request(uint64_t id, int32_t index);
  bool reset_prefix_cache(bool reset_running_requests);
  bool has_unfinished() const { return scheduler_->has_unfinished() || !pending_outputs_.empty(); }
  EngineStats stats() const;
  EngineMetrics metrics() const;
  void sleep(int32_t level);
  void wake_up(const std::vector<std::string>& tags);
  bool is_sleeping() const { return weights_asleep_ || kv_asleep_; }
  Backend& backend() const { return *backend_; }

  EngineInfo info;

 private:
  // A caller's request: its n samples in index order, alive until the last is reported
  // (samples fork from sample 0, so it outlives its own end).
  struct Group {
    std::vector<std::unique_ptr<Request>> samples;
    int32_t num_done = 0;
    bool released = true;  // samples 1..n-1 handed to the scheduler
  };

  // Throws InvalidArgument when the weights cannot fit in the device share the user allows.
  void check_weights_fit(const ModelConfig& mc) const;
  // One forward of the largest step (on devices only), before the KV cache is planned.
  void profile_largest_step(int32_t budget, int32_t max_model_len, int32_t block_size);
  // Appends the sampled token and decides whether the request is done.
  void append_token(Request& r, const SampleResult& sample);
  // Scores this step's prompt-logprobs rows, max_logit_rows at a time, and appends the
  // entries to their requests.
  void add_prompt_logprobs();
  RequestOutput make_output(Request& r) const;
  // Copy-on-write of shared KV blocks that this step's allocations decided.
  void copy_blocks();
  void record_decode_graphs();

  EngineConfig config_;
  ModelConfig model_config_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<DecoderModel> model_;
  KVCache kv_cache_;
  std::vector<Tensor> kv_layers_;  // every layer's keys and values, for block copies
  std::unique_ptr<KVCacheManager> kv_manager_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<StepInputs> step_inputs_;
  std::unique_ptr<DecodeGraphs> decode_graphs_;  // null with enforce_eager
  std::map<uint64_t, Group> groups_;  // by the caller's request id
  std::vector<RequestOutput> pending_outputs_;
  std::vector<const Request*> sampling_rows_;
  std::vector<PromptLogprobsRow> prompt_logprob_rows_;
  uint64_t next_arrival_ = 0;
  uint64_t next_seq_id_ = 0;
  EngineStats stats_;
  std::unique_ptr<MetricsRecorder> metrics_;
  LoadFormat load_format_ = LoadFormat::kSafetensors;
  // Sleep mode: weights_asleep_ is the level the weights were put to sleep at (0: awake);
  // host_weights_ holds level 1's host copy on a device backend.
  int32_t weights_asleep_ = 0;
  bool kv_asleep_ = false;
  ModelWeights host_weights_;
};

Engine::Impl::Impl(const EngineConfig& config) : config_(config) {
  model_config_ = parse_model_config(read_config_text(config_));
  const ModelConfig& mc = model_config_;

  if (config_.block_size <= 0) throw InvalidArgument("block_size must be positive, got " + std::to_string(config_.block_size));
  if (config_.max_num_seqs <= 0) throw InvalidArgument("max_num_seqs must be positive, got " + std::to_string(config_.max_num_seqs));
  int32_t max_model_len = config_.max_model_len > 0 ? config_.max_model_len : mc.max_position_embeddings;
  if (config_.max_model_len < 0) throw InvalidArgument("max_model_len must be positive, got " + std::to_string(config_.max_model_len));
  if (max_model_len > mc.max_position_embeddings) {
    throw InvalidArgument("max_model_len " + std::to_string(max_model_len) +
                          " is larger than the model's max_position_embeddings of " +
                          std::to_string(mc.max_position_embeddings));
  }
  int32_t budget = config_.max_num_batched_tokens > 0
                       ? config_.max_num_batched_tokens
                       : std::max(kDefaultMaxNumBatchedTokens, config_.max_num_seqs);
  if (!config_.enable_chunked_prefill && config_.max_num_batched_tokens <= 0) budget = std::max(budget, max_model_len);
  if (config_.max_num_batched_tokens < 0) throw InvalidArgument("max_num_batched_tokens must be positive");
  if (budget < config_.max_num_seqs) {
    throw InvalidArgument("max_num_batched_tokens (" + std::to_string(budget) +
                          ") must be at least max_num_seqs (" + std::to_string(config_.max_num_seqs) + ")");
  }
  if (!config_.enable_chunked_prefill && budget < max_model_len) {
    throw InvalidArgument("with chunked prefill disabled, max_num_batched_tokens (" + std::to_string(budget) +
                          ") must be at least max_model_len (" + std::to_string(max_model_len) + ")");
  }
  if (config_.max_logprobs < 0) throw InvalidArgument("max_logprobs must be non-negative");
  const SchedulingPolicy policy = parse_scheduling_policy(config_.scheduling_policy);
  const LoadFormat load_format = parse_load_format(config_.load_format);
  load_format_ = load_format;

  // Start-up phases, timed for the start-up line (the start-up target is a sum of them).
  using Clock = std::chrono::steady_clock;
  const auto seconds_since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  Clock::time_point phase = Clock::now();
  backend_ = make_backend(config_, mc);
  // GEMMs are tuned in rounds while the decode graphs are recorded (DecodeGraphs), never
  // alone at a first call: no step may synchronize for it.
  backend_->set_gemm_tuning(false);
  const double backend_s = seconds_since(phase);
  phase = Clock::now();
  check_weights_fit(mc);
  {
    // Scoped: the safetensors mappings are released once the weights are on the backend.
    std::unique_ptr<WeightSource> source =
        make_weight_source(load_format, config_.model_dir, mc, config_.seed, config_.num_threads);
    model_ = std::make_unique<DecoderModel>(mc, load_weights(mc, *source, *backend_), *backend_, budget,
                                            config_.max_num_seqs, max_model_len);
  }
  backend_->plan_sampling(config_.max_num_seqs, config_.max_logprobs);
  const double weights_s = seconds_since(phase);
  phase = Clock::now();

  // Memory plan: the KV cache takes what the user gave, or what the backend plans once a
  // forward of the largest step has run (on a device, so that whatever the libraries
  // allocate on first use is counted).
  const int32_t block_size = config_.block_size;
  const int32_t blocks_per_seq = (max_model_len + block_size - 1) / block_size;
  step_inputs_ = std::make_unique<StepInputs>(*backend_, budget, config_.max_num_seqs, blocks_per_seq);
  profile_largest_step(budget, max_model_len, block_size);
  const int64_t bytes_per_block = model_->kv_bytes_per_block(block_size);
  const int64_t kv_bytes = config_.kv_cache_memory_bytes > 0
                               ? config_.kv_cache_memory_bytes
                               : backend_->default_kv_cache_bytes(static_cast<int64_t>(config_.max_num_seqs) *
                                                                  blocks_per_seq * bytes_per_block);
  const int64_t num_blocks = kv_bytes / bytes_per_block;
  if (num_blocks < blocks_per_seq) {
    throw InvalidArgument("the KV cache (" + std::to_string(kv_bytes) + " bytes) holds " +
                          std::to_string(num_blocks) + " blocks of " + std::to_string(block_size) +
                          " tokens (" + std::to_string(bytes_per_block) + " bytes each), fewer than the " +
                          std::to_string(blocks_per_seq) + " blocks one sequence of max_model_len " +
                          std::to_string(max_model_len) +
                          " needs; raise kv_cache_memory_bytes (or gpu_memory_utilization) or lower max_model_len");
  }
  if (num_blocks > INT32_MAX) throw InvalidArgument("kv_cache_memory_bytes is too large");
  kv_cache_ = model_->allocate_kv_cache(static_cast<int32_t>(num_blocks), block_size);
  kv_layers_ = kv_cache_.keys;
  kv_layers_.insert(kv_layers_.end(), kv_cache_.values.begin(), kv_cache_.values.end());
  kv_manager_ = std::make_unique<KVCacheManager>(static_cast<int32_t>(num_blocks), block_size,
                                                 config_.enable_prefix_caching);

  SchedulerConfig sc;
  sc.policy = policy;
  sc.max_num_seqs = config_.max_num_seqs;
  sc.max_num_batched_tokens = budget;
  sc.max_model_len = max_model_len;
  sc.enable_chunked_prefill = config_.enable_chunked_prefill;
  scheduler_ = std::make_unique<Scheduler>(sc, *kv_manager_);
  const std::vector<int32_t> eos = config_.eos_token_ids.empty() ? mc.eos_token_ids : config_.eos_token_ids;
  for (int32_t id : eos) {
    if (id < 0 || id >= mc.vocab_size) throw InvalidArgument("EOS token id " + std::to_string(id) + " is outside the vocabulary");
  }
  sampler_ = std::make_unique<Sampler>(*backend_, eos);
  metrics_ = std::make_unique<MetricsRecorder>(max_model_len);
  info.max_model_len = max_model_len;
  const double plan_s = seconds_since(phase);
  phase = Clock::now();
  record_decode_graphs();
  const double graphs_s = seconds_since(phase);

  info.architecture = mc.architecture;
  info.vocab_size = mc.vocab_size;
  info.max_model_len = max_model_len;
  info.max_num_seqs = config_.max_num_seqs;
  info.max_num_batched_tokens = budget;
  info.block_size = block_size;
  info.num_kv_blocks = static_cast<int32_t>(num_blocks);
  info.kv_cache_bytes = num_blocks * bytes_per_block;
  info.weight_bytes = model_->weight_bytes();
  info.eos_token_ids = eos;
  info.device = backend_->name();
  if (decode_graphs_) {
    info.num_decode_graphs = decode_graphs_->num_graphs();
    info.decode_graph_bytes = decode_graphs_->memory_bytes();
  }

  std::ostringstream line;
  line << mc.architecture << " on " << backend_->name() << ": weights " << gib(info.weight_bytes)
       << (load_format == LoadFormat::kDummy ? " (dummy)" : "")
       << ", KV cache " << gib(info.kv_cache_bytes) << " = " << num_blocks << " blocks of " << block_size
       << " tokens, room for " << num_blocks / blocks_per_seq << " sequences of max_model_len " << max_model_len;
  if (decode_graphs_) {
    line << "; " << info.num_decode_graphs << " decode graphs (batch 1.." << config_.max_num_seqs << ", "
         << gib(info.decode_graph_bytes) << ")";
  }
  line << std::fixed << std::setprecision(2) << "; ready in " << backend_s + weights_s + plan_s + graphs_s
       << " s (backend " << backend_s << ", weights " << weights_s << ", memory plan " << plan_s;
  if (decode_graphs_) line << ", graphs " << graphs_s;
  line << ")";
  log_info(line.str());
}

void Engine::Impl::record_decode_graphs() {
  decode_graphs_.reset();
  if (!config_.enforce_eager) {
    // The graphs' eager runs meet every decode shape and tune cuBLASLt's candidates for it
    // (DecodeGraphs). With enforce_eager nothing is tuned: the library's first picks run.
    decode_graphs_ = std::make_unique<DecodeGraphs>(*backend_, *model_, kv_cache_, *step_inputs_,
                                                    config_.max_num_seqs, info.max_model_len);
    if (decode_graphs_->empty()) decode_graphs_.reset();
  }
}

void Engine::Impl::check_weights_fit(const ModelConfig& mc) const {
  int64_t used = 0, total = 0;
  backend_->memory_info(used, total);
  if (total <= 0) return;  // host memory: the allocation itself reports a shortage
  const int64_t need = count_weight_elements(mc) * static_cast<int64_t>(dtype_size(backend_->compute_dtype()));
  const double allowed = config_.gpu_memory_utilization * static_cast<double>(total) - static_cast<double>(used);
  if (static_cast<double>(need) > allowed) {
    throw InvalidArgument("the model's weights (" + gib(need) + " in " + dtype_name(backend_->compute_dtype()) +
                          ") do not fit in gpu_memory_utilization " + std::to_string(config_.gpu_memory_utilization) +
                          " x " + gib(total) + " of device memory with " + gib(used) +
                          " already in use; raise gpu_memory_utilization or use a smaller dtype or model");
  }
}

void Engine::Impl::profile_largest_step(int32_t budget, int32_t max_model_len, int32_t block_size) {
  int64_t used = 0, total = 0;
  backend_->memory_info(used, total);
  if (total <= 0 || config_.kv_cache_memory_bytes > 0) return;
  const int64_t tokens = std::min<int64_t>(budget, static_cast<int64_t>(config_.max_num_seqs) * max_model_len);
  KVCache scratch = model_->allocate_kv_cache(1, block_size);
  model_->forward(step_inputs_->profile(static_cast<int32_t>(tokens), max_model_len), scratch);
  backend_->synchronize();
}

void Engine::Impl::add_request(uint64_t id, std::vector<int32_t> prompt, const SamplingParams& params,
                               int64_t priority) {
  if (is_sleeping()) throw Error("the engine is sleeping: call wake_up() before adding requests");
  if (groups_.count(id) != 0) throw InvalidArgument("request id " + std::to_string(id) + " is already in use");
  if (priority != 0 && config_.scheduling_policy != "priority") {
    throw InvalidArgument("Got priority " + std::to_string(priority) + " but Priority scheduling is not enabled.");
  }
  if (prompt.empty()) throw InvalidArgument("the prompt is empty: a request needs at least one token");
  if (static_cast<int64_t>(prompt.size()) > info.max_model_len) {
    throw InvalidArgument("the prompt (" + std::to_string(prompt.size()) +
                          " tokens) is longer than the maximum model length of " +
                          std::to_string(info.max_model_len) + " (max_model_len)");
  }
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= info.vocab_size) {
      throw InvalidArgument("token id " + std::to_string(prompt[i]) + " at prompt position " + std::to_string(i) +
                            " is outside the vocabulary [0, " + std::to_string(info.vocab_size) + ")");
    }
  }
  params.validate(info.vocab_size, config_.max_logprobs);

  // vLLM v1: sample i of a seeded request draws as a request seeded with seed + i would.
  const uint64_t base_seed = params.seed ? *params.seed : splitmix64(config_.seed ^ splitmix64(next_arrival_));
  Group group;
  for (int32_t i = 0; i < params.n; ++i) {
    auto r = std::make_unique<Request>();
    r->id = next_seq_id_++;
    r->request_id = id;
    r->index = i;
    r->arrival = next_arrival_++;
    r->arrival_time = MetricsRecorder::now();
    r->num_prompt_tokens = static_cast<int32_t>(prompt.size());
    r->token_ids = prompt;
    r->params = params;
    r->priority = priority;
    r->seed = base_seed + static_cast<uint64_t>(i);
    for (const auto& [token, bias] : params.logit_bias) {
      r->logit_bias_tokens.push_back(token);
      r->logit_bias_values.push_back(bias);
    }
    if (i > 0) r->fork_source = group.samples.front().get();
    group.samples.push_back(std::move(r));
  }
  // Samples 1..n-1 wait until sample 0 has computed the prompt, then fork its blocks.
  group.released = params.n == 1;
  scheduler_->add_request(group.samples.front().get());
  groups_.emplace(id, std::move(group));
}

void Engine::Impl::add_prompt_logprobs() {
  const int32_t total = static_cast<int32_t>(prompt_logprob_rows_.size());
  for (int32_t first = 0; first < total; first += model_->max_logit_rows()) {
    const int32_t count = std::min(model_->max_logit_rows(), total - first);
    std::vector<LogprobsRow> rows(static_cast<size_t>(count));
    for (int32_t i = 0; i < count; ++i) {
      const PromptLogprobsRow& p = prompt_logprob_rows_[static_cast<size_t>(first + i)];
      rows[static_cast<size_t>(i)] = {p.request->token_ids[static_cast<size_t>(p.position) + 1],
                                      p.request->params.prompt_logprobs};
    }
    Tensor logits = model_->prompt_logits(first, count);
    const std::vector<SampleResult> scored = backend_->compute_logprobs(logits, rows);
    for (int32_t i = 0; i < count; ++i) {
      const SampleResult& s = scored[static_cast<size_t>(i)];
      const Request* row = prompt_logprob_rows_[static_cast<size_t>(first + i)].request;
      Request& r = *groups_.at(row->request_id).samples.at(static_cast<size_t>(row->index));
      r.prompt_logprobs.push_back(position_logprobs(s));
    }
  }
}

void Engine::Impl::append_token(Request& r, const SampleResult& s) {
  r.token_ids.push_back(s.token);
  if (r.params.logprobs >= 0) {
    r.logprobs.push_back(position_logprobs(s));
    r.cumulative_logprob += s.logprob;
  }
  ++stats_.num_generated_tokens;

  const SamplingParams& p = r.params;
  const std::vector<int32_t>& eos = sampler_->eos_token_ids();
  if (!p.ignore_eos && std::find(eos.begin(), eos.end(), s.token) != eos.end()) {
    r.finish_reason = FinishReason::kStop;
  } else if (std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), s.token) != p.stop_token_ids.end()) {
    r.finish_reason = FinishReason::kStop;
    r.stop_token_id = s.token;
  } else if (r.num_output_tokens() >= p.max_tokens || r.num_tokens() >= info.max_model_len) {
    r.finish_reason = FinishReason::kLength;
  }
}

RequestOutput Engine::Impl::make_output(Request& r) const {
  RequestOutput out;
  out.request_id = r.request_id;
  out.index = r.index;
  out.num_cached_tokens = std::max(0, r.num_cached_tokens);
  out.prompt_token_ids.assign(r.token_ids.begin(), r.token_ids.begin() + r.num_prompt_tokens);
  out.token_ids.assign(r.token_ids.begin() + r.num_prompt_tokens, r.token_ids.end());
  out.logprobs = std::move(r.logprobs);
  out.prompt_logprobs = std::move(r.prompt_logprobs);
  out.cumulative_logprob = r.cumulative_logprob;
  out.finish_reason = r.finish_reason;
  out.stop_token_id = r.stop_token_id;
  out.finished = true;
  return out;
}

std::vector<RequestOutput> Engine::Impl::step() {
  std::vector<RequestOutput> outputs = std::move(pending_outputs_);
  pending_outputs_.clear();
  SchedulerOutput scheduled = scheduler_->schedule();
  stats_.num_preemptions += static_cast<int64_t>(scheduled.preempted.size());
  if (scheduled.empty()) return outputs;
  ++stats_.num_steps;
  copy_blocks();
  const double start = MetricsRecorder::now();
  int64_t step_tokens = 0;
  int64_t prompt_tokens = 0;  // of this step's tokens, those that are prompt tokens
  for (const ScheduledRequest& s : scheduled.scheduled) {
    metrics_->on_scheduled(*s.request, start);
    step_tokens += s.num_new_tokens;
    prompt_tokens += std::clamp<int64_t>(s.request->num_prompt_tokens - s.request->num_computed_tokens, 0,
                                         s.num_new_tokens);
  }

  Tensor logits;
  const bool graph = decode_graphs_ && decode_graphs_->can_run(scheduled);
  metrics_->on_step(step_tokens, graph);
  if (graph) {
    // Every row decodes its last token, so none is a prompt-logprobs row.
    logits = decode_graphs_->run(scheduled, *kv_manager_, sampling_rows_);
    prompt_logprob_rows_.clear();
    ++stats_.num_graph_steps;
  } else {
    ForwardInputs inputs = step_inputs_->build(scheduled, *kv_manager_, sampling_rows_, prompt_logprob_rows_);
    logits = model_->forward(inputs, kv_cache_);
  }
  std::vector<SampleResult> samples;
  if (!sampling_rows_.empty()) samples = sampler_->sample(logits, sampling_rows_);
  // After sampling: the prompt rows' logits take the buffer the sampling rows' were in.
  add_prompt_logprobs();

  stats_.num_prompt_tokens_computed += prompt_tokens;
  scheduler_->update_from_output(scheduled);
  std::vector<uint64_t> done;
  const double now = MetricsRecorder::now();
  for (size_t i = 0; i < sampling_rows_.size(); ++i) {
    Group& group = groups_.at(sampling_rows_[i]->request_id);
    Request& r = *group.samples.at(static_cast<size_t>(sampling_rows_[i]->index));
    append_token(r, samples[i]);
    if (!group.released) {
      // Sample 0 just computed the prompt. The others go ahead of the queue so that they
      // are admitted while it still holds the blocks they fork.
      for (size_t k = group.samples.size() - 1; k > 0; --k) scheduler_->add_request_front(group.samples[k].get());
      group.released = true;
    }
    metrics_->on_token(r, now);
    if (r.finish_reason != FinishReason::kNone) {
      metrics_->on_finished(r, now);
      r.status = RequestStatus::kFinished;
      scheduler_->finish(&r);
      outputs.push_back(make_output(r));
      if (r.params.report_new_tokens) outputs.back().new_token_ids.push_back(samples[i].token);
      if (++group.num_done == static_cast<int32_t>(group.samples.size())) done.push_back(r.request_id);
    } else if (r.params.report_new_tokens) {
      RequestOutput partial;
      partial.request_id = r.request_id;
      partial.index = r.index;
      partial.new_token_ids.push_back(samples[i].token);
      outputs.push_back(std::move(partial));
    }
  }
  for (uint64_t id : done) groups_.erase(id);
  return outputs;
}

void Engine::Impl::copy_blocks() {
  const std::vector<std::pair<int32_t, int32_t>> copies = kv_manager_->take_block_copies();
  if (!copies.empty()) backend_->copy_blocks(kv_layers_, copies);
}

bool Engine::Impl::abort(uint64_t id) {
  auto it = groups_.find(id);
  if (it == groups_.end()) return false;
  for (const std::unique_ptr<Request>& sample : it->second.samples) {
    Request& r = *sample;
    if (r.status == RequestStatus::kFinished) continue;  // reported when it finished
    scheduler_->abort(r.id);  // false for a sample not yet released: it holds nothing
    r.finish_reason = FinishReason::kAbort;
    r.status = RequestStatus::kFinished;
    metrics_->on_finished(r, MetricsRecorder::now());
    pending_outputs_.push_back(make_output(r));
  }
  groups_.erase(it);
  return true;
}

std::optional<RequestOutput> Engine::Impl::finish_request(uint64_t id, int32_t index) {
  auto it = groups_.find(id);
  if (it == groups_.end() || index < 0 || index >= static_cast<int32_t>(it->second.samples.size())) return std::nullopt;
  Group& group = it->second;
  Request& r = *group.samples[static_cast<size_t>(index)];
  if (r.status == RequestStatus::kFinished) return std::nullopt;
  scheduler_->abort(r.id);
  r.finish_reason = FinishReason::kStop;
  r.status = RequestStatus::kFinished;
  metrics_->on_finished(r, MetricsRecorder::now());
  RequestOutput out = make_output(r);
  if (++group.num_done == static_cast<int32_t>(group.samples.size())) groups_.erase(it);
  return out;
}

bool Engine::Impl::reset_prefix_cache(bool reset_running_requests) {
  if (reset_running_requests) stats_.num_preemptions += scheduler_->preempt_all();
  return kv_manager_->reset_prefix_cache();
}

EngineStats Engine::Impl::stats() const {
  EngineStats s = stats_;
  s.num_running = scheduler_->num_running();
  s.num_waiting = scheduler_->num_waiting();
  s.num_free_blocks = kv_manager_->num_free_blocks();
  const PrefixCacheStats& prefix = kv_manager_->prefix_cache_stats();
  s.num_prefix_cache_requests = prefix.num_requests;
  s.num_prefix_cache_queries = prefix.num_queried_tokens;
  s.num_prefix_cache_hits = prefix.num_hit_tokens;
  s.num_cached_blocks = kv_manager_->pool().num_cached();
  return s;
}

EngineMetrics Engine::Impl::metrics() const {
  EngineMetrics m = metrics_->metrics();
  m.num_requests_running = scheduler_->num_running();
  m.num_requests_waiting = scheduler_->num_waiting();
  const int32_t total = kv_manager_->num_blocks();
  m.kv_cache_usage = total > 0 ? 1.0 - static_cast<double>(kv_manager_->num_free_blocks()) / total : 0.0;
  m.num_preemptions = stats_.num_preemptions;  // reset_prefix_cache preempts too
  const PrefixCacheStats& prefix = kv_manager_->prefix_cache_stats();
  m.prefix_cache_queries = prefix.num_queried_tokens;
  m.prefix_cache_hits = prefix.num_hit_tokens;
  return m;
}

void Engine::Impl::sleep(int32_t level) {
  if (level != 1 && level != 2) throw InvalidArgument("sleep level must be 1 or 2, got " + std::to_string(level));
  if (is_sleeping()) {
    log_info("the engine is already sleeping");
    return;
  }
  if (scheduler_->has_unfinished()) {
    throw Error("cannot sleep with " + std::to_string(groups_.size()) +
                " unfinished requests: their KV cache would be lost; finish or abort them first");
  }
  // The cache's content is lost, so what the prefix cache points at must go too (vLLM's
  // sleep resets it as well). No request holds a block, so the reset cannot fail.
  kv_manager_->reset_prefix_cache();
  // Graphs hold the addresses of the buffers freed below (and device memory of their own).
  decode_graphs_.reset();
  backend_->synchronize();
  kv_cache_ = KVCache{};
  kv_layers_.clear();
  kv_asleep_ = true;
  weights_asleep_ = level;
  if (level == 2) {
    model_->take_weights();  // discarded; wake_up loads them again
  } else if (config_.device != "cpu") {
    host_weights_ = copy_weights(model_->take_weights(), *backend_, /*to_host=*/true);
  }
  // Level 1 on the CPU: the weights already live in host memory, where level 1 keeps them.
}

void Engine::Impl::wake_up(const std::vector<std::string>& tags) {
  bool weights = tags.empty(), kv = tags.empty();
  for (const std::string& tag : tags) {
    if (tag == "weights") {
      weights = true;
    } else if (tag == "kv_cache") {
      kv = true;
    } else {
      throw InvalidArgument("wake_up tag must be 'weights' or 'kv_cache', got '" + tag + "'");
    }
  }
  if (weights && weights_asleep_ == 1 && config_.device != "cpu") {
    model_->restore_weights(copy_weights(host_weights_, *backend_, /*to_host=*/false));
    host_weights_ = ModelWeights{};
  } else if (weights && weights_asleep_ == 2) {
    std::unique_ptr<WeightSource> source =
        make_weight_source(load_format_, config_.model_dir, model_config_, config_.seed, config_.num_threads);
    model_->restore_weights(load_weights(model_config_, *source, *backend_));
  }
  if (weights) weights_asleep_ = 0;
  if (kv && kv_asleep_) {
    kv_cache_ = model_->allocate_kv_cache(info.num_kv_blocks, info.block_size);
    kv_layers_ = kv_cache_.keys;
    kv_layers_.insert(kv_layers_.end(), kv_cache_.values.begin(), kv_cache_.values.end());
    kv_asleep_ = false;
  }
  if (!is_sleeping() && !decode_graphs_) record_decode_graphs();
}

Engine::Engine(const EngineConfig& config) : impl_(std::make_unique<Impl>(config)) {}
Engine::~Engine() = default;

void Engine::add_request(uint64_t request_id, std::vector<int32_t> prompt_token_ids, const SamplingParams& params,
                         int64_t priority) {
  impl_->add_request(request_id, std::move(prompt_token_ids), params, priority);
}
std::vector<RequestOutput> Engine::step() { return impl_->step(); }
bool Engine::abort(uint64_t request_id) { return impl_->abort(request_id); }
std::optional<RequestOutput> Engine::finish_request(uint64_t request_id, int32_t index) {
  return impl_->finish_request(request_id, index);
}
bool Engine::reset_prefix_cache(bool reset_running_requests) {
  return impl_->reset_prefix_cache(reset_running_requests);
}
bool Engine::has_unfinished() const { return impl_->has_unfinished(); }
const EngineInfo& Engine::info() const { return impl_->info; }
EngineStats Engine::stats() const { return impl_->stats(); }
EngineMetrics Engine::metrics() const { return impl_->metrics(); }
void Engine::memory_info(int64_t& used_bytes, int64_t& total_bytes) const {
  impl_->backend().memory_info(used_bytes, total_bytes);
}
void Engine::sleep(int32_t level) { impl_->sleep(level); }
void Engine::wake_up(const std::vector<std::string>& tags) { impl_->wake_up(tags); }
bool Engine::is_sleeping() const { return impl_->is_sleeping(); }

}  // namespace octavo
