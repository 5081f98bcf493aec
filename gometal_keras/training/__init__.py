"""Training: `Trainer`, its loop over arranged or streamed data, the fit session, the run record,
evaluation, checkpoints and the state they hold."""
