"""Where a training step's time goes, and the plain Keras step it must match
(used by tools/benchmark.py).

`PlainStep` is the pix2pix step as the TensorFlow tutorial writes it: the
package's own generator and discriminator, two gradient tapes, Keras's
BinaryCrossentropy and Adam, one `tf.function`; no strategy, no metrics, no
loop. Its batch norm, convolutions and activations are the configuration's
(`fused_batch_norm`, `matmul_small_convs`, `compiled_activations`): the
tutorial's own, Keras's, with all false. It is the floor:
the package's step must not be slower. It takes the same update order,
precision and XLA setting as the configuration it is built from, so
that the two do the same arithmetic; with `fused_updates` it also takes the
package's fused Adam, so that the two differ only in the strategy, the
metrics and the loop.

`profile_step` times the parts of the package's step as separate compiled
functions: the generator's forward, one discriminator forward, the
backward passes, the two optimizer updates. What the whole step takes beyond
their sum (the input, the metrics, the loop, the host) is "everything
else".

`op_times` sums a TensorFlow profiler trace of whole steps by kind of op
(convolutions by direction, batch norm, activations, casts, the optimizer,
XLA's compiled programs, the rest):
where the time goes inside the parts, on a CPU (on a GPU the traced host
threads only launch the kernels).
"""

import dataclasses
import os
import statistics
import time
from typing import Callable, Dict, List, Optional, Tuple

import keras
import tensorflow as tf

try:  # The profiler's trace format, as this TensorFlow lays it out.
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
except ImportError:  # Elsewhere op_times finds nothing and says so ({}).
  xplane_pb2 = None

from pix2pix_tf import config as config_lib
from pix2pix_tf import kernels
from pix2pix_tf import models
from pix2pix_tf.training import losses
from pix2pix_tf.training import optimizers
from pix2pix_tf.training import precision
from pix2pix_tf.training import step as step_lib


class PlainStep:
  """The tutorial's step on the package's models: `step(input, target)`
  applies one update (alternating or simultaneous, as `config` says) and
  returns the generator's total loss. Its optimizers are Keras's Adam, as
  in the tutorial, with the reference's epsilon (the package's `Adam`, the
  same ops), or with `fused_updates` the fused one (`kernels`); its
  batch norm, convolutions and activations are `config`'s (Keras's with
  `fused_batch_norm`, `matmul_small_convs` and `compiled_activations`
  false)."""

  def __init__(self, config: config_lib.Config, fused_updates: bool = False):
    if precision.resolve_mixed_precision(config.run.mixed_precision) == "fp16":
      raise ValueError("The plain step runs in float32 or bfloat16; fp16 "
                       "needs loss scaling, which the tutorial does not do.")
    with precision.dtype_policy(config.run.mixed_precision):
      self.generator, self.discriminator, adam = kernels.for_training(
          config.replace(fused_updates=fused_updates),
          models.build_generator(config),
          models.build_discriminators(config), optimizers.Adam)
    # The objective's own list of terms: a term added later is refused too.
    terms = [t.name for t in losses.build_objective(config).generator]
    if (config.objective.gan_mode != "vanilla" or
        terms != [losses.GENERATOR_GAN, losses.GENERATOR_L1] or
        len(self.discriminator.discriminators) != 1):
      raise ValueError("The plain step is the paper's objective: "
                       "--gan_mode=vanilla, L1 only, one discriminator.")
    self.lambda_l1 = config.objective.lambda_l1
    self.bce = keras.losses.BinaryCrossentropy(from_logits=True)
    self.generator_optimizer = adam(config.optimisation.learning_rate,
                                    beta_1=config.optimisation.beta_1,
                                    beta_2=config.optimisation.beta_2)
    self.discriminator_optimizer = adam(config.optimisation.learning_rate,
                                        beta_1=config.optimisation.beta_1,
                                        beta_2=config.optimisation.beta_2)
    step = (self.alternating if config.objective.update_order == "alternating"
            else self.simultaneous)
    self.step = tf.function(step, jit_compile=config.run.jit_compile)

  def logits(self, input_image: tf.Tensor, candidate: tf.Tensor) -> tf.Tensor:
    """The discriminator's logits map, in float32."""
    outputs = self.discriminator([input_image, candidate], training=True)
    return tf.cast(outputs[0][0], tf.float32)

  def discriminator_loss(self, real: tf.Tensor, fake: tf.Tensor) -> tf.Tensor:
    """The paper's halved D loss."""
    return 0.5 * (self.bce(tf.ones_like(real), real) +
                  self.bce(tf.zeros_like(fake), fake))

  def generator_loss(self, fake: tf.Tensor, generated: tf.Tensor,
                     target: tf.Tensor) -> tf.Tensor:
    """Fool D, plus lambda x L1."""
    l1 = tf.reduce_mean(tf.abs(target - tf.cast(generated, tf.float32)))
    return self.bce(tf.ones_like(fake), fake) + self.lambda_l1 * l1

  def alternating(self, input_image: tf.Tensor,
                  target: tf.Tensor) -> tf.Tensor:
    """D step on G's output held fixed, then G step against the new D."""
    with tf.GradientTape() as gen_tape:
      generated = self.generator(input_image, training=True)
      with tf.GradientTape() as disc_tape:
        disc_loss = self.discriminator_loss(
            self.logits(input_image, target),
            self.logits(input_image, tf.stop_gradient(generated)))
      variables = self.discriminator.trainable_variables
      self.discriminator_optimizer.apply_gradients(
          zip(disc_tape.gradient(disc_loss, variables), variables))
      gen_loss = self.generator_loss(self.logits(input_image, generated),
                                     generated, target)
    variables = self.generator.trainable_variables
    self.generator_optimizer.apply_gradients(
        zip(gen_tape.gradient(gen_loss, variables), variables))
    return gen_loss

  def simultaneous(self, input_image: tf.Tensor,
                   target: tf.Tensor) -> tf.Tensor:
    """Both gradients from one forward pass (the tutorial's order)."""
    with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
      generated = self.generator(input_image, training=True)
      real = self.logits(input_image, target)
      fake = self.logits(input_image, generated)
      gen_loss = self.generator_loss(fake, generated, target)
      disc_loss = self.discriminator_loss(real, fake)
    for tape, loss, model, optimizer in (
        (gen_tape, gen_loss, self.generator, self.generator_optimizer),
        (disc_tape, disc_loss, self.discriminator,
         self.discriminator_optimizer)):
      variables = model.trainable_variables
      optimizer.apply_gradients(zip(tape.gradient(loss, variables),
                                    variables))
    return gen_loss


def call_seconds(call: Callable[[], object], repeats: int,
                 warmup: int = 0) -> List[float]:
  """The wall time of each of `repeats` calls of `call()` (which must block
  until done), after `warmup` untimed calls (tracing and compilation)."""
  for _ in range(warmup):
    call()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return times


def median_seconds(call: Callable[[], object], repeats: int,
                   warmup: int = 2) -> float:
  """The median of `call_seconds(call, repeats, warmup)`."""
  return statistics.median(call_seconds(call, repeats, warmup))


@dataclasses.dataclass
class Profile:
  """Seconds per step of each part of the update (see `profile_step`)."""
  generator_forward: float
  discriminator_forwards: float
  backward: float
  optimizer_updates: float
  everything_else: float
  step: float

  def parts(self) -> Dict[str, float]:
    """The parts, which add up to `step`."""
    return {name: value for name, value in dataclasses.asdict(self).items()
            if name != "step"}


def step_prefixes(train_step: step_lib.TrainStep, input_image: tf.Tensor,
                  target_image: tf.Tensor,
                  strategy: Optional[tf.distribute.Strategy] = None
                  ) -> Dict[str, Callable]:
  """The alternating update cut after each of its parts: each function
  runs the update up to and including the named part, so that the time of
  a part is the difference between two prefixes (each call's fixed costs
  cancel). The last prefix is the whole update. With `strategy` (the one
  the state was built under), each runs in its replica context."""
  state = train_step.state
  d_vars = state.discriminator.trainable_variables
  g_vars = state.generator.trainable_variables

  def done(tensors):
    # A scalar that needs one element of each of `tensors`: returning them
    # would time a copy to the host, and a constant under control
    # dependencies was pruned with the work it was to wait for.
    return tf.add_n([tf.cast(tf.reshape(t, [-1])[0], tf.float32)
                     for t in tensors])

  def run(last):
    with tf.GradientTape() as gen_tape:
      generated = train_step.generate(input_image)
      if last == "generator_forward":
        return done([generated])
      with gen_tape.stop_recording(), tf.GradientTape() as disc_tape:
        disc_loss = train_step.discriminator_losses(
            input_image, target_image, generated)[losses.DISCRIMINATOR_TOTAL]
      if last == "discriminator_forwards":
        return disc_loss
      with gen_tape.stop_recording():
        disc_gradients = disc_tape.gradient(disc_loss, d_vars)
      if last == "discriminator_backward":
        return done(disc_gradients)
      with gen_tape.stop_recording():
        train_step.apply(state.discriminator_optimizer, disc_gradients,
                         state.discriminator)
      if last == "discriminator_update":
        return state.discriminator_optimizer.iterations
      gen_loss = train_step.generator_losses(
          input_image, target_image, generated)[losses.GENERATOR_TOTAL]
      if last == "generator_objective":
        return gen_loss
    gen_gradients = gen_tape.gradient(gen_loss, g_vars)
    if last == "generator_backward":
      return done(gen_gradients)
    train_step.apply(state.generator_optimizer, gen_gradients,
                     state.generator)
    return state.generator_optimizer.iterations

  def prefix(name):
    inner = tf.function(lambda: run(name),
                        jit_compile=train_step.config.run.jit_compile)
    return inner if strategy is None else tf.function(
        lambda: strategy.experimental_local_results(strategy.run(inner))[0])

  return {name: prefix(name) for name in PREFIXES}


PREFIXES = ("generator_forward", "discriminator_forwards",
            "discriminator_backward", "discriminator_update",
            "generator_objective", "generator_backward", "generator_update")


def profile_step(train_step: step_lib.TrainStep,
                 make_whole_step: Callable[[], Callable[[], object]],
                 batch: Tuple[tf.Tensor, tf.Tensor], repeats: int,
                 strategy: Optional[tf.distribute.Strategy] = None
                 ) -> Profile:
  """Times the parts of `train_step`'s alternating update on `batch`, and
  then the whole step as training runs it (strategy, metrics, loop, input):
  `make_whole_step()` returns it, and is called only once the parts are
  timed, so that what it starts (an input pipeline's threads filling their
  buffers) runs beside the whole step only.

  Each part is the difference between two prefixes of the update (see
  `step_prefixes`): the generator's forward; the discriminator's forwards
  (the D step's real and generated pair, the G step's generated pair);
  the backward passes (D's gradients, G's gradients through D); the two
  optimizer updates. The prefixes are timed in turn, one call of each per
  round for `repeats` rounds, and each part is the median over the rounds
  of its differences within a round, so that a drift in the machine's
  speed reaches the two sides of a difference alike. Everything else: the
  whole step (median of `repeats` calls) less the four parts, i.e. what
  reading the next batch, the metrics, the step loop and the host add. A
  part can still come out slightly negative when it is within the timing
  noise.
  """
  if train_step.config.objective.update_order != "alternating":
    raise ValueError("The profile cuts the alternating update.")
  if repeats < 1:
    raise ValueError(f"The profile needs a round at least, not {repeats}.")
  prefixes = step_prefixes(train_step, *batch, strategy)
  calls = {name: (lambda f=f: tf.nest.map_structure(lambda t: t.numpy(),
                                                    f()))
           for name, f in prefixes.items()}
  for call in calls.values():  # Traced and warm.
    call_seconds(call, 0, warmup=2)
  rounds = []
  for _ in range(repeats):
    rounds.append(_parts({name: call_seconds(call, 1)[0]
                          for name, call in calls.items()}))
  parts = {name: statistics.median(r[name] for r in rounds)
           for name in rounds[0]}
  # Timed after the parts, so that a drift in between lands in everything
  # else; warmed up long enough for the input pipeline's buffers to fill.
  whole = median_seconds(make_whole_step(), repeats,
                         warmup=max(3, repeats))
  return Profile(**parts, everything_else=whole - sum(parts.values()),
                 step=whole)


def _parts(seconds: Dict[str, float]) -> Dict[str, float]:
  """The parts of the update from one time of each prefix."""
  part = lambda later, earlier: seconds[later] - seconds[earlier]  # noqa
  return dict(
      generator_forward=seconds["generator_forward"],
      discriminator_forwards=(
          part("discriminator_forwards", "generator_forward") +
          part("generator_objective", "discriminator_update")),
      backward=(part("discriminator_backward", "discriminator_forwards") +
                part("generator_backward", "generator_objective")),
      optimizer_updates=(
          part("discriminator_update", "discriminator_backward") +
          part("generator_update", "generator_backward")))


# The kinds `op_times` sums TensorFlow's ops into, by op type (oneDNN's
# kernels carry an _Mkl prefix) and, for convolutions, by direction.
OP_KINDS = ("convolution_forward", "convolution_backward_data",
            "convolution_backward_weights", "batch_norm", "activation",
            "cast", "optimizer", "compiled", "other")

# TensorFlow's activation kernels (and their gradients), by op type.
_ACTIVATIONS = ("Relu", "ReluGrad", "LeakyRelu", "LeakyReluGrad", "Tanh",
                "TanhGrad")

# An XLA program's run in a trace (`kernels.activations`, or a pass under
# --jit_compile): a span of its own on the thread that launched it, the
# program's wall time; it carries no op name.
_COMPILED_SPAN = "CpuExecutable::ExecuteAsyncOnStream"


def op_kind(name: str, op_type: str) -> str:
  """Which of `OP_KINDS` the op `name` of type `op_type` is."""
  backward = name.startswith("gradient_tape/")
  # The patch products and folds of `kernels.convolutions` go by their op
  # names; the patches of a gradient count with the weight gradient they
  # feed.
  if "weight_gradient" in name or "gradient_patches" in name:
    return "convolution_backward_weights"
  if "input_gradient" in name:
    return "convolution_backward_data"
  if ("patch_forward" in name or "transpose_forward" in name or
      "ExtractImagePatches" in op_type):
    return "convolution_forward"
  if "Conv2DBackpropFilter" in op_type:
    return "convolution_backward_weights"
  if "Conv2D" in op_type:  # A transposed convolution's forward is a
    # Conv2DBackpropInput outside the tape; its backward is a Conv2D.
    return ("convolution_backward_data" if backward else
            "convolution_forward")
  if "BatchNorm" in op_type:
    return "batch_norm"
  if op_type.replace("_MklNative", "").replace("_Mkl", "") in _ACTIVATIONS:
    return "activation"
  if op_type == "Cast":
    return "cast"
  if "Apply" in op_type or "adam" in name.lower():
    return "optimizer"
  return "other"


def op_times(call: Callable[[], object], steps: int,
             logdir: str) -> Dict[str, float]:
  """Seconds per call of `call()` (one blocking training step) spent in
  each of `OP_KINDS`, summed over the threads that run ops (with
  inter-op parallelism they can exceed the step's wall time), from a
  TensorFlow profiler trace of `steps` calls written under `logdir` (a
  fresh folder: every trace under it is summed). CPU ops only. The
  trace's event names are "<op name>:<op type>" on its tf_Compute lines,
  and XLA's programs (kind "compiled") are spans named `_COMPILED_SPAN`
  there; an empty dict where the trace holds none (another TensorFlow
  layout)."""
  call()  # Traced and warm before the profiler starts.
  tf.profiler.experimental.start(logdir)
  try:
    for _ in range(steps):
      call()
  finally:
    tf.profiler.experimental.stop()
  totals = _trace_totals(logdir)
  return {kind: totals.get(kind, 0.0) / steps for kind in OP_KINDS
          } if totals else {}


def _trace_totals(logdir: str) -> Dict[str, float]:
  """Seconds of op events per kind in the traces under `logdir`."""
  totals = {}
  if xplane_pb2 is None:
    return totals
  for root, _, names in os.walk(logdir):
    for name in (n for n in names if n.endswith(".xplane.pb")):
      space = xplane_pb2.XSpace()
      with open(os.path.join(root, name), "rb") as f:
        space.ParseFromString(f.read())
      for plane in space.planes:
        for event in (event for line in plane.lines
                      if line.name.startswith("tf_Compute")
                      for event in line.events):
          label = plane.event_metadata[event.metadata_id].name
          op, _, op_type = label.rpartition(":")
          kind = ("compiled" if label == _COMPILED_SPAN else
                  # Not an executor's own span.
                  op_kind(op, op_type) if op and "::" not in label else
                  None)
          if kind:
            totals[kind] = totals.get(kind, 0.0) + event.duration_ps / 1e12
  return totals
