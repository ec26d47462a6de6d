"""The shared dropout: inverted scaling, traced rates, identity at evaluation."""

import jax
import jax.numpy as jnp
import numpy as np

from algoperf.layers import dropout


def test_dropout_keeps_the_mean_and_zeroes_about_rate_of_the_entries():
    x = jnp.ones((200, 500))
    y = dropout(x, 0.25, jax.random.key(0))
    kept = np.asarray(y) != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.75, rtol=1e-6)
    assert abs(float(y.mean()) - 1.0) < 0.02


def test_traced_rate_drops_and_traced_zero_is_the_identity():
    x = jnp.arange(1.0, 1001.0)
    step = jax.jit(lambda x, rate, rng: dropout(x, rate, rng))
    np.testing.assert_array_equal(step(x, 0.0, jax.random.key(1)), x)
    dropped = np.asarray(step(x, 0.5, jax.random.key(1)))
    assert 400 < (dropped == 0).sum() < 600
    # The same rng gives the same mask, a literal rate or a traced one.
    np.testing.assert_array_equal(dropped, dropout(x, 0.5, jax.random.key(1)))


def test_no_rng_means_evaluation_and_is_the_identity():
    x = jnp.arange(10.0)
    assert dropout(x, 0.9, None) is x


def test_broadcast_dims_share_one_draw_per_channel():
    x = jnp.ones((4, 8, 8, 16))
    y = np.asarray(dropout(x, 0.5, jax.random.key(2), broadcast_dims=(1, 2)))
    # Each (example, channel) is kept or dropped whole across H and W.
    per_channel = y.reshape(4, 64, 16)
    assert np.all(per_channel == per_channel[:, :1, :])
    assert 0 < (per_channel[:, 0, :] == 0).sum() < 64
