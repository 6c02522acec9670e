// One-line status messages on stderr ("octavo: ..."); OCTAVO_LOG=quiet silences them.
#pragma once

#include <string>

namespace octavo {

void log_info(const std::string& message);

}  // namespace octavo
