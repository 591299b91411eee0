"""Pure scheduling code the daemon (scheduler/) and the lab (lab/) both run: policies, the
snapshot a policy sees, the simulator's engine and forecasts. No Redis, no wall clock."""
