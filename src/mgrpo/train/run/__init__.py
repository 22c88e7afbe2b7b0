"""A run's life: setting it up (`setup`), the loop (`trainer`), its directory (`run_dir`),
checkpoints and resume (`resume`, the format in `checkpoint`), the training prompt set
(`prompt_set`), periodic validation (`validation`), the error it stops with (`errors`) and
fault injection for the reliability tests (`faults`)."""
