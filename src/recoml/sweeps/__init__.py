"""Sweeps: Hydra multirun summaries and Optuna hyperparameter studies over training configs.

``recoml.sweeps.study.run_study`` is what ``python -m recoml.hpo`` runs;
``recoml.sweeps.multirun.MultirunSummary`` is the Hydra callback behind the summary table that every
``python -m recoml.train -m ...`` writes into its sweep directory.
"""
