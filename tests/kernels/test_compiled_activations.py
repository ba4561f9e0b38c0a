"""--compiled_activations: bfloat16 LeakyReLU and ReLU trained as XLA
programs, computing what TensorFlow's kernels compute."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import (built_small, l1_losses,
                      networks_layers, step_ops, trained_once)
from pix2pix_tf.kernels import activations, convolutions


@pytest.fixture(autouse=True)
def without_a_gpu(monkeypatch):
  """The compiled activations as on a machine without a GPU, wherever the
  tests run."""
  monkeypatch.setattr(convolutions, "used_here", lambda: True)


LAYERS = {
    "leaky_relu": (lambda **kw: activations.LeakyReLU(0.2, **kw),
                   lambda **kw: keras.layers.LeakyReLU(0.2, **kw)),
    "relu": (lambda **kw: activations.ReLU(**kw),
             lambda **kw: keras.layers.ReLU(**kw)),
}


def inputs(dtype=tf.bfloat16, nan=True):
  """Values of both signs and of many magnitudes, exact zeros (where the
  gradient's rule decides), values that the slope rounds to zero, and a
  NaN (or a 1)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 7, 3)) * 10.0 ** rng.integers(-3, 3,
                                                            (2, 5, 7, 3))
  x[0, 0, :, 0] = 0.0
  x[0, 1, 0, :] = [1e-39, -1e-39, np.nan if nan else 1.0]
  return tf.cast(tf.constant(x, tf.float32), dtype)


def assert_same_bits(actual, desired):
  """Equal values, zeros of the same sign, NaN where NaN."""
  np.testing.assert_array_equal(actual, desired)
  np.testing.assert_array_equal(np.signbit(actual), np.signbit(desired))


def compiled_calls(ops):
  """The names of the functions `ops` call as XLA programs."""
  return [op.get_attr("f").name for op in ops
          if op.type.endswith("PartitionedCall") and
          op.node_def.attr["_XlaMustCompile"].b]


def activated_once(layer, x, training=True):
  """Output and input gradient of one call of `layer` on `x`, and the ops
  it ran. The gradient flowing in is `signed(3)`, which does not depend on
  x: where x is NaN the rule alone decides what comes out."""
  weights = tf.cast(signed(3), tf.float32)
  (y, dx), ops = trained_once(
      layer, x, training=training,
      loss=lambda x, y: tf.reduce_sum(tf.cast(y, tf.float32) * weights))
  return y, dx, ops


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_outputs_and_gradients_are_tensorflows_bit_for_bit(name):
  ours, theirs = LAYERS[name]
  x = inputs()
  y, dx, ops = activated_once(ours(dtype="mixed_bfloat16"), x)
  want_y, want_dx, want_ops = activated_once(
      theirs(dtype="mixed_bfloat16"), x)
  assert y.dtype == want_y.dtype and dx.dtype == want_dx.dtype
  assert_same_bits(y, want_y)
  assert_same_bits(dx, want_dx)
  # The output and the gradient each ran as one compiled program, in
  # place of TensorFlow's kernels.
  kernel = {"leaky_relu": "LeakyRelu", "relu": "Relu"}[name]
  called = compiled_calls(ops)
  assert [f.rsplit("_", 1)[0] for f in called] == [
      f"__inference__{name}", f"__inference__{name}_gradient"]
  types = {op.type for op in ops}
  assert kernel not in types and kernel + "Grad" not in types
  assert {kernel, kernel + "Grad"} <= {op.type for op in want_ops}


def signed(seed):
  """bfloat16 values of both signs, zeros of both signs among them."""
  values = np.random.default_rng(seed).normal(size=(2, 5, 7, 3))
  values[:, :2] = 0.0
  values[:, 0] *= -1.0
  return tf.constant(values.astype(np.float32), tf.bfloat16)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_second_derivatives_are_tensorflows(name):
  """The gradient penalty differentiates the activations' gradients: with
  respect to what made their input and to the gradient flowing in (whose
  signed zeros the second derivative keeps). Finite inputs: from a NaN
  input TensorFlow's second derivative carries NaN into the weights
  through a zero (NaN times the zero derivative of the gradient with
  respect to x), where these carry none; the loss is NaN either way."""
  ours, theirs = LAYERS[name]
  x, upstream, outer_upstream = inputs(nan=False), signed(1), signed(2)
  w = tf.cast(tf.linspace(-1.0, 2.0, 3), tf.bfloat16)

  def second(layer):

    @tf.function
    def call(x, w, upstream):
      with tf.GradientTape() as outer:
        outer.watch([w, upstream])
        with tf.GradientTape() as inner:
          inner.watch(x)
          y = layer(x * w, training=True)
        dx = inner.gradient(y, x, output_gradients=upstream)
      return [dx] + outer.gradient(dx, [w, upstream],
                                   output_gradients=outer_upstream)

    return [t.numpy() for t in call(x, w, upstream)], \
        call.get_concrete_function(x, w, upstream).graph

  ours_, graph = second(ours(dtype="mixed_bfloat16"))
  theirs_, _ = second(theirs(dtype="mixed_bfloat16"))
  assert compiled_calls(graph.get_operations())
  for a, b in zip(ours_, theirs_):
    assert_same_bits(a, b)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("case", ["float32", "inference", "off", "gpu"])
def test_elsewhere_keras_runs(name, case, monkeypatch):
  dtype = "float32" if case == "float32" else "mixed_bfloat16"
  ours, theirs = LAYERS[name]
  if case == "gpu":
    monkeypatch.setattr(convolutions, "used_here", lambda: False)
  training = case != "inference"
  x = inputs(tf.float32 if case == "float32" else tf.bfloat16)
  y, dx, ops = activated_once(ours(dtype=dtype, compiled=case != "off"), x,
                              training)
  want_y, want_dx, want_ops = activated_once(theirs(dtype=dtype), x,
                                             training)
  assert not compiled_calls(ops)
  assert [op.type for op in ops] == [op.type for op in want_ops]
  assert_same_bits(y, want_y)
  assert_same_bits(dx, want_dx)


@pytest.mark.parametrize("options", [dict(max_value=6.0),
                                     dict(threshold=0.5),
                                     dict(negative_slope=0.1)])
def test_relus_with_options_are_kerass(options):
  """A cap, a threshold or a slope: Keras's computation, not the compiled
  ReLU."""
  layer = activations.ReLU(dtype="mixed_bfloat16", **options)
  y, _, ops = activated_once(layer, inputs())
  assert not compiled_calls(ops)
  want_y, _, _ = activated_once(
      keras.layers.ReLU(dtype="mixed_bfloat16", **options), inputs())
  assert_same_bits(y, want_y)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.slow
def test_the_flag_chooses_the_kernels_and_training_lowers_the_loss(
    compiled, tmp_path):
  built, strategy = built_small(tmp_path, mixed_precision="bf16",
                                compiled_activations=compiled)
  found = networks_layers(built, (keras.layers.LeakyReLU, keras.layers.ReLU))
  assert found and all(
      isinstance(layer, (activations.LeakyReLU, activations.ReLU)) == compiled
      for layer in found)
  losses = l1_losses(built, strategy)
  assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
  graph = step_ops(built, strategy)
  kernels = {op.type for op in graph} & {"LeakyRelu", "LeakyReluGrad",
                                         "Relu", "ReluGrad"}
  assert bool(compiled_calls(graph)) == compiled
  assert kernels == (set() if compiled else
                     {"LeakyRelu", "LeakyReluGrad", "Relu", "ReluGrad"})


def test_saved_and_loaded_with_their_setting(tmp_path):
  inputs_ = keras.Input((8, 8, 3))
  x = activations.LeakyReLU(0.2, compiled=False, name="leaky")(inputs_)
  model = keras.Model(inputs_, activations.ReLU(name="relu")(x))
  model.save(str(tmp_path / "model.keras"))
  loaded = keras.models.load_model(str(tmp_path / "model.keras"))
  assert type(loaded.get_layer("leaky")) is activations.LeakyReLU
  assert type(loaded.get_layer("relu")) is activations.ReLU
  assert not loaded.get_layer("leaky").compiled
  assert loaded.get_layer("relu").compiled
