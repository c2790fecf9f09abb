#include "pyjac/common/threads.hpp"

#include <algorithm>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>

#include <omp.h>

#ifdef __linux__
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#endif

#include "pyjac/common/blas.hpp"

namespace pyjac {

int max_threads() { return omp_get_max_threads(); }

int thread_limit() { return std::min(1024, std::max(64, 4 * omp_get_num_procs())); }

int resolve_threads(int n_threads) {
  if (n_threads > thread_limit())
    throw std::invalid_argument("n_threads: " + std::to_string(n_threads) +
                                " is more than this machine can use (at most " +
                                std::to_string(thread_limit()) + ")");
  if (n_threads > 0) return n_threads;
  const int all = omp_get_max_threads();
  if (all <= 1) return all;
  const int free_cores = omp_get_num_procs() - busy_cores_elsewhere();
  return std::max(1, std::min(all, free_cores));
}

namespace {

#ifdef __linux__
// The whole of a small /proc file, or "" when it cannot be read.
std::string read_proc_file(const char* path) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  char buf[512];
  const ssize_t got = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  return got > 0 ? std::string(buf, static_cast<std::size_t>(got)) : std::string();
}

// Runnable tasks in the whole system now: the numerator of /proc/loadavg's 4th field.
int running_tasks() {
  const std::string s = read_proc_file("/proc/loadavg");
  int running = 0, total = 0;
  double a = 0, b = 0, c = 0;
  if (std::sscanf(s.c_str(), "%lf %lf %lf %d/%d", &a, &b, &c, &running, &total) != 5) return -1;
  return running;
}

// This process's threads in state R (running or runnable), the caller included.
int own_running_threads() {
  DIR* dir = ::opendir("/proc/self/task");
  if (!dir) return -1;
  int running = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const std::string stat =
        read_proc_file(("/proc/self/task/" + std::string(e->d_name) + "/stat").c_str());
    const std::size_t paren = stat.rfind(')');  // the name may hold spaces and parentheses
    if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'R')
      ++running;
  }
  ::closedir(dir);
  return running;
}
#endif

}  // namespace

int busy_cores_elsewhere() {
#ifdef __linux__
  // /proc/loadavg counts the whole machine: when this process may run on only some of
  // its CPUs (taskset, a container's cpuset), tasks elsewhere would look like ours to
  // share, so nothing is counted then.
  if (omp_get_num_procs() < ::sysconf(_SC_NPROCESSORS_ONLN)) return 0;
  // An average over calls, weight 1/3 for the newest sample (the first sample stands
  // alone): a process that stays busy counts from the second call on, a task caught
  // running once does not (1/3 rounds to 0).
  static std::mutex mutex;
  static double average = -1.0;
  const int all = running_tasks(), own = own_running_threads();
  if (all < 0 || own < 0) return 0;
  const double sample = std::max(0, all - own);
  std::lock_guard<std::mutex> lock(mutex);
  average = average < 0 ? sample : (2.0 * average + sample) / 3.0;
  return static_cast<int>(average + 0.5);
#else
  return 0;
#endif
}

int blas_num_threads() { return blas::get_num_threads(); }

// OpenBLAS's thread count is one process-wide setting (this build has no thread-local
// setter), so concurrent calls share it: while any scope that needs one BLAS thread is
// active it stays 1, otherwise it is the largest count asked for, and the caller's
// setting comes back when the last scope ends. Guarded by one mutex, so two calls never
// save or restore each other's values.
namespace {

struct BlasThreadBudget {
  std::mutex mutex;
  int saved = 1;                  // the setting before the first active scope
  std::multiset<int> requests;    // one entry per active scope
};

BlasThreadBudget& budget() {
  static BlasThreadBudget b;
  return b;
}

void apply_budget(BlasThreadBudget& b) {
  const int want = b.requests.empty()        ? b.saved
                   : *b.requests.begin() == 1 ? 1
                                              : *b.requests.rbegin();
  if (blas::get_num_threads() != want) blas::set_num_threads(want);
}

}  // namespace

BlasThreadScope::BlasThreadScope(int n_threads) : requested_(std::max(1, n_threads)) {
  BlasThreadBudget& b = budget();
  std::lock_guard<std::mutex> lock(b.mutex);
  if (b.requests.empty()) b.saved = blas::get_num_threads();
  b.requests.insert(requested_);
  apply_budget(b);
}

BlasThreadScope::~BlasThreadScope() {
  BlasThreadBudget& b = budget();
  std::lock_guard<std::mutex> lock(b.mutex);
  b.requests.erase(b.requests.find(requested_));
  apply_budget(b);
}

}  // namespace pyjac
