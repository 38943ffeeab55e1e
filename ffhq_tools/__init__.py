"""ffhq-tools: build FFHQ-style face datasets, train and score style-based GANs."""

__version__ = "0.1.0"
