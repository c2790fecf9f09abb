// Elementwise activations and their derivatives, inline because they sit in the
// innermost loops of every kernel.
#pragma once

#include <cmath>
#include <type_traits>

#include "pyjac/common/fast_math.hpp"
#include "pyjac/common/types.hpp"

namespace pyjac {

template <typename T>
struct ActivationValue {
  T value;
  T derivative;
};

template <typename T>
inline ActivationValue<T> activate(Activation a, T u) {
  switch (a) {
    case Activation::Linear:
      return {u, T(1)};
    case Activation::Sigmoid: {
      // Written to avoid exp overflow for large |u|.
      const T e = detail::exp_nonpositive(-std::abs(u));
      const T s = u >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
      return {s, s * (T(1) - s)};
    }
    case Activation::Tanh: {
      const T t = detail::tanh_fast(u);
      return {t, T(1) - t * t};
    }
    case Activation::Relu:
      return {u < T(0) ? T(0) : u, u > T(0) ? T(1) : T(0)};  // NaN stays NaN, as in PyTorch
    case Activation::LeakyRelu: {
      const T slope = T(kLeakySlope);
      return {u < T(0) ? slope * u : u, u > T(0) ? T(1) : slope};
    }
    case Activation::Gelu: {
      // Exact GELU, u * Phi(u); PyTorch's default (approximate="none").
      const T cdf = T(0.5) * std::erfc(-u * T(0.70710678118654752440));
      const T pdf = T(0.39894228040143267794) * detail::exp_nonpositive(T(-0.5) * u * u);
      return {u * cdf, cdf + u * pdf};
    }
    case Activation::Silu: {
      const T e = detail::exp_nonpositive(-std::abs(u));
      const T s = u >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
      return {u * s, s * (T(1) + u * (T(1) - s))};
    }
  }
  return {u, T(1)};
}

// phi''(u), for curvature (Hessian-vector products). Piecewise-linear activations
// have phi'' = 0 wherever it exists, as automatic differentiation takes it.
template <typename T>
inline T second_derivative(Activation a, T u) {
  switch (a) {
    case Activation::Sigmoid: {
      const T s = activate(a, u).value;
      return s * (T(1) - s) * (T(1) - T(2) * s);
    }
    case Activation::Tanh: {
      const T t = detail::tanh_fast(u);
      return T(-2) * t * (T(1) - t * t);
    }
    case Activation::Gelu: {
      // d/du (Phi + u phi) = 2 phi + u phi' = phi (2 - u^2).
      const T pdf = T(0.39894228040143267794) * detail::exp_nonpositive(T(-0.5) * u * u);
      return pdf * (T(2) - u * u);
    }
    case Activation::Silu: {
      const T e = detail::exp_nonpositive(-std::abs(u));
      const T s = u >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
      return s * (T(1) - s) * (T(2) + u * (T(1) - T(2) * s));
    }
    default:
      return T(0);
  }
}

// The same with the activation fixed at compile time: the hot loops call this one, so
// only the chosen formula is inlined into them.
template <Activation A, typename T>
inline ActivationValue<T> activate(T u) {
  if constexpr (A == Activation::Linear) {
    return {u, T(1)};
  } else if constexpr (A == Activation::Relu) {
    return {u < T(0) ? T(0) : u, u > T(0) ? T(1) : T(0)};
  } else if constexpr (A == Activation::LeakyRelu) {
    return {u < T(0) ? T(kLeakySlope) * u : u, u > T(0) ? T(1) : T(kLeakySlope)};
  } else {
    return activate(A, u);
  }
}

template <Activation A>
using ActivationTag = std::integral_constant<Activation, A>;

// Calls f(ActivationTag<a>{}) so that loops inside f see the activation as a constant:
// the per-element switch folds away and the loop can vectorise.
template <typename F>
decltype(auto) dispatch_activation(Activation a, F&& f) {
  switch (a) {
    case Activation::Sigmoid:
      return f(ActivationTag<Activation::Sigmoid>{});
    case Activation::Tanh:
      return f(ActivationTag<Activation::Tanh>{});
    case Activation::Relu:
      return f(ActivationTag<Activation::Relu>{});
    case Activation::LeakyRelu:
      return f(ActivationTag<Activation::LeakyRelu>{});
    case Activation::Gelu:
      return f(ActivationTag<Activation::Gelu>{});
    case Activation::Silu:
      return f(ActivationTag<Activation::Silu>{});
    case Activation::Linear:
      break;
  }
  return f(ActivationTag<Activation::Linear>{});
}

// True when phi'(u) can be read off phi(u) alone, so the forward pass need not
// keep the pre-activations (halves the memory of plain chains).
constexpr bool derivative_from_output(Activation a) {
  return a == Activation::Linear || a == Activation::Sigmoid || a == Activation::Tanh ||
         a == Activation::Relu || a == Activation::LeakyRelu;
}

// phi'(u) from h = phi(u), valid when derivative_from_output(a).
template <typename T>
inline T derivative_of_output(Activation a, T h) {
  switch (a) {
    case Activation::Linear:
      return T(1);
    case Activation::Sigmoid:
      return h * (T(1) - h);
    case Activation::Tanh:
      return T(1) - h * h;
    case Activation::Relu:
      return h > T(0) ? T(1) : T(0);
    case Activation::LeakyRelu:
      return h > T(0) ? T(1) : T(kLeakySlope);
    default:
      return T(0);  // unreachable: callers check derivative_from_output first
  }
}

// Largest value of |phi'|: saturation is measured against it.
inline double max_derivative(Activation a) {
  switch (a) {
    case Activation::Sigmoid:
      return 0.25;
    case Activation::Gelu:
      return 1.1289;  // attained at u = sqrt(2)
    case Activation::Silu:
      return 1.0998;  // attained at u ~ 2.3994
    default:
      return 1.0;
  }
}

// Saturating activations (bounded output): a unit counts as saturated when its
// derivative is below this fraction of max_derivative.
inline constexpr double kSaturationFraction = 0.05;
constexpr bool is_saturating(Activation a) {
  return a == Activation::Sigmoid || a == Activation::Tanh;
}

}  // namespace pyjac
