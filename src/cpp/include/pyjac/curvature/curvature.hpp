// The curvature of a chain's loss with respect to every weight and bias at one batch:
// exact Hessian-vector products (forward-over-reverse: the tangent of the forward pass,
// then the tangent of the backward pass, with each activation's second derivative and
// the norm layers' second-order terms) and generalised Gauss-Newton products J^T H_L J.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pyjac/chain/chain.hpp"
#include "pyjac/spectral/lanczos.hpp"

namespace pyjac {

enum class CurvatureKind : int { Hessian, GaussNewton };

// "hessian" or "gauss_newton".
CurvatureKind parse_curvature_kind(const std::string& name);

// Parameters are laid out as one flat vector [W_1, b_1, W_2, b_2, ...], each W_l
// row-major (widths[l], widths[l-1]): the order of torch's nn.Sequential of Linear
// layers.
template <typename T>
class ChainCurvature {
 public:
  // Copies the parameters (drawing them when the view has a source), x and the
  // targets, and runs the forward and backward pass once: every product afterwards is
  // one tangent forward pass and one backward pass over the kept tape. The arguments
  // are those of backprop().
  ChainCurvature(const ChainView<T>& chain, const T* x, int batch, const T* target,
                 const std::int64_t* labels, Loss loss, CurvatureKind kind, int n_threads);
  ~ChainCurvature();
  ChainCurvature(const ChainCurvature&) = delete;
  ChainCurvature& operator=(const ChainCurvature&) = delete;

  int depth() const;
  std::int64_t size() const;                   // parameters in all
  std::int64_t block_offset(int layer) const;  // where W_layer starts in the flat vector
  std::int64_t block_size(int layer) const;    // entries of W_layer and b_layer
  double loss() const;                         // NaN for a given grad_output

  // out = C v: C over every parameter when block < 0 (v, out: size() entries), else
  // layer `block`'s own diagonal block (block_size(block) entries). Not thread-safe:
  // one product at a time per object.
  void product(int block, const double* v, double* out);
  // The same as an operator for the Lanczos and trace routines.
  SymmetricProduct as_operator(int block);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// Bytes a ChainCurvature holds: the copied parameters and the tapes of both passes.
std::int64_t curvature_workspace_bytes(const std::vector<int>& widths, int batch,
                                       int dtype_size);

}  // namespace pyjac
