"""Running a whole cluster on one machine: its Redis, its child processes and their
supervision, its data dir, and network-namespace hosts (`tweezer up`, the soak, the tests)."""
