"""The built-in HuggingFace + PEFT worker: sway's ``hf`` backend, out of process."""
