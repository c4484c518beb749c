// Errors raised by the library. Every message names the file (or tensor) and what is wrong,
// so that a command-line user can act on it without a debugger.
#pragma once

#include <stdexcept>
#include <string>

namespace codecllm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Input data (a file, a header, a payload) is malformed or corrupt.
class FormatError : public Error {
 public:
  explicit FormatError(const std::string& what) : Error(what) {}
};

// The operating system refused something (open, read, write, rename, mmap, allocation).
class IoError : public Error {
 public:
  explicit IoError(const std::string& what) : Error(what) {}
};

}  // namespace codecllm
