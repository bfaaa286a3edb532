"""The execution engine: workers that drive workflows through their steps, crash-safe."""
