"""Tweezer: a self-hosted batch platform for neutral-atom pulse sequences, wire-compatible with
the pasqal-cloud SDK.

A room per kind of work (docs/design.md, "Rooms"):
- `core`: the domain and the store, shared by every process (records, statuses, keys, Lua).
- `api`: the Flask front door. `scheduler`: the scheduling daemon. `workers`: the Celery
  workers and the hardware bridge.
- `scheduling`: pure scheduling code the daemon and the lab both run (policies, snapshots, the
  simulator's engine, forecasts).
- `lab`: the tools of scheduler science and testing (traces, workloads, the load driver,
  reports, the soak), behind the `lab` extra.
- `launch`: running a whole cluster on one machine (`tweezer up`, the soak, the tests).
- `cli`: the `tweezer` command, thin over the rooms above.
"""
