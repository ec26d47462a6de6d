"""AlgoPerf's ogbg GNN (a jraph ``GraphNetwork``) in Flax, without a jraph dependency.

Graphs arrive batched as one big graph (``GraphsTuple``: node, edge and per-graph counts,
global sender/receiver indices). Node and edge features are mapped by plain Dense layers
(``node_embedding``, ``edge_embedding``; raw integer codes, no embedding tables); globals
start as zeros of width ``num_outputs``. Each of ``num_message_passing_steps`` steps has its
own weights and no residual:

    e'_k = MLP_e([e_k, v_{s(k)}, v_{r(k)}, g_{graph(k)}])
    v'_i = MLP_v([v_i, sum_{k: s(k)=i} e'_k, sum_{k: r(k)=i} e'_k, g_{graph(i)}])
    g'_j = MLP_g([sum_{i in j} v'_i, sum_{k in j} e'_k, g_j])

with each MLP ``(Dense -> LayerNorm(eps 1e-6) -> activation -> Dropout)`` per hidden size,
then ``logits = Dense(num_outputs)(g)``. As in the reference, padding nodes/edges/graphs
take part in message passing (they are only masked in the loss and metrics), so the Dense
and LayerNorm layers are auto-named ``Dense_i``/``LayerNorm_i`` in creation order: edge,
node, global MLP per step, then the readout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from algoperf.layers import dropout


class GraphsTuple(NamedTuple):
    """A batch of graphs as one graph, with jraph's field names (a JAX pytree).

    ``nodes`` [N, 9], ``edges`` [E, 3], ``senders``/``receivers`` [E] (global node
    indices), ``n_node``/``n_edge`` [G] (per-graph counts summing to N and E),
    ``globals`` unused by the model (it starts from zeros).
    """

    nodes: jax.Array
    edges: jax.Array
    senders: jax.Array
    receivers: jax.Array
    n_node: jax.Array
    n_edge: jax.Array
    globals: jax.Array | None = None



class GNN(nn.Module):
    """The ogbg graph network; returns per-graph logits [G, num_outputs]."""

    num_outputs: int = 128
    latent_dim: int = 256
    hidden_dims: Sequence[int] = (256,)
    num_message_passing_steps: int = 5
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    def _mlp(self, x: jax.Array, dropout_rate: float | jax.Array, train: bool) -> jax.Array:
        # Called inside the compact __call__: the layers are named in the parent's scope.
        for width in self.hidden_dims:
            x = nn.Dense(width)(x)
            x = nn.LayerNorm(epsilon=1e-6)(x)
            x = self.activation(x)
            x = dropout(x, dropout_rate, self.make_rng("dropout") if train else None)
        return x

    @nn.compact
    def __call__(
        self, graph: GraphsTuple, train: bool, dropout_rate: float | jax.Array = 0.1
    ) -> jax.Array:
        num_nodes = graph.nodes.shape[0]
        num_edges = graph.edges.shape[0]
        num_graphs = graph.n_node.shape[0]
        node_graph = jnp.repeat(
            jnp.arange(num_graphs), graph.n_node, total_repeat_length=num_nodes
        )
        edge_graph = jnp.repeat(
            jnp.arange(num_graphs), graph.n_edge, total_repeat_length=num_edges
        )
        v = nn.Dense(self.latent_dim, name="node_embedding")(graph.nodes.astype(jnp.float32))
        e = nn.Dense(self.latent_dim, name="edge_embedding")(graph.edges.astype(jnp.float32))
        g = jnp.zeros((num_graphs, self.num_outputs), jnp.float32)
        for _ in range(self.num_message_passing_steps):
            edge_in = jnp.concatenate(
                [e, v[graph.senders], v[graph.receivers], g[edge_graph]], axis=-1
            )
            e = self._mlp(edge_in, dropout_rate, train)
            sent = jax.ops.segment_sum(e, graph.senders, num_nodes)
            received = jax.ops.segment_sum(e, graph.receivers, num_nodes)
            v = self._mlp(
                jnp.concatenate([v, sent, received, g[node_graph]], axis=-1), dropout_rate, train
            )
            node_sum = jax.ops.segment_sum(v, node_graph, num_graphs)
            edge_sum = jax.ops.segment_sum(e, edge_graph, num_graphs)
            g = self._mlp(jnp.concatenate([node_sum, edge_sum, g], axis=-1), dropout_rate, train)
        return nn.Dense(self.num_outputs)(g)


def dummy_graph() -> GraphsTuple:
    """The 1-node, 1-edge graph the reference initialises on."""
    return GraphsTuple(
        nodes=jnp.ones((1, 9)),
        edges=jnp.ones((1, 3)),
        senders=jnp.zeros((1,), jnp.int32),
        receivers=jnp.zeros((1,), jnp.int32),
        n_node=jnp.ones((1,), jnp.int32),
        n_edge=jnp.ones((1,), jnp.int32),
    )
