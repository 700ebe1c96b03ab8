"""Automatic evaluation: metrics and checks, evaluation runs with their background answer
generation, model-as-judge, and reports with confidence intervals."""
