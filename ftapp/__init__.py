"""ftapp: a web app for the whole LoRA fine-tuning loop of a language model."""

__version__ = "0.1.0"
