// The generic engine behind jacobian_norms and lyapunov_exponents: carries a product
// of step Jacobians P_t = J_t ... J_1 without ever overflowing, either as the
// product itself or in Benettin's orthonormalised form.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "jacobian/linearize.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/jacobian/jacobian.hpp"
#include "pyjac/common/threads.hpp"
#include "jacobian/top_singular.hpp"

namespace pyjac {
namespace {

using blas::Trans;
using detail::rescale_pow2;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// log of x, -inf for 0.
double safe_log(double x) { return x > 0.0 ? std::log(x) : (x == 0.0 ? kNegInf : kNaN); }

// Bookkeeping shared by both methods: which steps want full spectra, and how the
// per-step results are written.
struct Recorder {
  const ProductOptions& o;
  ProductResult& r;
  std::vector<std::vector<int>> wanted;  // step -> indices into singular_values_at
  int n0;
  const std::vector<int>& widths;

  Recorder(const ProductOptions& opt, ProductResult& res, const std::vector<int>& w)
      : o(opt), r(res), n0(w[0]), widths(w) {
    const int steps = static_cast<int>(w.size()) - 1;
    wanted.resize(steps + 1);
    for (std::size_t i = 0; i < o.singular_values_at.size(); ++i) {
      const int t = o.singular_values_at[i];
      if (t < 1 || t > steps)
        throw std::invalid_argument("singular_values_at: depth " + std::to_string(t) +
                                    " outside [1, " + std::to_string(steps) + "]");
      wanted[t].push_back(static_cast<int>(i));
    }
    r.steps = steps;
    if (o.norms) {
      r.log_spectral_norm.assign(steps, kNaN);
      r.log_frobenius_norm.assign(steps, kNaN);
      r.solver_passes.assign(steps, 0);
      r.converged.assign(steps, 0);
    }
    r.log_singular_values.resize(o.singular_values_at.size());
  }
  bool wants_spectrum(int step) const { return !wanted[step].empty(); }
  int spectrum_size(int step) const { return std::min(widths[step], n0); }

  void record_spectrum(int step, const std::vector<double>& logs) {
    for (int i : wanted[step]) r.log_singular_values[i] = logs;
  }
  // Everything from `step` on is NaN (the product stopped being finite there).
  void poison_from(int step) {
    if (r.first_nonfinite_step < 0) r.first_nonfinite_step = step;
    for (int t = step; t <= r.steps; ++t) {
      if (o.norms) {
        r.log_spectral_norm[t - 1] = kNaN;
        r.log_frobenius_norm[t - 1] = kNaN;
      }
      if (wants_spectrum(t)) record_spectrum(t, std::vector<double>(spectrum_size(t), kNaN));
    }
    for (double& v : r.log_diag_sum) v = kNaN;
  }
  // The product is exactly zero from `step` on.
  void zero_from(int step) {
    for (int t = step; t <= r.steps; ++t) {
      if (o.norms) {
        r.log_spectral_norm[t - 1] = kNegInf;
        r.log_frobenius_norm[t - 1] = kNegInf;
        r.converged[t - 1] = 1;
      }
      if (wants_spectrum(t)) record_spectrum(t, std::vector<double>(spectrum_size(t), kNegInf));
    }
  }
  // Norms (and spectrum, if wanted) of a carried matrix M (rows x cols) that has the
  // singular values of P_step times exp(log_scale). The spectrum destroys `scratch`.
  template <typename TM>
  void measure(int step, const TM* m, int rows, int cols, double log_scale, double fro,
               detail::TopSingular& solver, bool jacobi, std::vector<double>& scratch) {
    if (o.norms) r.log_frobenius_norm[step - 1] = log_scale + std::log(fro);
    if (wants_spectrum(step)) {
      const int ns = std::min(rows, cols);
      scratch.assign(m, m + static_cast<std::size_t>(rows) * cols);
      std::vector<double> s(ns), logs(spectrum_size(step), kNegInf);
      const int info =
          jacobi ? blas::singular_values_jacobi(rows, cols, scratch.data(), cols, s.data())
                 : blas::singular_values(rows, cols, scratch.data(), cols, s.data());
      if (info != 0)
        throw std::runtime_error("singular values: LAPACK failed (info " +
                                 std::to_string(info) + ")");
      for (int i = 0; i < ns && i < static_cast<int>(logs.size()); ++i)
        logs[i] = log_scale + safe_log(s[i]);
      record_spectrum(step, logs);
      if (o.norms) {  // the SVD's value is the more exact one: use it here
        r.log_spectral_norm[step - 1] = logs[0];
        r.converged[step - 1] = 1;
      }
      return;
    }
    if (o.norms) {
      const auto top = solver.solve(m, cols, static_cast<std::uint64_t>(step));
      r.log_spectral_norm[step - 1] = log_scale + safe_log(top.sigma);
      r.solver_passes[step - 1] = top.passes;
      r.converged[step - 1] = top.converged ? 1 : 0;
    }
  }
};

detail::TopSingularOptions solver_options(const ProductOptions& o, int nt) {
  detail::TopSingularOptions so;
  so.n_threads = nt;
  so.tol = o.tol;
  so.seed = o.seed;
  return so;
}

// P_t^T carried as a (n_0 x n_t) block of T: row i is P_t e_i.
template <typename T>
void run_product(const std::vector<int>& widths, const BlockApply<T>& apply,
                 const ProductOptions& o, Recorder& rec, int nt) {
  const int steps = rec.r.steps, n0 = widths[0];
  int widest = 0;
  for (int w : widths) widest = std::max(widest, w);
  std::vector<T> cur(static_cast<std::size_t>(n0) * widest, T(0)), next(cur.size());
  for (int i = 0; i < n0; ++i) cur[static_cast<std::size_t>(i) * n0 + i] = T(1);
  detail::TopSingular solver(n0, solver_options(o, nt));
  std::vector<double> md;
  double log_scale = 0.0;
  const bool measuring = o.norms || !o.singular_values_at.empty();
  for (int t = 0; t < steps; ++t) {
    check_interrupt();
    const int n = widths[t + 1];
    const std::size_t size = static_cast<std::size_t>(n0) * n;
    apply(t, cur.data(), n0, next.data());
    cur.swap(next);
    const auto rs = rescale_pow2(cur.data(), size, nt);
    if (!std::isfinite(rs.norm)) {
      rec.poison_from(t + 1);
      return;
    }
    if (rs.norm == 0.0) {
      rec.zero_from(t + 1);
      return;
    }
    log_scale += rs.log_scale;
    if (!measuring) continue;
    rec.measure(t + 1, cur.data(), n0, n, log_scale, rs.norm, solver, false, md);
  }
}

// Benettin: the k frame vectors are the rows of q (k x n_t), i.e. the columns of
// the (n_t x k) column-major matrix LAPACK factors in place. u = (R_t ... R_1)^T
// (k x k_t, float64) is kept only when norms or spectra are wanted.
template <typename T>
void run_qr(const std::vector<int>& widths, const BlockApply<T>& apply, const ProductOptions& o,
            Recorder& rec, int nt) {
  const int steps = rec.r.steps, n0 = widths[0];
  const int k = o.k < 0 ? n0 : o.k;
  if (k < 1 || k > n0)
    throw std::invalid_argument("k: must lie in [1, " + std::to_string(n0) + "], got " +
                                std::to_string(k));
  int widest = 0;
  for (int w : widths) widest = std::max(widest, w);
  std::vector<T> q(static_cast<std::size_t>(k) * widest, T(0)), a(q.size()), tau(k);
  if (!o.initial_frame.empty()) {
    if (o.initial_frame.size() != static_cast<std::size_t>(k) * n0)
      throw std::invalid_argument("initial_frame: expected k x n_0 entries");
    for (std::size_t i = 0; i < o.initial_frame.size(); ++i)
      q[i] = static_cast<T>(o.initial_frame[i]);
  } else {
    for (int i = 0; i < k; ++i) q[static_cast<std::size_t>(i) * n0 + i] = T(1);
  }
  const bool tracking = o.norms || !o.singular_values_at.empty();
  std::vector<double> u, u_next, r_factor, md;
  if (tracking) {
    u.assign(static_cast<std::size_t>(k) * k, 0.0);
    for (int i = 0; i < k; ++i) u[static_cast<std::size_t>(i) * k + i] = 1.0;
  }
  detail::TopSingular solver(k, solver_options(o, nt));
  rec.r.log_diag_sum.assign(k, 0.0);
  double log_scale = 0.0;
  bool zero = false;
  int kq = k;
  for (int t = 0; t < steps; ++t) {
    check_interrupt();
    const int m = widths[t + 1];
    apply(t, q.data(), kq, a.data());
    const int kn = std::min(m, kq);
    if (blas::geqrf_colmajor(m, kq, a.data(), m, tau.data()) != 0)
      throw std::runtime_error("QR: LAPACK geqrf failed");
    r_factor.assign(static_cast<std::size_t>(kn) * kq, 0.0);
    bool finite = true;
    for (int j = 0; j < kq; ++j)
      for (int i = 0; i <= std::min(j, kn - 1); ++i) {
        const double v = static_cast<double>(a[static_cast<std::size_t>(j) * m + i]);
        r_factor[static_cast<std::size_t>(i) * kq + j] = v;
        finite = finite && std::isfinite(v);
      }
    if (!finite) {
      rec.poison_from(t + 1);
      return;
    }
    for (int i = 0; i < kn; ++i)
      rec.r.log_diag_sum[i] += safe_log(std::abs(r_factor[static_cast<std::size_t>(i) * kq + i]));
    if (blas::orgqr_colmajor(m, kn, a.data(), m, tau.data()) != 0)
      throw std::runtime_error("QR: LAPACK orgqr failed");
    q.swap(a);
    const int kprev = kq;
    kq = kn;
    if (!tracking || zero) continue;
    if (kn == kprev) {
      blas::trmm_right_upper(Trans::Yes, k, kn, 1.0, r_factor.data(), kprev, u.data(), kn);
    } else {
      u_next.assign(static_cast<std::size_t>(k) * kn, 0.0);
      blas::gemm(Trans::No, Trans::Yes, k, kn, kprev, 1.0, u.data(), kprev, r_factor.data(),
                 kprev, 0.0, u_next.data(), kn);
      u.swap(u_next);
    }
    const auto rs = rescale_pow2(u.data(), static_cast<std::size_t>(k) * kn, nt);
    if (rs.norm == 0.0) {  // the product vanished; the frame still evolves for Lyapunov
      zero = true;
      rec.zero_from(t + 1);
      continue;
    }
    log_scale += rs.log_scale;
    rec.measure(t + 1, u.data(), k, kn, log_scale, rs.norm, solver, true, md);
  }
}

}  // namespace

template <typename T>
ProductResult track_product(const std::vector<int>& widths, const BlockApply<T>& apply,
                            const ProductOptions& o) {
  if (widths.size() < 2) throw std::invalid_argument("depth: a product needs at least 1 step");
  for (int w : widths)
    if (w < 1) throw std::invalid_argument("widths: every width must be at least 1");
  if (!(o.tol > 0.0)) throw std::invalid_argument("tol: must be positive");
  if (o.method == ProductMethod::Product && o.k >= 0 && o.k != widths[0])
    throw std::invalid_argument("k: the product method carries all n_0 directions");
  ProductResult r;
  Recorder rec(o, r, widths);
  const int nt = resolve_threads(o.n_threads);
  // BLAS runs single-threaded and OpenMP parallelises fixed tiles (tiled_blas.hpp),
  // so the numbers do not depend on the thread count; the LAPACK steps (QR, SVD) are
  // single-threaded for the same reason.
  BlasThreadScope blas_scope(1);
  if (o.method == ProductMethod::Product)
    run_product<T>(widths, apply, o, rec, nt);
  else
    run_qr<T>(widths, apply, o, rec, nt);
  return r;
}

template ProductResult track_product<float>(const std::vector<int>&, const BlockApply<float>&,
                                            const ProductOptions&);
template ProductResult track_product<double>(const std::vector<int>&, const BlockApply<double>&,
                                             const ProductOptions&);

}  // namespace pyjac
