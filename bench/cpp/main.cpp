// The C++ benchmarks of pyjac's core: every job the Python package offers, timed without
// Python in the loop. Google Benchmark's own flags work as usual (--benchmark_filter,
// --benchmark_repetitions, --benchmark_format=json, --benchmark_out=FILE); one more,
// --threads=N, gives every case and the SGEMM peak the same thread budget (default: all
// cores, or OMP_NUM_THREADS). Build and run: bench/run_cpp.sh (see README, Benchmarks).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "common.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/common/threads.hpp"

namespace {

// Removes --threads=N (or --threads N) from argv, which Google Benchmark would refuse.
// Returns false (after saying why) when N is not a positive integer.
bool take_threads_flag(int& argc, char** argv) {
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    std::string value;
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      value = argv[i] + 10;
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      value = argv[++i];
    } else {
      argv[out++] = argv[i];
      continue;
    }
    char* end = nullptr;
    const long n = std::strtol(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || n < 1 || n > 1024) {
      std::cerr << "--threads: expected a positive integer (at most 1024), got '" << value
                << "'\n";
      return false;
    }
    pyjac_bench::set_threads(static_cast<int>(n));
  }
  argc = out;
  argv[argc] = nullptr;
  return true;
}

std::string env_or_unset(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string("(unset)");
}

}  // namespace

int main(int argc, char** argv) {
  if (!take_threads_flag(argc, argv)) return 2;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // Without --threads each call takes the cores other processes leave free at the time.
  const std::string threads =
      pyjac_bench::threads() > 0
          ? std::to_string(pyjac_bench::threads())
          : "every free core (" + std::to_string(pyjac::resolve_threads(-1)) + " of " +
                std::to_string(pyjac::max_threads()) + " at the start)";
  benchmark::AddCustomContext("pyjac_threads", threads);
  benchmark::AddCustomContext("openblas_kernel", pyjac::blas::kernel_name());
  benchmark::AddCustomContext("openblas_config", pyjac::blas::build_config());
  benchmark::AddCustomContext("OPENBLAS_CORETYPE", env_or_unset("OPENBLAS_CORETYPE"));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
