// EngineMetrics and its histograms, read by octavo.metrics into vLLM's Metric objects.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "octavo/engine_metrics.h"

namespace py = pybind11;

namespace octavo::bindings {

void register_metrics(py::module_& m) {
  py::class_<HistogramData>(m, "HistogramData", "Fixed-bucket histogram; counts are per bucket, +Inf last.")
      .def_readonly("bounds", &HistogramData::bounds)
      .def_readonly("counts", &HistogramData::counts)
      .def_readonly("count", &HistogramData::count)
      .def_readonly("sum", &HistogramData::sum);

  py::class_<EngineMetrics>(m, "EngineMetrics", "vLLM's engine metrics (see octavo/engine_metrics.h).")
      .def_readonly("num_requests_running", &EngineMetrics::num_requests_running)
      .def_readonly("num_requests_waiting", &EngineMetrics::num_requests_waiting)
      .def_readonly("kv_cache_usage", &EngineMetrics::kv_cache_usage)
      .def_readonly("num_steps", &EngineMetrics::num_steps)
      .def_readonly("num_graph_steps", &EngineMetrics::num_graph_steps)
      .def_readonly("num_preemptions", &EngineMetrics::num_preemptions)
      .def_readonly("prompt_tokens", &EngineMetrics::prompt_tokens)
      .def_readonly("generation_tokens", &EngineMetrics::generation_tokens)
      .def_readonly("prefix_cache_queries", &EngineMetrics::prefix_cache_queries)
      .def_readonly("prefix_cache_hits", &EngineMetrics::prefix_cache_hits)
      .def_readonly("num_finished_stop", &EngineMetrics::num_finished_stop)
      .def_readonly("num_finished_length", &EngineMetrics::num_finished_length)
      .def_readonly("num_finished_abort", &EngineMetrics::num_finished_abort)
      .def_readonly("time_to_first_token", &EngineMetrics::time_to_first_token)
      .def_readonly("inter_token_latency", &EngineMetrics::inter_token_latency)
      .def_readonly("e2e_request_latency", &EngineMetrics::e2e_request_latency)
      .def_readonly("request_queue_time", &EngineMetrics::request_queue_time)
      .def_readonly("request_prompt_tokens", &EngineMetrics::request_prompt_tokens)
      .def_readonly("request_generation_tokens", &EngineMetrics::request_generation_tokens)
      .def_readonly("iteration_tokens", &EngineMetrics::iteration_tokens);
}

}  // namespace octavo::bindings
