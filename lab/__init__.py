"""The tools of scheduler science and testing: traces, workloads, the load driver, reports
and plots, the soak and its checker. Their third-party packages are the `lab` extra."""
