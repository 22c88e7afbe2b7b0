"""The models in a run: which copies of the policy exist and in which dtype (`layouts`: full
weights, mixed precision, LoRA, FSDP), the momentum (EMA) model (`momentum`), LoRA adapters
(`lora`), compute and master dtypes (`precision`) and the static-memory pre-flight
(`memory_budget`)."""
