// CPU-only builds: the CUDA factory functions answer "not here", so callers need no #ifdef.
#ifndef OCTAVO_WITH_CUDA

#include "backend/backend.h"
#include "octavo/errors.h"

namespace octavo {

std::unique_ptr<Backend> make_cuda_backend(DType, double) {
  throw Unsupported("this octavo build has no CUDA backend");
}

bool cuda_device_available() { return false; }

}  // namespace octavo

#endif
