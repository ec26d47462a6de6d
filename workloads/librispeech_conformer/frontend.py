"""The LibriSpeech feature frontend, SpecAugment and conv subsampling shared by the
Conformer and DeepSpeech models (AlgoPerf's JAX ``librispeech_preprocessor`` and
``spectrum_augmenter`` behaviour, re-derived from the spec sheet).

Frontend: audio [B, N] int16-valued floats with paddings [B, N] ->
log-mel features [B, T, 80] with frame paddings [B, T], T = (N - 401) // 160 + 1.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

SAMPLE_RATE = 16_000
FRAME_LENGTH = 401  # 25 ms + 1 sample consumed by pre-emphasis
FRAME_STEP = 160
FFT_LENGTH = 512
NUM_MEL = 80
LOWER_HZ, UPPER_HZ = 125.0, 7600.0
PREEMPHASIS = 0.97
LOG_FLOOR = 1e-5

# Per-bin normalisation constants of the reference (80 values each).
MEL_MEAN = np.array([
    -7.6047816276550293, -7.1206226348876953, -6.8864245414733887, -6.8705768585205078,
    -6.9667720794677734, -7.1084094047546387, -6.9528026580810547, -6.783994197845459,
    -6.6195521354675293, -6.4876265525817871, -6.4120659828186035, -6.394047737121582,
    -6.4244871139526367, -6.3993711471557617, -6.5158271789550781, -6.7137999534606934,
    -6.8476877212524414, -6.9885001182556152, -6.9221386909484863, -7.146148681640625,
    -7.2040400505065918, -7.0537552833557129, -7.3140382766723633, -7.1223249435424805,
    -7.30251407623291, -7.1212143898010254, -7.2425732612609863, -7.1730537414550781,
    -7.0979413986206055, -7.088747501373291, -6.9849910736083984, -6.8787732124328613,
    -6.7602753639221191, -6.6300945281982422, -6.5145769119262695, -6.4245057106018066,
    -6.356513500213623, -6.31787633895874, -6.2660770416259766, -6.2468328475952148,
    -6.2821526527404785, -6.1908388137817383, -6.2484354972839355, -6.1472640037536621,
    -6.0924725532531738, -6.0171003341674805, -5.9250402450561523, -5.8535833358764648,
    -5.8209109306335449, -5.8118929862976074, -5.80783748626709, -5.7714629173278809,
    -5.7453732490539551, -5.7705655097961426, -5.7765641212463379, -5.7831673622131348,
    -5.7954087257385254, -5.7994823455810547, -5.8023476600646973, -5.8047118186950684,
    -5.8168182373046875, -5.8844799995422363, -5.9727106094360352, -6.0444660186767578,
    -6.1284866333007812, -6.2257585525512695, -6.3157496452331543, -6.39061164855957,
    -6.4928598403930664, -6.5498456954956055, -6.6054320335388184, -6.6508378982543945,
    -6.66917610168457, -6.6726889610290527, -6.684234619140625, -6.6974577903747559,
    -6.75471830368042, -6.7949142456054688, -6.8634209632873535, -6.94186544418335,
], np.float32)
MEL_STD = np.array([
    3.4353282451629639, 3.5962932109832764, 3.7012472152709961, 3.7369205951690674,
    3.7535104751586914, 3.693629264831543, 3.6922497749328613, 3.7641522884368896,
    3.8419716358184814, 3.8999848365783691, 3.9294240474700928, 3.9317409992218018,
    3.9139585494995117, 3.9031598567962646, 3.8691999912261963, 3.8155081272125244,
    3.7644970417022705, 3.7099106311798096, 3.6965086460113525, 3.6003766059875488,
    3.5493226051330566, 3.5465121269226074, 3.45003604888916, 3.4712812900543213,
    3.4084610939025879, 3.4408135414123535, 3.4104881286621094, 3.4217638969421387,
    3.4312851428985596, 3.4199209213256836, 3.4305806159973145, 3.4382665157318115,
    3.4580366611480713, 3.4817991256713867, 3.4958710670471191, 3.5036792755126953,
    3.5047574043273926, 3.4988734722137451, 3.493056058883667, 3.4822943210601807,
    3.459430456161499, 3.4612770080566406, 3.4559063911437988, 3.4755423069000244,
    3.4971549510955811, 3.5326557159423828, 3.5705199241638184, 3.5920312404632568,
    3.596907377243042, 3.5913500785827637, 3.5865931510925293, 3.5826809406280518,
    3.5837743282318115, 3.5895791053771973, 3.5819313526153564, 3.5837869644165039,
    3.5861184597015381, 3.5889589786529541, 3.592214822769165, 3.5939455032348633,
    3.5856630802154541, 3.5884113311767578, 3.5921022891998291, 3.5870490074157715,
    3.5806570053100586, 3.5731067657470703, 3.5617532730102539, 3.54980731010437,
    3.5527374744415283, 3.5475366115570068, 3.5387849807739258, 3.5256178379058838,
    3.5031836032867432, 3.4922726154327393, 3.4879646301269531, 3.4725594520568848,
    3.4558389186859131, 3.4351828098297119, 3.4284293651580811, 3.4299170970916748,
], np.float32)


def hertz_to_mel(f: np.ndarray) -> np.ndarray:
    """HTK mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)


def mel_weight_matrix(
    num_mel: int = NUM_MEL, num_bins: int = FFT_LENGTH // 2 + 1, sample_rate: int = SAMPLE_RATE,
    lower_hz: float = LOWER_HZ, upper_hz: float = UPPER_HZ,
) -> np.ndarray:
    """[num_bins, num_mel] triangular HTK filters (``tf.signal.linear_to_mel_weight_matrix``).

    Bin frequencies linspace(0, sr/2, num_bins) with the DC row zeroed; band edges
    linspace(mel(lower), mel(upper), num_mel + 2); weight max(0, min(lower slope, upper slope)).
    """
    bins_mel = hertz_to_mel(np.linspace(0.0, sample_rate / 2, num_bins))[1:, None]
    edges = np.linspace(hertz_to_mel(lower_hz), hertz_to_mel(upper_hz), num_mel + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    lower_slope = (bins_mel - lower) / (centre - lower)
    upper_slope = (upper - bins_mel) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(lower_slope, upper_slope))
    return np.concatenate([np.zeros((1, num_mel)), weights]).astype(np.float32)


def num_frames(num_samples: int) -> int:
    return (num_samples - FRAME_LENGTH) // FRAME_STEP + 1


def log_mel(audio: jax.Array, paddings: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Audio [B, N] (16-bit sample values) -> normalised log-mel [B, T, 80], paddings [B, T]."""
    x = audio * (1.0 - paddings) / 32768.0
    t = num_frames(audio.shape[1])
    idx = np.arange(t)[:, None] * FRAME_STEP + np.arange(FRAME_LENGTH)[None, :]
    frames = x[:, idx]  # [B, T, 401]
    # A frame is padding only if all of its samples are.
    frame_pad = jnp.min(paddings[:, idx], axis=-1)
    # HTK pre-emphasis: y0 = (1 - 0.97) x0, yn = xn - 0.97 x(n-1), n < 400; x400 unused.
    emph = jnp.concatenate(
        [frames[..., :1] * (1.0 - PREEMPHASIS), frames[..., 1:400] - PREEMPHASIS * frames[..., :399]], axis=-1
    )
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann
    spec = jnp.fft.rfft(emph * window.astype(np.float32), n=FFT_LENGTH)
    power = jnp.real(spec) ** 2 + jnp.imag(spec) ** 2
    mel = jnp.einsum("btf,fm->btm", power, mel_weight_matrix())
    logmel = jnp.log(jnp.maximum(mel, LOG_FLOOR))
    return (logmel - MEL_MEAN) / MEL_STD, frame_pad


def spec_augment(
    rng: jax.Array, x: jax.Array, paddings: jax.Array, num_time_masks: int = 10, num_freq_masks: int = 2
) -> jax.Array:
    """Zero random time and frequency bands of x [B, T, F] (train only).

    Time mask k: w = min(int(0.05 len u1), max(int(0.05 len), 1)), start = int(u2 (len - w + 1)),
    with len the number of valid frames; then frequency masks with w = min(int(27 u1), F),
    start = int(u2 (F - w + 1)). Four uniform draws, in that order.
    """
    b, t, f = x.shape
    k1, k2, k3, k4 = jax.random.split(rng, 4)
    length = jnp.sum(1.0 - paddings, axis=1, keepdims=True)  # [B, 1]
    u1 = jax.random.uniform(k1, (b, num_time_masks))
    u2 = jax.random.uniform(k2, (b, num_time_masks))
    max_w = jnp.maximum(jnp.floor(0.05 * length), 1.0)
    w = jnp.minimum(jnp.floor(0.05 * length * u1), max_w)
    start = jnp.floor(u2 * (length - w + 1.0))
    pos = jnp.arange(t)[None, None, :]
    time_masked = jnp.any((pos >= start[..., None]) & (pos < (start + w)[..., None]), axis=1)  # [B, T]
    u3 = jax.random.uniform(k3, (b, num_freq_masks))
    u4 = jax.random.uniform(k4, (b, num_freq_masks))
    fw = jnp.minimum(jnp.floor(27.0 * u3), float(f))
    fstart = jnp.floor(u4 * (f - fw + 1.0))
    fpos = jnp.arange(f)[None, None, :]
    freq_masked = jnp.any((fpos >= fstart[..., None]) & (fpos < (fstart + fw)[..., None]), axis=1)  # [B, F]
    keep = (~time_masked)[:, :, None] & (~freq_masked)[:, None, :]
    return jnp.where(keep, x, 0.0)


class LayerNorm(nn.Module):
    """x_hat (1 + scale) + bias over the last axis, eps 1e-6, two-pass variance; scale and
    bias start at 0 (the reference's custom LayerNorm)."""

    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dim = x.shape[-1]
        scale = self.param("scale", nn.initializers.zeros, (dim,))
        bias = self.param("bias", nn.initializers.zeros, (dim,))
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * (1.0 + scale) + bias


class MaskedBatchNorm(nn.Module):
    """Batch norm over unpadded frames: y = (x - mu)(1 + gamma)/sqrt(var + 1e-3) + beta, masked.

    Statistics over (B, T) count only valid frames (count floored at 1, biased variance).
    With ``train`` the running averages move as r <- 0.999 r + 0.001 batch.
    """

    momentum: float = 0.999
    epsilon: float = 1e-3

    @nn.compact
    def __call__(self, x: jax.Array, paddings: jax.Array, train: bool) -> jax.Array:
        dim = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (dim,))
        ra_var = self.variable("batch_stats", "var", jnp.ones, (dim,))
        gamma = self.param("scale", nn.initializers.zeros, (dim,))
        beta = self.param("bias", nn.initializers.zeros, (dim,))
        mask = (1.0 - paddings)[..., None]
        if train:
            count = jnp.maximum(jnp.sum(mask), 1.0)
            mean = jnp.sum(x * mask, axis=(0, 1)) / count
            var = jnp.sum(jnp.square((x - mean) * mask), axis=(0, 1)) / count
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        else:
            mean, var = ra_mean.value, ra_var.value
        y = (x - mean) * (1.0 + gamma) * jax.lax.rsqrt(var + self.epsilon) + beta
        return y * mask


class ConvSubsampling(nn.Module):
    """Two 3x3 stride-2 convs (time x mel) with bias and activation, then Dense to ``dim``.

    [B, T, 80] -> [B, ceil(T/4), dim]; paddings are subsampled as pad[:, ::2] per stage and
    outputs zeroed on padded frames.
    """

    dim: int = 512
    channels: int = 512
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, paddings: jax.Array) -> tuple[jax.Array, jax.Array]:
        xavier = nn.initializers.xavier_uniform()
        x = x[..., None]
        for _ in range(2):
            x = nn.Conv(self.channels, (3, 3), strides=(2, 2), padding="SAME", kernel_init=xavier)(x)
            x = self.activation(x)
            paddings = paddings[:, ::2]
            x = x * (1.0 - paddings)[:, :, None, None]
        x = x.reshape(x.shape[0], x.shape[1], -1)  # [B, T', mel' * channels], mel-major
        return nn.Dense(self.dim, kernel_init=xavier)(x), paddings
