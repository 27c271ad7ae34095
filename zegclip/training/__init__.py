"""The Lightning layer: the LightningModule, optimiser and schedule, metrics, checkpoints, signals,
the console, plots and W&B logging. It knows the model, not Hydra or the datasets."""
