"""The pure domain model of the WES orchestrator: no I/O, no clock, no framework."""
