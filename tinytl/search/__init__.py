"""Feature-extractor adaptation: super-net sub-net memory, accuracy pairs and predictor, evolutionary search."""
