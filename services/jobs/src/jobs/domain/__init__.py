"""The jobs domain: state, decide and evolve functions, errors. Pure: no I/O."""
