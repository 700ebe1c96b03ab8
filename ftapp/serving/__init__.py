"""Generation backends: vLLM (default), in-process transformers + peft, echo (tests)."""
