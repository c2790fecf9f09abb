"""Figure 12: rank collapse. Pure attention (no skip connections, no MLP, no norms)
collapses the tokens to rank one doubly exponentially with depth (Dong et al. 2021);
skip connections prevent it; the query gradients of scaled and unscaled residual
stacks (Noci et al. 2022).

Recipe: pyjac.Transformer(depth, width, heads, mlp_ratio=0, residual=False,
norm=None).backprop(x).rank_one_distance, .token_similarity and .query_grad_norm.
The code is ``pyjac.figures.fig12_rank_collapse``; ``pyjac reproduce`` draws the same
figure.

Run: python examples/fig12_rank_collapse.py [--quick] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig12_rank_collapse"))
