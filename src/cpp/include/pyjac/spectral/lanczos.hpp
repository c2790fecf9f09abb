// Eigenvalues, traces and spectral densities of a symmetric operator known only through
// its products (a Hessian): Lanczos with full reorthogonalisation, the Hutchinson and
// Hutch++ trace estimators, and stochastic Lanczos quadrature. Vectors are float64
// whatever the operator computes in; results do not depend on the thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace pyjac {

// out = A v for a symmetric A of dimension n; v and out hold n doubles each.
using SymmetricProduct = std::function<void(const double* v, double* out)>;

enum class EigenWhich : int { Largest, Smallest, Both };

struct LanczosOptions {
  int k = 1;                    // eigenvalues wanted (at each end for Both)
  EigenWhich which = EigenWhich::Largest;
  int max_iter = 200;           // products with A at most (capped at n)
  // A Ritz pair counts as converged when its residual bound ||A y - theta y|| is at most
  // tol * max(|theta|, eps^(2/3) * max |theta|) (ARPACK's test).
  double tol = 1e-8;
  std::uint64_t seed = 0;       // the start vector's stream
  bool vectors = false;         // also form the eigenvectors
  int n_threads = -1;
};

struct LanczosResult {
  // Largest: descending; Smallest: ascending; Both: the k smallest then the k largest,
  // ascending. NaN throughout when a product was not finite.
  std::vector<double> values;
  std::vector<double> residuals;  // the residual bound of each value
  std::vector<double> vectors;    // values.size() x n, row-major, when asked for
  int iterations = 0;             // products with A
  bool converged = false;
};

LanczosResult lanczos_eigen(std::int64_t n, const SymmetricProduct& a, const LanczosOptions& o);

struct TraceOptions {
  int products = 100;    // the budget of products with A
  bool hutchpp = true;   // Hutch++ (Meyer et al. 2021) when the budget allows (>= 3)
  std::uint64_t seed = 0;
  int n_threads = -1;
};

struct TraceResult {
  double trace = 0.0;
  // Of the estimate: the sample standard deviation of the Rademacher terms over the
  // square root of their number (NaN with fewer than two); for Hutch++ that of its
  // residual part, the deflated part being exact.
  double standard_error = 0.0;
  int products = 0;
};

TraceResult trace_estimate(std::int64_t n, const SymmetricProduct& a, const TraceOptions& o);

struct QuadratureOptions {
  int vectors = 8;   // random start vectors
  int steps = 64;    // Lanczos steps per vector (capped at n)
  std::uint64_t seed = 0;
  int n_threads = -1;
};

// Stochastic Lanczos quadrature (Ghorbani et al. 2019): for each Rademacher start
// vector q, the eigenvalues (nodes) of its Lanczos tridiagonal matrix and the squared
// first components of their eigenvectors (weights, summing to 1), so that
// sum_i w_i f(theta_i) approximates q^T f(A) q / q^T q, exactly for polynomials of degree
// below 2 * steps. Rows of `steps` entries, one per vector; a vector whose Krylov space
// closed early pads its row with weight 0.
struct QuadratureResult {
  std::vector<double> nodes, weights;  // vectors x steps, row-major
  int vectors = 0, steps = 0;
};

QuadratureResult spectral_quadrature(std::int64_t n, const SymmetricProduct& a,
                                     const QuadratureOptions& o);

}  // namespace pyjac
