"""Mutation fuzzing of forgeml's file readers (the tests and ``fuzz/run.py`` share ``readers``)."""
