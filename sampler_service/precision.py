"""The arithmetic the sampler's forward passes use: float32 (the default: the images the trainer scored),
or bfloat16 on CPUs that have bfloat16 instructions (TensorFlow Serving's --mixed_precision=bfloat16).

bfloat16 is TensorFlow's oneDNN auto-mixed-precision rewrite: each loaded graph's matrix products and
convolutions run in bfloat16 (on AMX tiles where the CPU has them), accumulating in float32. The
loader freezes each model's weights into its graph, so that their casts to bfloat16 are folded once
instead of repeated on every pass (loading._frozen_forward). On an Intel Xeon with AMX it doubled the
generator's images/s at large batches (README, Sampler). Pixels move a little (on the demo model a
quarter of them by one level of 255, 1.5 % by more, none by more than 8) and FID does not change; an
image is still a pure function of seed, version and precision, and still the same alone or batched
(the load-time check of pass sizes runs in the chosen precision).
"""

from __future__ import annotations

import logging

from gan_common.cpu import cpu_flags

logger = logging.getLogger(__name__)

PRECISIONS = ("float32", "bfloat16")
# Either gives oneDNN native bfloat16 dot products; without them TensorFlow would emulate bfloat16,
# which is slower than float32.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


class PrecisionError(Exception):
    """The precision asked for cannot run fast on this machine."""


def bfloat16_supported(flags: set[str] | None = None) -> bool:
    """Whether the CPU (or the given flags) has native bfloat16 dot products."""
    return bool((cpu_flags() if flags is None else flags) & set(BFLOAT16_CPU_FLAGS))


def check_supported(precision: str, flags: set[str] | None = None) -> None:
    """Raises PrecisionError, with what to do instead, when `precision` would not pay off here."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "bfloat16" and not bfloat16_supported(flags):
        raise PrecisionError("--precision bfloat16 needs a CPU with bfloat16 instructions "
                             f"({' or '.join(BFLOAT16_CPU_FLAGS)}: Intel Xeon from Cooper Lake on, AMD "
                             "from Zen 4 on), and this one has neither; without them bfloat16 is "
                             "emulated and slower than float32. Use --precision float32")


def apply(precision: str) -> None:
    """Makes every model in this process compute in `precision` from its next call on, those loaded
    before included (measured: TensorFlow applies the rewrite when it runs a function). Process-wide, so
    one process serves at one precision; the server sets it before it loads a model, so that the
    load-time check of pass sizes runs in the precision it serves."""
    import tensorflow as tf

    if precision == "bfloat16" and tf.config.list_physical_devices("GPU"):
        logger.warning("--precision bfloat16 rewrites the operations that run on the CPU (oneDNN); on this "
                       "GPU the generator still computes in float32")
    tf.config.optimizer.set_experimental_options(
        {"auto_mixed_precision_onednn_bfloat16": precision == "bfloat16"})


def active() -> str:
    """The precision this process computes in now (what apply last set)."""
    import tensorflow as tf

    options = tf.config.optimizer.get_experimental_options()
    return "bfloat16" if options.get("auto_mixed_precision_onednn_bfloat16") else "float32"
