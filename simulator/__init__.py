"""Simulated warehouse services (inventory, robotics, warehouse, packing) with fault injection.

`simulator.server.create_app()` builds the app, `simulator.server.run()` serves it
(`wes services`), `simulator.background.start_simulator()` runs one in a thread, and
`simulator.client.SimulatorClient` drives its fault and call-log endpoints. See README.md.
"""
