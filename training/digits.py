"""digits: handwritten digit classifier on MNIST (Keras).

Recipes: ``mlp`` (the reference Flatten-300-100-10) and ``cnn`` (a small VGG-style
CNN with augmentation layers that are active only in training). Both take raw
0-255 pixels; the scaling to [0, 1] is a Rescaling layer inside the model.
Selection (early stopping) uses the last 10% of the training file; the score is on
the official 10,000-image test set, which training never sees.
"""

from __future__ import annotations

import numpy as np

from training.common import SEED, TrainedModel
from training.data import MNIST_FILES, DataDir, Split, load_mnist
from training.publishing import ImageNote

RECIPES = ("mlp", "cnn")
LABELS = [str(d) for d in range(10)]
# MNIST's own framing, which :predict_image reproduces for uploads.
MNIST_IMAGE = ImageNote(
    description="MNIST-style grayscale digit: raw pixel values 0-255, white ink on black, "
                "size-normalised into 20x20 and centred by centre of mass in 28x28.",
    preprocessing={"mode": "ink", "box": 20, "centre": "mass"},
    foreground="light-on-dark", value_range=(0.0, 255.0))


def _mlp(keras):
    return keras.Sequential([
        keras.Input(shape=(28, 28), name="image"),
        keras.layers.Rescaling(1 / 255.0),
        keras.layers.Flatten(),
        keras.layers.Dense(300, activation="relu"),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ], name="digits_mlp")


def _cnn(keras):
    layers = keras.layers

    def conv(filters):
        # One conv per resolution keeps an epoch affordable on two CPU cores.
        return [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                layers.BatchNormalization(), layers.Activation("relu")]

    return keras.Sequential([
        keras.Input(shape=(28, 28), name="image"),
        layers.Rescaling(1 / 255.0),
        layers.Reshape((28, 28, 1)),
        # Augmentation: identity at inference, so the served model sees plain pixels.
        layers.RandomRotation(0.04, fill_mode="constant", seed=SEED),
        layers.RandomTranslation(0.08, 0.08, fill_mode="constant", seed=SEED),
        layers.RandomZoom(0.08, fill_mode="constant", seed=SEED),
        *conv(32), layers.MaxPooling2D(),
        *conv(64), layers.MaxPooling2D(),
        *conv(128), layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.4),
        layers.Dense(10, activation="softmax"),
    ], name="digits_cnn")


HYPERPARAMETERS = {
    "mlp": {"architecture": "Rescaling(1/255)-Flatten-Dense300relu-Dense100relu-Dense10softmax",
            "optimizer": "SGD", "learning_rate": 0.01, "batch_size": 32, "max_epochs": 30,
            "early_stopping_patience": 5, "validation_fraction": 0.1},
    "cnn": {"architecture": "Rescaling-Reshape-[RandomRotation .04, RandomTranslation .08, "
                            "RandomZoom .08]-[Conv3x3(32)-BN-ReLU-MaxPool]-[Conv3x3(64)-BN-ReLU-"
                            "MaxPool]-[Conv3x3(128)-BN-ReLU]-Dropout.25-Dense128-Dropout.4-"
                            "Dense10softmax",
            "optimizer": "Adam", "learning_rate": 0.001, "lr_schedule": "ReduceLROnPlateau x0.3",
            "batch_size": 64, "max_epochs": 24, "early_stopping_patience": 5,
            "validation_fraction": 0.1},
}


def split(recipe: str, data: DataDir, *, quick: bool = False) -> Split:
    """The MNIST training file (its last 10% held back for early stopping inside
    ``train``) and the official 10,000-image test set."""
    x_all, y_all = load_mnist(data, "train")
    x_test, y_test = load_mnist(data, "test")
    if quick:  # a smoke run on a slice, for tests
        x_all, y_all, x_test, y_test = x_all[:1500], y_all[:1500], x_test[:300], y_test[:300]
    return Split(x_all.astype(np.float32), y_all, x_test.astype(np.float32), y_test)


def train(recipe: str, data: DataDir, *, quick: bool = False) -> TrainedModel:
    import keras

    if recipe not in RECIPES:
        raise ValueError(f"digits recipes are {RECIPES}, not {recipe!r}")
    keras.utils.set_random_seed(SEED)
    hp = dict(HYPERPARAMETERS[recipe])
    s = split(recipe, data, quick=quick)
    if quick:
        hp["max_epochs"] = 1
    n_val = int(len(s.x_train) * hp["validation_fraction"])
    x_tr, y_tr = s.x_train[:-n_val], s.y_train[:-n_val]
    x_val, y_val = s.x_train[-n_val:], s.y_train[-n_val:]
    print(f"digits/{recipe}: {len(x_tr)} train, {len(x_val)} validation, "
          f"{len(s.x_test)} official test images", flush=True)

    model = _mlp(keras) if recipe == "mlp" else _cnn(keras)
    optimizer = (keras.optimizers.SGD(hp["learning_rate"]) if recipe == "mlp"
                 else keras.optimizers.Adam(hp["learning_rate"]))
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    callbacks = [keras.callbacks.EarlyStopping(patience=hp["early_stopping_patience"],
                                               restore_best_weights=True)]
    if recipe == "cnn":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(factor=0.3, patience=2))
    history = model.fit(x_tr, y_tr, validation_data=(x_val, y_val), epochs=hp["max_epochs"],
                        batch_size=hp["batch_size"], callbacks=callbacks, verbose=2)
    hp["epochs_run"] = len(history.history["loss"])
    return TrainedModel(
        name="digits",
        recipe=recipe,
        model=model,
        description="Handwritten digit classifier (0-9) for 28x28 MNIST-style grayscale images. "
                    + ("Reference multilayer perceptron." if recipe == "mlp"
                       else "Convolutional network trained with light augmentation."),
        inputs=x_tr, image=MNIST_IMAGE, X_test=s.x_test, y_test=s.y_test, y_train=y_tr,
        labels=LABELS,
        method="Trained on the MNIST training file (first 90%; early stopping on the last "
               "10%) and scored once on the official 10,000-image MNIST test set"
               + (" (quick smoke run on a slice)" if quick else "") + ".",
        extra={"validation_accuracy_best": round(max(history.history["val_accuracy"]), 6),
               "training_images_available": len(s.x_train)},
        datasets=data.record(*MNIST_FILES["train"], *MNIST_FILES["test"]),
        hyperparameters=hp,
        curves={k: [float(v) for v in vals] for k, vals in history.history.items()
                if k in ("loss", "val_loss", "accuracy", "val_accuracy")},
        notes=[
            f"Only {len(s.x_train):,} of the 60,000 official training images were available "
            "offline (see docs/datasets.md); the test set is the complete official one.",
            "Expects MNIST preprocessing (white digit on black, centred by centre of mass in "
            "a 20x20 box); :predict_image does that for uploaded pictures.",
        ],
    )
