"""Backtests: the live decision path on a simulated clock (engine), metrics as pure functions, and
time-ordered walk-forward splits."""
