// Engine, EngineConfig, SamplingParams and the output types.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "backend/backend.h"
#include "octavo/engine.h"

namespace py = pybind11;

namespace octavo::bindings {

void register_engine(py::module_& m) {
  py::class_<EngineConfig>(m, "EngineConfig", "Settings of one Engine (see octavo/engine.h).")
      .def(py::init<>())
      .def_readwrite("model_dir", &EngineConfig::model_dir)
      .def_readwrite("config_json", &EngineConfig::config_json)
      .def_readwrite("load_format", &EngineConfig::load_format)
      .def_readwrite("device", &EngineConfig::device)
      .def_readwrite("dtype", &EngineConfig::dtype)
      .def_readwrite("gpu_memory_utilization", &EngineConfig::gpu_memory_utilization)
      .def_readwrite("max_model_len", &EngineConfig::max_model_len)
      .def_readwrite("max_num_seqs", &EngineConfig::max_num_seqs)
      .def_readwrite("max_num_batched_tokens", &EngineConfig::max_num_batched_tokens)
      .def_readwrite("block_size", &EngineConfig::block_size)
      .def_readwrite("kv_cache_memory_bytes", &EngineConfig::kv_cache_memory_bytes)
      .def_readwrite("enable_chunked_prefill", &EngineConfig::enable_chunked_prefill)
      .def_readwrite("enforce_eager", &EngineConfig::enforce_eager)
      .def_readwrite("scheduling_policy", &EngineConfig::scheduling_policy)
      .def_readwrite("enable_prefix_caching", &EngineConfig::enable_prefix_caching)
      .def_readwrite("max_logprobs", &EngineConfig::max_logprobs)
      .def_readwrite("seed", &EngineConfig::seed)
      .def_readwrite("num_threads", &EngineConfig::num_threads)
      .def_readwrite("eos_token_ids", &EngineConfig::eos_token_ids);

  py::class_<SamplingParams>(m, "SamplingParams", "The engine's per-request sampling settings.")
      .def(py::init<>())
      .def_readwrite("n", &SamplingParams::n)
      .def_readwrite("temperature", &SamplingParams::temperature)
      .def_readwrite("top_p", &SamplingParams::top_p)
      .def_readwrite("top_k", &SamplingParams::top_k)
      .def_readwrite("min_p", &SamplingParams::min_p)
      .def_readwrite("presence_penalty", &SamplingParams::presence_penalty)
      .def_readwrite("frequency_penalty", &SamplingParams::frequency_penalty)
      .def_readwrite("repetition_penalty", &SamplingParams::repetition_penalty)
      .def_readwrite("seed", &SamplingParams::seed)
      .def_readwrite("max_tokens", &SamplingParams::max_tokens)
      .def_readwrite("min_tokens", &SamplingParams::min_tokens)
      .def_readwrite("ignore_eos", &SamplingParams::ignore_eos)
      .def_readwrite("stop_token_ids", &SamplingParams::stop_token_ids)
      .def_readwrite("logprobs", &SamplingParams::logprobs)
      .def_readwrite("report_new_tokens", &SamplingParams::report_new_tokens)
      .def_readwrite("prompt_logprobs", &SamplingParams::prompt_logprobs)
      .def_readwrite("logit_bias", &SamplingParams::logit_bias)
      .def_readwrite("allowed_token_ids", &SamplingParams::allowed_token_ids)
      .def_readwrite("bad_words_token_ids", &SamplingParams::bad_words_token_ids);

  py::enum_<FinishReason>(m, "FinishReason")
      .value("NONE", FinishReason::kNone)
      .value("STOP", FinishReason::kStop)
      .value("LENGTH", FinishReason::kLength)
      .value("ABORT", FinishReason::kAbort);

  py::class_<PositionLogprobs>(m, "PositionLogprobs")
      .def_readonly("sampled_token", &PositionLogprobs::sampled_token)
      .def_readonly("sampled_logprob", &PositionLogprobs::sampled_logprob)
      .def_readonly("sampled_rank", &PositionLogprobs::sampled_rank)
      .def_readonly("top_tokens", &PositionLogprobs::top_tokens)
      .def_readonly("top_logprobs", &PositionLogprobs::top_logprobs);

  py::class_<RequestOutput>(m, "RequestOutput")
      .def_readonly("request_id", &RequestOutput::request_id)
      .def_readonly("index", &RequestOutput::index)
      .def_readonly("prompt_token_ids", &RequestOutput::prompt_token_ids)
      .def_readonly("token_ids", &RequestOutput::token_ids)
      .def_readonly("logprobs", &RequestOutput::logprobs)
      .def_readonly("prompt_logprobs", &RequestOutput::prompt_logprobs)
      .def_readonly("cumulative_logprob", &RequestOutput::cumulative_logprob)
      .def_readonly("finish_reason", &RequestOutput::finish_reason)
      .def_readonly("stop_token_id", &RequestOutput::stop_token_id)
      .def_readonly("new_token_ids", &RequestOutput::new_token_ids)
      .def_readonly("finished", &RequestOutput::finished)
      .def_readonly("num_cached_tokens", &RequestOutput::num_cached_tokens);

  py::class_<EngineInfo>(m, "EngineInfo")
      .def_readonly("architecture", &EngineInfo::architecture)
      .def_readonly("vocab_size", &EngineInfo::vocab_size)
      .def_readonly("max_model_len", &EngineInfo::max_model_len)
      .def_readonly("max_num_seqs", &EngineInfo::max_num_seqs)
      .def_readonly("max_num_batched_tokens", &EngineInfo::max_num_batched_tokens)
      .def_readonly("block_size", &EngineInfo::block_size)
      .def_readonly("num_kv_blocks", &EngineInfo::num_kv_blocks)
      .def_readonly("num_decode_graphs", &EngineInfo::num_decode_graphs)
      .def_readonly("decode_graph_bytes", &EngineInfo::decode_graph_bytes)
      .def_readonly("kv_cache_bytes", &EngineInfo::kv_cache_bytes)
      .def_readonly("weight_bytes", &EngineInfo::weight_bytes)
      .def_readonly("eos_token_ids", &EngineInfo::eos_token_ids)
      .def_readonly("device", &EngineInfo::device);

  py::class_<EngineStats>(m, "EngineStats")
      .def_readonly("num_steps", &EngineStats::num_steps)
      .def_readonly("num_preemptions", &EngineStats::num_preemptions)
      .def_readonly("num_graph_steps", &EngineStats::num_graph_steps)
      .def_readonly("num_prompt_tokens_computed", &EngineStats::num_prompt_tokens_computed)
      .def_readonly("num_generated_tokens", &EngineStats::num_generated_tokens)
      .def_readonly("num_running", &EngineStats::num_running)
      .def_readonly("num_waiting", &EngineStats::num_waiting)
      .def_readonly("num_free_blocks", &EngineStats::num_free_blocks)
      .def_readonly("num_prefix_cache_requests", &EngineStats::num_prefix_cache_requests)
      .def_readonly("num_prefix_cache_queries", &EngineStats::num_prefix_cache_queries)
      .def_readonly("num_prefix_cache_hits", &EngineStats::num_prefix_cache_hits)
      .def_readonly("num_cached_blocks", &EngineStats::num_cached_blocks);

  m.def("cuda_available", &cuda_device_available,
        "True when this build has the CUDA backend and a CUDA device is present.");

  py::class_<Engine>(m, "Engine", "Continuous-batching engine over a paged KV cache.")
      .def(py::init<const EngineConfig&>(), py::arg("config"), py::call_guard<py::gil_scoped_release>())
      .def("add_request", &Engine::add_request, py::arg("request_id"), py::arg("prompt_token_ids"),
           py::arg("params"), py::arg("priority") = 0,
           "Queues a request; raises ValueError on bad input (a non-zero priority without\n"
           "scheduling_policy='priority' included).")
      .def("step", &Engine::step, py::call_guard<py::gil_scoped_release>(),
           "Runs one step; returns the requests that finished since the last call.")
      .def("abort", &Engine::abort, py::arg("request_id"))
      .def("finish_request", &Engine::finish_request, py::arg("request_id"), py::arg("index") = 0,
           "Finishes a request's sample `index` with reason STOP (a stop string the caller found), frees its blocks "
           "and returns its final output; None if the id is unknown.")
      .def("reset_prefix_cache", &Engine::reset_prefix_cache, py::arg("reset_running_requests") = false,
           py::call_guard<py::gil_scoped_release>(),
           "Empties the prefix cache; False while requests hold blocks unless reset_running_requests.")
      .def("has_unfinished", &Engine::has_unfinished)
      .def_property_readonly("info", &Engine::info, py::return_value_policy::reference_internal)
      .def("stats", &Engine::stats)
      .def("metrics", &Engine::metrics, "vLLM's metric set: gauges now, counters and histograms so far.")
      .def(
          "memory_info",
          [](const Engine& e) {
            int64_t used = 0, total = 0;
            e.memory_info(used, total);
            return py::make_tuple(used, total);
          },
          "(used, total) bytes of device memory, everything on the device counted; (0, 0) on the CPU.")
      .def("sleep", &Engine::sleep, py::arg("level") = 1, py::call_guard<py::gil_scoped_release>(),
           "Frees the KV cache and, at level 2, the weights (level 1 keeps a host copy).")
      .def("wake_up", &Engine::wake_up, py::arg("tags") = std::vector<std::string>{},
           py::call_guard<py::gil_scoped_release>(),
           "Restores 'weights' and/or 'kv_cache' (all when tags is empty).")
      .def("is_sleeping", &Engine::is_sleeping);
}

}  // namespace octavo::bindings
