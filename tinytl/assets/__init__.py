"""The shipped assets (checkpoints, super-net chain, predictor pairs), installed as package data; see README.md here."""
