"""Parity: the inputs every stage runs on, the metrics and tolerance profiles that judge it, the
measurement of one stage against the reference, its table, and the first diverging node of a failing
stage."""
