"""The scheduling daemon: leases QPUs to batches (the choice is scheduling/'s policy), dispatches
their jobs, reconciles lost ones, writes forecasts and delivers webhooks."""
