"""The audit domain: state, decide and evolve functions, errors. Pure: no I/O."""
