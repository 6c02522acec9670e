// Greedy generation from token ids with the octavo C++ API, no Python involved.
//
//   octavo_generate MODEL_DIR MAX_TOKENS ID [ID ...]
//
// Prints the generated token ids on one line, space-separated.
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "octavo/engine.h"
#include "octavo/errors.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: " << argv[0] << " MODEL_DIR MAX_TOKENS ID [ID ...]\n";
    return 2;
  }
  try {
    octavo::EngineConfig config;
    config.model_dir = argv[1];
    config.max_num_seqs = 8;
    config.kv_cache_memory_bytes = 64LL << 20;
    octavo::Engine engine(config);

    octavo::SamplingParams params;
    params.temperature = 0.0f;
    params.max_tokens = std::stoi(argv[2]);
    std::vector<int32_t> prompt;
    for (int i = 3; i < argc; ++i) prompt.push_back(std::stoi(argv[i]));
    engine.add_request(0, prompt, params);

    while (engine.has_unfinished()) {
      for (const octavo::RequestOutput& out : engine.step()) {
        for (size_t i = 0; i < out.token_ids.size(); ++i) std::cout << (i ? " " : "") << out.token_ids[i];
        std::cout << "\n";
      }
    }
  } catch (const octavo::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::logic_error& e) {  // std::stoi on a non-number
    std::cerr << "error: MAX_TOKENS and the ids must be integers (" << e.what() << ")\n";
    return 2;
  }
  return 0;
}
