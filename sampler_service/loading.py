"""Loads one published version into a callable generator and checks it with a warm-up pass."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from gan_common import images as image_utils
from gan_common import store as store_layout
from sampler_service import precision

logger = logging.getLogger(__name__)


class LoadError(Exception):
    """A version folder that cannot be served: unreadable, not a generator, or the wrong shape."""


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    version: int
    metadata: store_layout.ModelMetadata
    image_shape: tuple[int, int, int]
    forward: Callable[[np.ndarray, np.ndarray | None], np.ndarray]
    # Forward-pass sizes whose images are bit-identical to the smallest one's (see verified_pass_shapes).
    pass_shapes: tuple[int, ...] = (16,)

    @property
    def latent_dim(self) -> int:
        return self.metadata.latent_dim

    def generate(self, latents: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """uint8 images (N, H, W, C) for float32 latents (N, latent_dim) and, for a class-conditional
        model, int32 labels (N,)."""
        return image_utils.to_uint8(self.forward(latents, labels), self.metadata.output_range)


Forward = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]
Endpoint = Callable[["tf.Tensor | list[tf.Tensor]"], tf.Tensor]  # latents, or [latents, labels] -> images


def _inputs(latents: np.ndarray, labels: np.ndarray | None) -> tf.Tensor | list[tf.Tensor]:
    z = tf.constant(latents, dtype=tf.float32)
    return z if labels is None else [z, tf.constant(labels, dtype=tf.int32)]


def _images_output(outputs, path: Path) -> tf.Tensor:
    """The one tensor of an endpoint's result: a tensor, or a dict, list or tuple holding exactly one."""
    if isinstance(outputs, dict) and len(outputs) == 1:
        return next(iter(outputs.values()))
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        return outputs[0]
    if isinstance(outputs, (dict, list, tuple)):
        names = ", ".join(sorted(map(str, outputs))) if isinstance(outputs, dict) else f"{len(outputs)} tensors"
        raise LoadError(f"{path} returns several outputs ({names}); a generator must return one tensor of images")
    return outputs


def _saved_model_endpoint(path: Path) -> tuple[Endpoint, object]:
    """The artifact's generator call, and the object it needs kept alive."""
    loaded = tf.saved_model.load(str(path))
    if hasattr(loaded, "serve"):  # keras Model.export(), or a tf.Module with a serve function
        return (lambda inputs: _images_output(loaded.serve(inputs), path)), loaded
    if "serving_default" in loaded.signatures:  # tf.saved_model.save()
        signature = loaded.signatures["serving_default"]
        specs = signature.structured_input_signature[1]
        label_names = [name for name, spec in specs.items() if spec.dtype.is_integer]
        latent_names = [name for name in specs if name not in label_names]

        def endpoint(inputs: tf.Tensor | list[tf.Tensor]) -> tf.Tensor:
            named = {latent_names[0]: inputs} if not isinstance(inputs, list) else {
                latent_names[0]: inputs[0], label_names[0]: inputs[1]}
            return _images_output(signature(**named), path)

        return endpoint, loaded
    raise LoadError(f"{path} has neither a 'serve' endpoint nor a 'serving_default' signature")


def _keras_endpoint(path: Path) -> tuple[Endpoint, object]:
    import keras

    model = keras.saving.load_model(str(path), compile=False)
    return tf.function(lambda inputs: _images_output(model(inputs, training=False), path),
                       reduce_retracing=True), model


def artifact_endpoint(path: Path, artifact_format: str) -> tuple[Endpoint, object]:
    """A published artifact's generator call (latents, or [latents, labels] -> images) and the object it
    needs kept alive."""
    return (_saved_model_endpoint if artifact_format == "saved_model" else _keras_endpoint)(path)


def _variable_forward(endpoint: Endpoint, owner: object) -> Forward:
    def forward(latents: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        return np.asarray(endpoint(_inputs(latents, labels)))

    forward.keep_alive = owner  # type: ignore[attr-defined]  # the endpoint needs its object alive
    return forward


def _frozen_forward(endpoint: Endpoint, latent_dim: int, conditional: bool) -> Forward:
    """The endpoint traced once, for any batch size, with its weights turned into graph constants.

    For bfloat16: the auto-mixed-precision rewrite casts every float32 weight to bfloat16 on every
    pass, and with the weights as constants grappler folds those casts once, when the function is
    first run. Measured on the Intel Xeon with AMX, medians of three alternating rounds: DCGAN-k4 passes
    of 4, 8 and 16 rows 1.96, 2.35, 2.85 -> 1.22, 1.50, 1.92 ms; the tutorial DCGAN's of 16 rows 3.43 ->
    2.24 ms; the dense GAN's 1.38 -> 0.37 ms (and on a slower day, DCGAN-k4 256 rows 55 -> 47 ms). In float32
    there is nothing to fold (no faster, measured), and freezing may move the last bits of a result,
    so float32 keeps the variables and the images the trainer scored.
    """
    # No public TensorFlow 2 API freezes a function; this one is what the TFLite converter uses.
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    latents_spec = tf.TensorSpec([None, latent_dim], tf.float32, name="latent")
    if conditional:
        traced = tf.function(lambda z, labels: endpoint([z, labels]),
                             input_signature=[latents_spec, tf.TensorSpec([None], tf.int32, name="label")])
    else:
        traced = tf.function(lambda z: endpoint(z), input_signature=[latents_spec])
    frozen = convert_variables_to_constants_v2(traced.get_concrete_function())
    # Called flat: the frozen function's structured signature takes no arguments, so a plain call first
    # fails to bind, formats the latent tensor into the error it then catches, and only then runs the flat
    # call. That detour cost 0.5 ms of a 2.3 ms pass of 16 rows (DCGAN-k4), and 2.3 ms at 8 rows, whose
    # 800 numbers numpy prints in full: it had made small frozen passes look slower than unfrozen ones.
    if hasattr(frozen, "_call_flat"):
        def call(inputs: list[tf.Tensor]):
            return frozen._call_flat(inputs, frozen.captured_inputs)
    else:  # a TensorFlow without the private method: the plain call gives the same images
        def call(inputs: list[tf.Tensor]):
            return frozen(*inputs)

    def forward(latents: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        inputs = _inputs(latents, labels)
        outputs = call(inputs if isinstance(inputs, list) else [inputs])
        return np.asarray(outputs[0] if isinstance(outputs, (list, tuple)) else outputs)

    forward.keep_alive = frozen  # type: ignore[attr-defined]  # the weights live in it: the model can go
    return forward


def padded(latents: np.ndarray, labels: np.ndarray | None, rows: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Latents (and labels) filled with zero rows up to `rows`: padding that is computed and thrown away."""
    missing = rows - len(latents)
    if missing <= 0:
        return latents, labels
    return (np.concatenate([latents, np.zeros((missing, latents.shape[1]), latents.dtype)]),
            None if labels is None else np.concatenate([labels, np.zeros(missing, labels.dtype)]))


def candidate_pass_shapes(max_batch_size: int, base: int = 16) -> tuple[int, ...]:
    """16, 32, 64, ... up to max_batch_size, and max_batch_size itself."""
    base = min(base, max_batch_size)
    shapes = {max_batch_size}
    while base < max_batch_size:
        shapes.add(base)
        base *= 2
    return tuple(sorted(shapes))


def verified_pass_shapes(forward: Forward, latent_dim: int, num_classes: int,
                         candidates: tuple[int, ...]) -> tuple[int, ...]:
    """The candidates whose forward passes compute every row exactly as the smallest shape does.

    CPU kernels split a batch across threads and SIMD blocks by its size, so a row's float result may
    depend on the batch size, and on this machine's core count. For each candidate, probe latents
    computed at that size are compared bit for bit, in every row position, with the same latents computed
    at the smallest size. A kernel's arithmetic does not depend on the values, so equal floats here mean
    the same arithmetic for any latents: such shapes can be mixed freely and an image still never
    depends on its batch-mates or the load.
    """
    base, top = candidates[0], candidates[-1]
    latents = image_utils.latents_for_seed(2**31 - 1, top, latent_dim)
    labels = np.arange(top, dtype=np.int32) % num_classes if num_classes else None

    def run(rows: int, shape: int) -> np.ndarray:
        outputs = [forward(*padded(latents[start:start + shape], None if labels is None else
                                   labels[start:start + shape], shape)) for start in range(0, rows, shape)]
        return np.concatenate(outputs)[:rows]

    reference = run(top, base)
    return (base, *(shape for shape in candidates[1:] if np.array_equal(run(shape, shape), reference[:shape])))


def load_version(store: Path, version: int, max_batch_size: int = 16) -> LoadedModel:
    """Reads metadata, loads the artifact (frozen when this process computes in bfloat16), runs one warm-up
    image through it and finds which forward-pass sizes up to max_batch_size it may use."""
    try:
        metadata = store_layout.read_metadata(store, version)
    except store_layout.MetadataError as error:
        raise LoadError(str(error)) from None
    path = store_layout.version_dir(store, version) / metadata.artifact_path
    if not path.exists():
        raise LoadError(f"the artifact {path} named in metadata.json does not exist")
    try:
        endpoint, owner = artifact_endpoint(path, metadata.artifact_format)
        if precision.active() == "bfloat16":
            forward = _frozen_forward(endpoint, metadata.latent_dim, conditional=bool(metadata.num_classes))
        else:
            forward = _variable_forward(endpoint, owner)
        warm_labels = np.zeros(2, np.int32) if metadata.num_classes else None
        warm = forward(image_utils.latents_for_seed(0, 2, metadata.latent_dim), warm_labels)
    except LoadError:
        raise
    except Exception as error:  # TensorFlow raises many types for a broken file; all mean "cannot serve"
        raise LoadError(f"cannot load {path}: {type(error).__name__}: {str(error).splitlines()[0][:300]}") from None
    if warm.ndim != 4 or warm.shape[0] != 2 or warm.shape[-1] not in (1, 3):
        raise LoadError(f"{path} maps a latent to shape {warm.shape[1:]}, not an image (H, W, 1 or 3)")
    image_shape = tuple(int(x) for x in warm.shape[1:])
    if metadata.image_shape is not None and tuple(metadata.image_shape) != image_shape:
        raise LoadError(f"{path} makes images of shape {image_shape}, metadata.json says {metadata.image_shape}")
    candidates = candidate_pass_shapes(max_batch_size)
    shapes = verified_pass_shapes(forward, metadata.latent_dim, metadata.num_classes, candidates)
    if shapes != candidates:
        logger.info("version %d: forward passes of %s rows would change images on this machine; using %s",
                    version, ", ".join(str(s) for s in candidates if s not in shapes), ", ".join(map(str, shapes)))
    return LoadedModel(version, metadata, image_shape, forward, shapes)  # type: ignore[arg-type]
