"""Training the GSM3 model: sampling, splits and the training loop."""
