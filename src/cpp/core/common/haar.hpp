// Haar-distributed orthogonal matrices, shared by the chain and recurrent inits.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "pyjac/common/blas.hpp"
#include "pyjac/common/rng.hpp"

namespace pyjac::detail {

// Haar-distributed matrix with orthonormal rows or columns (whichever are fewer):
// QR of a Gaussian matrix, then columns of Q multiplied by sign(diag R) so the
// distribution is exactly Haar (Mezzadri 2007).
inline void haar_orthogonal(int rows, int cols, Rng& rng, std::vector<double>& out) {
  const int tall = std::max(rows, cols), narrow = std::min(rows, cols);
  std::vector<double> a(static_cast<std::size_t>(tall) * narrow);
  for (double& v : a) v = rng.normal();
  std::vector<double> tau(narrow);
  if (blas::geqrf(tall, narrow, a.data(), narrow, tau.data()) != 0)
    throw std::runtime_error("orthogonal init: QR factorisation failed");
  std::vector<double> sign(narrow);
  for (int j = 0; j < narrow; ++j)
    sign[j] = a[static_cast<std::size_t>(j) * narrow + j] < 0 ? -1.0 : 1.0;
  if (blas::orgqr(tall, narrow, a.data(), narrow, tau.data()) != 0)
    throw std::runtime_error("orthogonal init: forming Q failed");
  out.assign(static_cast<std::size_t>(rows) * cols, 0.0);
  for (int i = 0; i < tall; ++i)
    for (int j = 0; j < narrow; ++j) {
      const double q = a[static_cast<std::size_t>(i) * narrow + j] * sign[j];
      // W is (rows x cols): Q itself when tall in rows, else its transpose.
      if (rows >= cols)
        out[static_cast<std::size_t>(i) * cols + j] = q;
      else
        out[static_cast<std::size_t>(j) * cols + i] = q;
    }
}

}  // namespace pyjac::detail
