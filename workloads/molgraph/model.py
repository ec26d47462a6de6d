"""A graph network in the style of AlgoPerf's ogbg GNN (a jraph GraphNetwork), scaled down.

Per graph, linear encoders map node and edge features to ``latent_dim``; globals start as
zeros of width ``num_outputs``. Each of ``num_message_passing_steps`` steps (own weights,
no residuals) updates edges, then nodes, then globals, by concatenation and sum
aggregation:

    e'_k = MLP_e([e_k, v_{s(k)}, v_{r(k)}, g])
    v'_i = MLP_v([v_i, sum_{k: s(k)=i} e'_k, sum_{k: r(k)=i} e'_k, g])
    g'   = MLP_g([sum_i v'_i, sum_k e'_k, g])

Each MLP is ``(Dense -> LayerNorm -> activation -> Dropout)`` per hidden size, and the
logits are ``Dense(num_outputs)(g)`` after the last step. Differences from the reference:
padding nodes and edges are masked out of every sum, so a graph's logits do not depend on
its padding; the encoders are named ``node_encoder``/``edge_encoder`` (the reference's
``*_embedding`` names would make them EMBEDDING parameters; they are Dense kernels); the
default is 2 steps of width 64 rather than 5 of width 256.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from algoperf.layers import dropout


class ConcatDense(nn.Module):
    """``Dense(concat([f_1(x_1), f_2(x_2), ...]))`` without building the concatenation.

    One kernel ``W = [W_1; W_2; ...]`` (lecun-normal over the full fan-in, as a Dense on
    the concatenation) and bias ``b``: the output is ``b + sum_k f_k(x_k W_k)``, where each
    ``f_k`` is a linear broadcast or gather (None: identity). Projecting before gathering
    multiplies node features once per node rather than once per edge.
    """

    features: int

    @nn.compact
    def __call__(self, parts: Sequence[tuple[jax.Array, Callable | None]]) -> jax.Array:
        dims = [x.shape[-1] for x, _ in parts]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (sum(dims), self.features), jnp.float32
        )
        out = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        start = 0
        for (x, gather), dim in zip(parts, dims, strict=True):
            y = x @ kernel[start : start + dim]
            out = out + (y if gather is None else gather(y))
            start += dim
        return out


class Mlp(nn.Module):
    """(Dense -> LayerNorm -> activation -> Dropout) for each hidden size.

    The input is a list of (array, gather or None) parts, concatenated along features
    after gathering (see ``ConcatDense``).
    """

    hidden_dims: Sequence[int]
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(
        self,
        parts: Sequence[tuple[jax.Array, Callable | None]],
        dropout_rate: float | jax.Array,
        train: bool,
    ) -> jax.Array:
        x = parts
        for i, width in enumerate(self.hidden_dims):
            dense = (
                ConcatDense(width, name="Dense_0") if i == 0 else nn.Dense(width, name=f"Dense_{i}")
            )
            x = dense(parts) if i == 0 else dense(x)
            x = nn.LayerNorm(epsilon=1e-6)(x)
            x = self.activation(x)
            x = dropout(x, dropout_rate, self.make_rng("dropout") if train else None)
        return x


class GraphNetwork(nn.Module):
    """Message passing over a batch of padded graphs.

    Inputs (graph axis first): ``nodes`` [B, N, F], ``edges`` [B, E, Fe], ``senders`` and
    ``receivers`` [B, E] (node index within the graph), ``node_mask`` [B, N] and
    ``edge_mask`` [B, E]. The batch is flattened into one graph of B * N nodes (edge
    indices offset by graph), aggregated with ``segment_sum``. Returns logits [B, T].
    """

    num_outputs: int
    latent_dim: int = 64
    hidden_dims: Sequence[int] = (64,)
    num_message_passing_steps: int = 2
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(
        self,
        nodes: jax.Array,
        edges: jax.Array,
        senders: jax.Array,
        receivers: jax.Array,
        node_mask: jax.Array,
        edge_mask: jax.Array,
        train: bool,
        dropout_rate: float | jax.Array = 0.0,
    ) -> jax.Array:
        batch, max_nodes = node_mask.shape
        max_edges = edge_mask.shape[1]
        num_nodes = batch * max_nodes
        offsets = (jnp.arange(batch) * max_nodes)[:, None]
        send = (senders + offsets).reshape(-1)
        recv = (receivers + offsets).reshape(-1)
        edge_graph = jnp.repeat(jnp.arange(batch), max_edges)
        node_graph = jnp.repeat(jnp.arange(batch), max_nodes)
        nmask = node_mask.reshape(-1, 1).astype(jnp.float32)
        emask = edge_mask.reshape(-1, 1).astype(jnp.float32)

        def gather(index: jax.Array) -> Callable[[jax.Array], jax.Array]:
            return lambda y: y[index]

        def per_graph(x: jax.Array, size: int) -> jax.Array:
            return jnp.sum(x.reshape(batch, size, -1), axis=1)

        v = nn.Dense(self.latent_dim, name="node_encoder")(
            nodes.reshape(num_nodes, -1).astype(jnp.float32)
        )
        e = nn.Dense(self.latent_dim, name="edge_encoder")(
            edges.reshape(batch * max_edges, -1).astype(jnp.float32)
        )
        g = jnp.zeros((batch, self.num_outputs), jnp.float32)
        for _ in range(self.num_message_passing_steps):
            edge_in = [(e, None), (v, gather(send)), (v, gather(recv)), (g, gather(edge_graph))]
            e = Mlp(self.hidden_dims, self.activation)(edge_in, dropout_rate, train) * emask
            sent = jax.ops.segment_sum(e, send, num_nodes)
            received = jax.ops.segment_sum(e, recv, num_nodes)
            node_in = [(v, None), (sent, None), (received, None), (g, gather(node_graph))]
            v = Mlp(self.hidden_dims, self.activation)(node_in, dropout_rate, train) * nmask
            global_in = [
                (per_graph(v, max_nodes), None),
                (per_graph(e, max_edges), None),
                (g, None),
            ]
            g = Mlp(self.hidden_dims, self.activation)(global_in, dropout_rate, train)
        return nn.Dense(self.num_outputs, name="output")(g)
