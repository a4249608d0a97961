"""``python -m ml <verb>``: one module per verb group (:mod:`ml.cli.main` the parser and map verbs, :mod:`ml.cli.vae` the generator verbs)."""
