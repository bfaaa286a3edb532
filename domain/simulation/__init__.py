"""What-if: a discrete-event simulation of recorded work on a virtual clock (issue 16).

Pure: no I/O and no wall clock. `model` holds what was observed (arrivals, services),
`clock` the virtual time, `kpis` what a run is judged by, `run` the simulation itself,
which drives real `Workflow` aggregates with the engine's own rules.
"""
