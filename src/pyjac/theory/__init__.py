"""Mean-field theory of signal and gradient propagation in deep random chains.

The chain is ``h_0 = x``, ``z_l = W_l h_{l-1} + b_l`` and ``h_l = phi(z_l)``, or with
``residual=True``, ``h_l = h_{l-1} + residual_scale * phi(z_l)``. Weight entries have
variance ``sigma_w2 / fan_in`` and bias entries variance ``sigma_b2``.

At infinite width every pre-activation ``z_l`` of a random chain is Gaussian with a
variance ``q_l`` that obeys the deterministic *length map* (Poole et al. 2016)::

    q_l = sigma_w2 * E_z[phi(sqrt(q_{l-1}) z)^2] + sigma_b2,     z ~ N(0, 1),

whose stable fixed point is ``q*``. Backpropagated gradients obey, under the usual
gradient-independence assumption, ``E||dL/dh_{l-1}||^2 = chi1 * E||dL/dh_l||^2`` with
(Schoenholz et al. 2017)::

    chi1 = sigma_w2 * E_z[phi'(sqrt(q*) z)^2].

``chi1 < 1`` is the ordered phase (vanishing gradients, depth scale
``-1/ln chi1``), ``chi1 > 1`` the chaotic phase (exploding gradients) and ``chi1 = 1`` the
critical line ("edge of chaos"). The squared singular values of the end-to-end
input-output Jacobian have mean ``chi1**L`` and a variance that free probability
gives in closed form (Pennington, Schoenholz & Ganguli 2017).

Conventions
-----------
* Activations are named: ``"linear"``, ``"sigmoid"``, ``"tanh"``, ``"relu"``,
  ``"leaky_relu"`` (negative slope 0.01), ``"gelu"`` (exact, ``x * Phi(x)``) and
  ``"silu"`` (``x * sigmoid(x)``). ``relu'(0)`` is taken as 0 (a null set anyway).
* ``q`` always means the variance of a pre-activation ``z`` (not of ``h``).
* Logs are natural logs.
* Nothing here is Monte Carlo. Gaussian expectations are deterministic quadratures
  (see :func:`gaussian_expectation`); piecewise-linear activations use closed forms.

This package uses numpy and SciPy and imports nothing else from pyjac. Its modules: ``_common``
(names, argument checks, the activations), ``quadrature`` (Gaussian expectations),
``mean_field`` (length map, q*, chi1, depth scales, critical lines, correlation map),
``gradients`` (predicted gradient norms), ``residual`` (the residual chains'
recursion), ``spectra`` (Jacobian spectrum moments) and ``bounds`` (textbook bounds).

References
----------
.. [1] B. Poole, S. Lahiri, M. Raghu, J. Sohl-Dickstein, S. Ganguli, "Exponential
   expressivity in deep neural networks through transient chaos", NeurIPS 2016.
.. [2] S. S. Schoenholz, J. Gilmer, S. Ganguli, J. Sohl-Dickstein, "Deep information
   propagation", ICLR 2017.
.. [3] J. Pennington, S. S. Schoenholz, S. Ganguli, "Resurrecting the sigmoid in deep
   learning through dynamical isometry: theory and practice", NeurIPS 2017.
.. [4] R. Pascanu, T. Mikolov, Y. Bengio, "On the difficulty of training recurrent neural
   networks", ICML 2013.
"""

from __future__ import annotations

from ._common import (
    ACTIVATIONS,
    INITS,
    LEAKY_RELU_SLOPE,
    activation_derivative,
    activation_fn,
    derivative_bound,
)
from .bounds import PascanuCondition, pascanu_condition, scalar_chain, sigmoid_bound
from .gradients import predicted_grad_norm, predicted_log_grad_norm
from .mean_field import (
    c_star,
    chi1,
    chi_c,
    correlation_depth_scale,
    correlation_map,
    critical_sigma_w2,
    depth_scale,
    length_map,
    q_star,
)
from .quadrature import gaussian_expectation
from .spectra import JacobianSpectrumMoments, jacobian_spectrum_moments

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "LEAKY_RELU_SLOPE",
    "JacobianSpectrumMoments",
    "PascanuCondition",
    "activation_derivative",
    "activation_fn",
    "c_star",
    "chi1",
    "chi_c",
    "correlation_depth_scale",
    "correlation_map",
    "critical_sigma_w2",
    "depth_scale",
    "derivative_bound",
    "gaussian_expectation",
    "jacobian_spectrum_moments",
    "length_map",
    "pascanu_condition",
    "predicted_grad_norm",
    "predicted_log_grad_norm",
    "q_star",
    "scalar_chain",
    "sigmoid_bound",
]
