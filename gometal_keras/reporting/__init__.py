"""Reporting: comparisons of runs, the console report, JSON, plots, progress bars, the demo
program and the installation facts `gometal-keras info` prints."""
