#include "progress.hpp"

#include <sys/resource.h>

#include <iostream>

#include "table.hpp"

namespace codecllm::tools {

CompressProgress::CompressProgress(bool quiet) : quiet_(quiet), tty_(stderr_is_tty()) {}

CompressProgress::~CompressProgress() {
  if (drawn_ && tty_) std::cerr << '\n';
}

model::ProgressFn CompressProgress::fn() {
  return [this](size_t done, size_t total, const model::TensorStats& s) {
    if (quiet_) return;
    drawn_ = true;
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start_;
    std::cerr << (tty_ ? "\r\033[K" : "") << "[" << done << "/" << total << "] " << s.name << "  "
              << human_bytes(double(s.source_bytes)) << " -> " << human_bytes(double(s.stored_bytes))
              << (s.note.empty() ? "" : "  (" + s.note + ")") << "  " << fixed(elapsed.count(), 0) << " s"
              << (tty_ ? "" : "\n") << std::flush;
  };
}

uint64_t peak_rss_bytes() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return uint64_t(u.ru_maxrss) * 1024;  // Linux reports kilobytes
}

}  // namespace codecllm::tools
