"""Sub-net search: super-net sub-net memory, accuracy pairs and predictor, evolutionary search under a budget."""
