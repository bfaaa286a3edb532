"""Use cases of the WES orchestrator: event-sourced applications, the engine, settings."""
