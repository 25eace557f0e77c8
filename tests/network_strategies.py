"""Hypothesis strategies that draw small random tensor networks and an output for them."""

import string

from hypothesis import strategies as st

from tensorpoly_tn.network import TensorNetwork


@st.composite
def random_networks(draw, hyperedges=False):
    """Draw a network of 2 to 4 tensors over up to 6 indices, and output indices in some order.

    Without ``hyperedges`` each index sits on at most two tensors (sizes 1 to 4) and the output
    keeps some of the open indices. With ``hyperedges`` an index may sit on every tensor (sizes 1
    to 3), and the output keeps some of all the indices.
    """
    n_tensors = draw(st.integers(2, 4))
    names = list(string.ascii_lowercase[:6])
    sizes = {name: draw(st.integers(1, 3 if hyperedges else 4)) for name in names}
    max_owners = n_tensors if hyperedges else 2
    indices = [[] for _ in range(n_tensors)]
    for name in names:
        owners = draw(st.lists(st.integers(0, n_tensors - 1), min_size=1, max_size=max_owners, unique=True))
        for owner in owners:
            indices[owner].append(f"ix_{name}")
    net = TensorNetwork(hyper_indices=[f"ix_{name}" for name in names] if hyperedges else ())
    for position, owned in enumerate(indices):
        role = "input" if position == 0 else "parameter"
        net.add(f"t{position}", owned, [sizes[index[-1]] for index in owned], role=role,
                group=draw(st.sampled_from([None, "g"])))
    if hyperedges:
        candidates = list(dict.fromkeys(index for owned in indices for index in owned))
    else:
        candidates = list(net.default_output())
    output = draw(st.permutations(candidates))
    keep = draw(st.integers(0, len(output)))
    return net, tuple(output[:keep])
