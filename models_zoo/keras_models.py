"""The Keras zoo. Seeded initialisers (no global RNG touched), He-normal so outputs depend on inputs, and
every layer named, so weight names do not depend on how many models the process built before."""

from __future__ import annotations


import numpy as np

from models_zoo import ZooBuild


def _keras():
    from forgeml.runtime.quiet import native_quiet

    with native_quiet():
        import keras

        keras.ops.zeros((1,))  # TF's device start-up (its CUDA probe logs to fd 2) happens here, quietly
    return keras


def build_cnn() -> ZooBuild:
    """Sequential CNN on 32x32x3 (NHWC) images: conv, batchnorm, relu, pooling, dropout, dense; 10 classes."""
    keras = _keras()
    L = keras.layers
    init = keras.initializers

    def conv(n, seed):
        return L.Conv2D(n, 3, padding="same", name=f"conv{seed}", kernel_initializer=init.HeNormal(seed=seed),
                        bias_initializer=init.RandomNormal(stddev=0.1, seed=seed + 100))

    model = keras.Sequential([
        keras.Input((32, 32, 3), name="image"),
        conv(8, 1), L.BatchNormalization(name="bn1"), L.ReLU(name="relu1"), L.MaxPooling2D(2, name="pool1"),
        conv(16, 2), L.BatchNormalization(name="bn2"), L.ReLU(name="relu2"),
        L.GlobalAveragePooling2D(name="pool2"), L.Dropout(0.2, seed=3, name="dropout"),
        L.Dense(10, name="logits", kernel_initializer=init.HeNormal(seed=4)),
    ], name="keras_cnn")
    _randomise_batchnorm(model, seed=5)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    return ZooBuild(model, {"image": x}, ["logits"])


def build_two_inputs() -> ZooBuild:
    """Functional model with two inputs (20 numeric features, an 8-step sequence of 4) and two heads."""
    keras = _keras()
    L = keras.layers
    init = keras.initializers
    features = keras.Input((20,), name="features")
    sequence = keras.Input((8, 4), name="sequence")
    a = L.Dense(32, activation="relu", name="features_dense", kernel_initializer=init.HeNormal(seed=11))(features)
    b = L.Conv1D(16, 3, activation="relu", name="sequence_conv", kernel_initializer=init.HeNormal(seed=12))(sequence)
    b = L.GlobalMaxPooling1D(name="sequence_pool")(b)
    h = L.Concatenate(name="concat")([a, b])
    h = L.LayerNormalization(name="norm")(h)
    h = L.Dense(32, activation="gelu", name="hidden", kernel_initializer=init.HeNormal(seed=13))(h)
    scores = L.Dense(5, name="scores", kernel_initializer=init.HeNormal(seed=14))(h)
    value = L.Dense(1, name="value", kernel_initializer=init.HeNormal(seed=15))(h)
    model = keras.Model([features, sequence], [scores, value], name="keras_two_inputs")
    rng = np.random.default_rng(0)
    examples = {"features": rng.normal(size=(2, 20)).astype(np.float32),
                "sequence": rng.normal(size=(2, 8, 4)).astype(np.float32)}
    return ZooBuild(model, examples, ["scores", "value"])


def _randomise_batchnorm(model, seed: int) -> None:
    """Non-trivial moving statistics, so a converter that drops or misplaces them fails parity."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                               rng.normal(0, 0.1, beta.shape).astype(np.float32),
                               rng.normal(0, 0.1, mean.shape).astype(np.float32),
                               rng.uniform(0.5, 1.5, var.shape).astype(np.float32)])
