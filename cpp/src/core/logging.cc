#include "core/logging.h"

#include <cstdlib>
#include <cstring>
#include <iostream>

namespace octavo {

void log_info(const std::string& message) {
  const char* level = std::getenv("OCTAVO_LOG");
  if (level != nullptr && std::strcmp(level, "quiet") == 0) return;
  std::cerr << "octavo: " << message << std::endl;
}

}  // namespace octavo
