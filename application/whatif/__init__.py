"""What-if runs over recorded history: extraction from the event store, bounds, and the
report (the simulation itself is pure: `domain.simulation`)."""
