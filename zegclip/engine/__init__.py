"""Runs: what ``train.py`` and ``eval.py`` do with a composed Hydra config (build, fit, test, record),
run folders, the sweep report, the tuning objective and study, the configs' resolvers, how programs end."""
