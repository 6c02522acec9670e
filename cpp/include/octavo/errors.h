// Exceptions thrown by the octavo engine. The Python bindings translate them:
// InvalidArgument and Unsupported -> ValueError, NotFound -> OSError, Error -> RuntimeError.
#pragma once

#include <stdexcept>
#include <string>

namespace octavo {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A caller-supplied value is out of range or malformed (also: corrupt model files).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

// A file or directory the caller named does not exist or cannot be read.
class NotFound : public Error {
 public:
  using Error::Error;
};

// A valid request for something octavo does not do (an architecture, a rope type).
class Unsupported : public Error {
 public:
  using Error::Error;
};

}  // namespace octavo
