"""Base models: the bundled SmolLM2 model, local folders, Hugging Face hub ids; tokenizers."""
