"""Training: job configs, the queue in SQLite, the worker process, and the child process that
runs TRL's SFTTrainer with a PEFT LoRA adapter."""
