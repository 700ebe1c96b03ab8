"""The Arena: contestants (the base model, adapters, prompt-engineered variants), blind A/B
battles and evaluation sessions for reviewers, ratings with confidence intervals, agreement
between reviewers, and exports of the votes."""
