"""Example programs, installed as `gometal_keras.examples` (``gometal-keras demo`` runs one)."""
