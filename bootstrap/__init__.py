"""The composition root (`bootstrap.container`): the one place every process (and
every benchmark harness and test fixture) is wired from.

It sits above the layers on purpose: it builds the application, the API and the simulated
services, so no layer below it has to import an entrypoint (DESIGN.md)."""
