"""The one training loop (a manual-optimization LightningModule) and what plugs into it."""
