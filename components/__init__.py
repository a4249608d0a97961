"""Reusable pieces of the matmap app: the loaded map, pure figure builders and All-in-One
components (structure view, neighbour panel).

Nothing here imports from :mod:`ml` but :mod:`ml.service` and :mod:`ml.settings`
(``tests/app/test_boundary.py`` checks it).
"""
