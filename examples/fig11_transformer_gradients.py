"""Figure 11: gradient norm per block of transformer stacks at depth 6, 12, 24, 48:
post-LN vs pre-LN vs pre-LN without residual connections vs residual blocks without
norms (Xiong et al. 2020), and the seed texts' claim about 12 layers without residuals.

Recipe: pyjac.Transformer(depth, width, heads, norm="post" | "pre" | None,
residual=...).backprop(x, loss="mse", target=y).parameter_grad_norm and .grad_norm.
The code is ``pyjac.figures.fig11_transformer_gradients``; ``pyjac reproduce`` draws
the same figure.

Run: python examples/fig11_transformer_gradients.py [--quick] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig11_transformer_gradients"))
