"""``ml.threads.torch_threads``: a scoped intra-op thread count."""

from __future__ import annotations

import pytest
import torch

from ml.threads import torch_threads


def test_the_count_holds_inside_and_is_restored_after_an_error():
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    with pytest.raises(KeyError):
        with torch_threads(wanted):
            assert torch.get_num_threads() == wanted
            raise KeyError("a failure inside")
    assert torch.get_num_threads() == before


def test_a_count_below_one_is_refused_and_changes_nothing():
    before = torch.get_num_threads()
    with pytest.raises(ValueError, match="at least 1"):
        with torch_threads(0):
            pass
    assert torch.get_num_threads() == before
