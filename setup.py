"""pix2pix_tf: pix2pix image-to-image translation in TensorFlow and Keras 3."""

import re

import setuptools

# The one version string is pix2pix_tf.__version__.
VERSION = re.search(r'__version__ = "([^"]+)"',
                    open("pix2pix_tf/__init__.py").read()).group(1)

setuptools.setup(
    name="pix2pix_tf",
    version=VERSION,
    description=("pix2pix (Isola et al. 2017) in TensorFlow: U-Net generator, "
                 "PatchGAN discriminator, tf.distribute training, SavedModel "
                 "export."),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["pix2pix_tf", "pix2pix_tf.*"]),
    package_data={"pix2pix_tf": ["configs/*.flags", "data/palettes/*.json",
                                 "serving/pages/*.html",
                                 "serving/pages/*.js",
                                 "serving/pages/*.mjs"]},
    # What CI proves (.ci/wheel_check): the wheel installed on the lowest
    # Python with every lower bound below (.ci/lower_bounds.txt), and on the
    # highest with the newest releases, trains, exports and translates.
    python_requires=">=3.11,<3.14",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        # 3.14: batch norm's renorm option, which the fused batch norm
        # reads (3.13 has the exporters of --format=litert and onnx).
        "keras>=3.14,<4",
        "numpy>=1.26,<3",
        "pillow>=10",
        "absl-py>=2.1",
        "tensorboard>=2.21,<2.22",
        # The translation and perceptual study pages are served with Flask.
        "flask>=3.0",
    ],
    extras_require={
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
        # Canny edges for `pix2pix_tf.datasets edges` (about 150 MB).
        "edges": ["opencv-python-headless>=4.8"],
        # export --format=litert|onnx: the LiteRT interpreter and ONNX
        # Runtime that check Keras's exports.
        "litert": ["ai-edge-litert>=2.0"],
        "onnx": ["tf2onnx>=1.16", "onnx>=1.16", "onnxruntime>=1.18"],
        # tools/ablate.py draws its figures with matplotlib; web_timing
        # drives Chromium with selenium.
        "tools": ["matplotlib>=3.7", "selenium>=4.20"],
        # The browser tests drive Debian's chromium with Selenium;
        # pytest-xdist runs the suite on two processes (make test); build
        # makes the release files (test_packaging), nbclient and ipykernel
        # run docs/python_api.ipynb (test_notebook).
        "test": ["pytest>=8", "pytest-xdist>=3.5", "build>=1.2",
                 "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29",
                 "matplotlib>=3.7", "selenium>=4.20", "opencv-python-headless>=4.8",
                 "ai-edge-litert>=2.0", "tf2onnx>=1.16",
                 "onnx>=1.16", "onnxruntime>=1.18"],
    },
    entry_points={
        "console_scripts": [
            "pix2pix-train=pix2pix_tf.train:run",
            "pix2pix-summary=pix2pix_tf.summary:run",
            "pix2pix-export=pix2pix_tf.export:run",
            "pix2pix-predict=pix2pix_tf.predict:run",
            "pix2pix-evaluate=pix2pix_tf.evaluate:run",
            "pix2pix-study=pix2pix_tf.study:run",
            "pix2pix-datasets=pix2pix_tf.datasets:run",
            "pix2pix-serve=pix2pix_tf.serve:run",
            "pix2pix-convert=pix2pix_tf.convert:run",
            "pix2pix-segmenter=pix2pix_tf.segmenter:run",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    license="Apache-2.0",
)
