// Products of the recurrence's state Jacobians J_t = d s_t / d s_{t-1} along one
// trajectory: their norms (backward from T, by vector-Jacobian products of the whole
// identity) and the Lyapunov spectrum (forward, by Jacobian-vector products on a
// re-orthonormalised frame, the QR method).
//
// The loops here carry their own QR/scaling; they are kept apart from the BPTT code
// so that they can move to a shared Jacobian-product engine later: all they need
// from the recurrence is step_vjp / step_jvp below.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "common/haar.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/recurrent/recurrent.hpp"
#include "pyjac/common/rng.hpp"
#include "pyjac/common/threads.hpp"
#include "recurrent/recurrent_cells.hpp"
#include "recurrent/recurrent_tape.hpp"

namespace pyjac {
namespace {

using detail::make_rbuffer;
using detail::RBuffer;
using detail::RecurrentTape;
using detail::WeightProducts;
using detail::parallel_for;
using detail::worth_parallel;

// Rows of cotangents g (rows x S, S = state size) become g J_t: the backward step of
// BPTT with every row sharing the one trajectory (saved values read at row 0).
template <typename T>
struct StepMaps {
  const RecurrentView<T>& cv;
  const RecurrentTape<T>& tape;
  const WeightProducts<T>& wp;
  int nt;
  int n, G, S;
  RBuffer<T> dz, dhn, a;

  StepMaps(const RecurrentView<T>& cell, const RecurrentTape<T>& tp,
           const WeightProducts<T>& products, int threads, int rows)
      : cv(cell), tape(tp), wp(products), nt(threads), n(cell.width), G(cell.gates()),
        S(state_size(cell.cell, cell.width)) {
    dz = make_rbuffer<T>(static_cast<std::size_t>(rows) * G * n);
    a = make_rbuffer<T>(static_cast<std::size_t>(rows) * G * n);
    if (cell.cell == Cell::Gru) dhn = make_rbuffer<T>(static_cast<std::size_t>(rows) * n);
  }

  // m (rows x S) <- m J_t, in place.
  void vjp(int t, int rows, T* m) {
    const int Gn = G * n;
    const bool par = worth_parallel(static_cast<std::size_t>(rows) * Gn);
    switch (cv.cell) {
      case Cell::Lstm: {
        const T* gt = tape.gate_of(t);
        const T* cp = tape.c_at(t - 1);
        const T* tct = tape.tc_of(t);
        parallel_for(rows, nt, par, [&](int r) {
          T* mr = m + static_cast<std::size_t>(r) * S;
          detail::CellSquares unused;  // the Jacobian rows need no norm of dL/dc
          detail::lstm_vjp_row(gt, cp, tct, mr, mr + n, dz.get() + static_cast<std::size_t>(r) * Gn,
                               n, 0, n, unused);
        });
        wp.times_w(rows, dz.get(), Gn, 0, Gn, T(0), m, S);
        break;
      }
      case Cell::Gru: {
        const T* gt = tape.gate_of(t);
        const T* hnt = tape.hn_of(t);
        const T* hp = tape.h_at(t - 1);
        parallel_for(rows, nt, par, [&](int r) {
          T* mr = m + static_cast<std::size_t>(r) * S;
          detail::gru_vjp_row(gt, hnt, hp, mr, dz.get() + static_cast<std::size_t>(r) * Gn,
                              dhn.get() + static_cast<std::size_t>(r) * n, mr, n, 0, n);
        });
        wp.times_w(rows, dz.get(), Gn, 0, 2 * n, T(1), m, S);
        wp.times_w(rows, dhn.get(), n, 2 * n, Gn, T(1), m, S);
        break;
      }
      default: {
        const Activation act = detail::cell_activation(cv.cell);
        const T* ht = tape.h_at(t);
        parallel_for(rows, nt, par, [&](int r) {
          detail::plain_vjp_row(act, m + static_cast<std::size_t>(r) * S, ht,
                                dz.get() + static_cast<std::size_t>(r) * n, n);
        });
        wp.times_w(rows, dz.get(), n, 0, n, T(0), m, S);
      }
    }
  }

  // Rows of tangents v (rows x S) become (J_t v^T)^T, written to out.
  void jvp(int t, int rows, const T* v, T* out) {
    const int Gn = G * n;
    const bool par = worth_parallel(static_cast<std::size_t>(rows) * Gn);
    T* A = a.get();
    wp.times_wt(rows, v, S, T(0), A, Gn);  // W v_h for every row
    switch (cv.cell) {
      case Cell::Lstm: {
        const T* gt = tape.gate_of(t);
        const T* cp = tape.c_at(t - 1);
        const T* tct = tape.tc_of(t);
        parallel_for(rows, nt, par, [&](int r) {
          const std::size_t o = static_cast<std::size_t>(r) * S;
          detail::lstm_jvp_row(gt, cp, tct, A + static_cast<std::size_t>(r) * Gn, v + o + n,
                               out + o, out + o + n, n, 0, n);
        });
        break;
      }
      case Cell::Gru: {
        const T* gt = tape.gate_of(t);
        const T* hnt = tape.hn_of(t);
        const T* hp = tape.h_at(t - 1);
        parallel_for(rows, nt, par, [&](int r) {
          const std::size_t o = static_cast<std::size_t>(r) * S;
          detail::gru_jvp_row(gt, hnt, hp, A + static_cast<std::size_t>(r) * Gn, v + o, out + o,
                              n, 0, n);
        });
        break;
      }
      default: {
        const Activation act = detail::cell_activation(cv.cell);
        const T* ht = tape.h_at(t);
        parallel_for(rows, nt, par, [&](int r) {
          detail::plain_vjp_row(act, A + static_cast<std::size_t>(r) * n, ht,
                                out + static_cast<std::size_t>(r) * S, n);
        });
      }
    }
  }
};

template <typename T>
void check_single_trajectory(const RecurrentInputs<T>& in, const char* what) {
  if (in.batch != 1)
    throw std::invalid_argument(std::string("h0: ") + what +
                                " follows one trajectory: the batch must be 1, got " +
                                std::to_string(in.batch));
}

// Largest singular value of the (rows x rows) matrix m by power iteration on m m^T,
// warm-started from u, the left singular vector found for the previous, shorter
// product: as the product grows that vector converges (to a backward Lyapunov
// vector), so few iterations are needed. ||m m^T u|| / ||m^T u|| rises to sigma.
template <typename T>
double top_singular_value(const T* m, int rows, std::vector<T>& u, std::vector<T>& w,
                          double tol, int max_iter) {
  double sigma = 0.0;
  bool restarted = false;
  for (int it = 0; it < max_iter; ++it) {
    blas::gemv(blas::Trans::Yes, rows, rows, T(1), m, rows, u.data(), T(0), w.data());  // m^T u
    const double wn = detail::slab_norm(w.data(), w.size()).norm;
    if (!(wn > 0)) {
      // u fell into the null space of m^T: start again once from a flat vector.
      if (restarted) return 0.0;
      restarted = true;
      std::fill(u.begin(), u.end(), static_cast<T>(1.0 / std::sqrt(static_cast<double>(rows))));
      continue;
    }
    blas::gemv(blas::Trans::No, rows, rows, T(1), m, rows, w.data(), T(0), u.data());  // m w
    const double un = detail::slab_norm(u.data(), u.size()).norm;
    if (!(un > 0) || !std::isfinite(un)) return wn;
    for (T& x : u) x = static_cast<T>(x / un);
    const double prev = sigma;
    sigma = un / wn;
    if (it > 0 && std::abs(sigma - prev) <= tol * sigma) break;
  }
  return sigma;
}

}  // namespace

template <typename T>
RecurrentJacobianNorms recurrent_jacobian_norms(const RecurrentView<T>& cv,
                                                const RecurrentInputs<T>& in, int n_threads) {
  detail::validate_inputs(cv, in);
  check_single_trajectory(in, "jacobian_norms");
  const int nt = resolve_threads(n_threads);
  BlasThreadScope blas_scope(1);
  const int n = cv.width, S = state_size(cv.cell, n), steps = in.steps;
  const WeightProducts<T> wp(cv.W, cv.gates(), n, nt);
  RecurrentTape<T> tape;
  detail::recurrent_forward(cv, in, wp, tape, nt);

  RecurrentJacobianNorms r;
  r.first_nonfinite_step = tape.first_nonfinite_step;
  r.log_spectral_norm.assign(steps + 1, NAN);
  r.log_frobenius_norm.assign(steps + 1, NAN);
  r.log_spectral_norm[steps] = 0.0;
  r.log_frobenius_norm[steps] = 0.5 * std::log(static_cast<double>(S));

  const std::size_t SS = static_cast<std::size_t>(S) * S;
  RBuffer<T> m = make_rbuffer<T>(SS);
  std::fill(m.get(), m.get() + SS, T(0));
  for (int i = 0; i < S; ++i) m[static_cast<std::size_t>(i) * S + i] = T(1);
  StepMaps<T> maps(cv, tape, wp, nt, S);
  std::vector<T> u(S, static_cast<T>(1.0 / std::sqrt(static_cast<double>(S)))), w(S);
  const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-12;
  double log_scale = 0.0;
  for (int t = steps; t >= 1; --t) {
    check_interrupt();
    maps.vjp(t, S, m.get());
    const auto fn = detail::slab_norm(m.get(), SS);
    if (!fn.finite || !(fn.norm > 0)) {
      if (!fn.finite && r.first_nonfinite_step < 0) r.first_nonfinite_step = t - 1;
      // A zero product (dead ReLUs) stays zero: log norms of -inf from here on.
      if (fn.finite)
        for (int s = t - 1; s >= 0; --s)
          r.log_spectral_norm[s] = r.log_frobenius_norm[s] = -INFINITY;
      break;
    }
    // Keep the product at Frobenius norm 1 and carry the scale as a log, so that
    // neither vanishing nor exploding products under- or overflow.
    const T inv = static_cast<T>(1.0 / fn.norm);
    for (std::size_t i = 0; i < SS; ++i) m[i] *= inv;
    log_scale += std::log(fn.norm);
    r.log_frobenius_norm[t - 1] = log_scale;
    const double sigma = top_singular_value(m.get(), S, u, w, tol, 500);
    r.log_spectral_norm[t - 1] = log_scale + std::log(sigma);
  }
  return r;
}

template <typename T>
RecurrentLyapunov recurrent_lyapunov(const RecurrentView<T>& cv, const RecurrentInputs<T>& in,
                                     int k, std::uint64_t seed, int n_threads) {
  detail::validate_inputs(cv, in);
  check_single_trajectory(in, "lyapunov_exponents");
  const int n = cv.width, S = state_size(cv.cell, n), steps = in.steps;
  if (k < 1 || k > S)
    throw std::invalid_argument("k: must lie in [1, " + std::to_string(S) + "], got " +
                                std::to_string(k));
  const int nt = resolve_threads(n_threads);
  BlasThreadScope blas_scope(1);
  const WeightProducts<T> wp(cv.W, cv.gates(), n, nt);
  RecurrentTape<T> tape;
  detail::recurrent_forward(cv, in, wp, tape, nt);

  RecurrentLyapunov r;
  r.first_nonfinite_step = tape.first_nonfinite_step;
  // Tangent vectors as rows: v (k x S); the QR works on its transpose (S x k).
  const std::size_t kS = static_cast<std::size_t>(k) * S;
  RBuffer<T> v = make_rbuffer<T>(kS), next = make_rbuffer<T>(kS), qr = make_rbuffer<T>(kS);
  {
    Rng rng(seed, 0x4C59);  // a stream of its own, away from the weight streams
    std::vector<double> q;
    detail::haar_orthogonal(S, k, rng, q);  // (S x k), orthonormal columns
    for (int i = 0; i < S; ++i)
      for (int j = 0; j < k; ++j)
        v[static_cast<std::size_t>(j) * S + i] =
            static_cast<T>(q[static_cast<std::size_t>(i) * k + j]);
  }
  StepMaps<T> maps(cv, tape, wp, nt, k);
  std::vector<double> sums(k, 0.0);
  std::vector<T> tau(k);
  bool ok = true;
  for (int t = 1; t <= steps && ok; ++t) {
    check_interrupt();
    maps.jvp(t, k, v.get(), next.get());
    for (int j = 0; j < k; ++j)
      for (int i = 0; i < S; ++i)
        qr[static_cast<std::size_t>(i) * k + j] = next[static_cast<std::size_t>(j) * S + i];
    if (!detail::slab_norm(qr.get(), kS).finite) {
      if (r.first_nonfinite_step < 0) r.first_nonfinite_step = t;
      ok = false;
      break;
    }
    if (blas::geqrf(S, k, qr.get(), k, tau.data()) != 0)
      throw std::runtime_error("lyapunov_exponents: QR factorisation failed");
    for (int j = 0; j < k; ++j)
      sums[j] += std::log(std::abs(static_cast<double>(qr[static_cast<std::size_t>(j) * k + j])));
    if (blas::orgqr(S, k, qr.get(), k, tau.data()) != 0)
      throw std::runtime_error("lyapunov_exponents: forming Q failed");
    for (int j = 0; j < k; ++j)
      for (int i = 0; i < S; ++i)
        v[static_cast<std::size_t>(j) * S + i] = qr[static_cast<std::size_t>(i) * k + j];
  }
  r.exponents.assign(k, NAN);
  if (ok) {
    for (int j = 0; j < k; ++j) r.exponents[j] = sums[j] / steps;
    std::sort(r.exponents.begin(), r.exponents.end(), std::greater<double>());
  }
  return r;
}

template RecurrentJacobianNorms recurrent_jacobian_norms<float>(const RecurrentView<float>&,
                                                                const RecurrentInputs<float>&,
                                                                int);
template RecurrentJacobianNorms recurrent_jacobian_norms<double>(const RecurrentView<double>&,
                                                                 const RecurrentInputs<double>&,
                                                                 int);
template RecurrentLyapunov recurrent_lyapunov<float>(const RecurrentView<float>&,
                                                     const RecurrentInputs<float>&, int,
                                                     std::uint64_t, int);
template RecurrentLyapunov recurrent_lyapunov<double>(const RecurrentView<double>&,
                                                      const RecurrentInputs<double>&, int,
                                                      std::uint64_t, int);

}  // namespace pyjac
