"""What a run logs: `metrics.jsonl` and TensorBoard (`metrics_writer`), the step's metrics
(`step_metrics`, pool `diagnostics`), `samples.jsonl` (`samples`), W&B / MLflow (`trackers`),
the label-free collapse alarm (`alarm`) and the progress display (`progress`)."""
